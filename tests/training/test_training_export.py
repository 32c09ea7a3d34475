"""Export of a (tiny) run: HF-layout model + tokenizer + float16 emergence checkpoints that load
back through models.load / emergence_checkpoints."""
import jax
import numpy as np
import pytest
from flax import nnx

from synergy_jax import models, training

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def test_export_and_load_back(tmp_path):
  mc = training.default_model_config(**TINY)
  cfg = training.TrainConfig(steps=6, batch_size=2, seq_len=128, warmup_steps=1, save_every=2,
                             eval_every=6, eval_examples=1, log_every=2)
  result = training.train(mc, cfg, tmp_path / "run", log=lambda s: None)
  out = tmp_path / "model"
  steps = training.export(result.model, result.workdir, out)
  assert steps == [0, 2, 4, 6]
  m = models.load(out)
  assert m.config == mc
  for a, b in zip(jax.tree.leaves(nnx.state(m, nnx.Param)), jax.tree.leaves(result.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # float32, exact
  tok = models.load_tokenizer(out)
  assert tok("ab")["input_ids"] == [1, 70, 71]
  loaded = training.emergence_checkpoints(out)
  assert [s for s, _ in loaded] == [0, 2, 4, 6]
  # float16 storage: within half-precision rounding of the float32 values
  for a, b in zip(jax.tree.leaves(nnx.state(loaded[-1][1], nnx.Param)),
                  jax.tree.leaves(result.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
  assert all(np.asarray(x).dtype == np.float32
             for x in jax.tree.leaves(nnx.state(loaded[0][1], nnx.Param)))
  # the result's module is the trained state
  for a, b in zip(jax.tree.leaves(nnx.state(result.model, nnx.Param)),
                  jax.tree.leaves(result.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  r = training.random_model(str(out), seed=3)
  assert r.config == mc


def test_missing_emergence_checkpoints_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no emergence checkpoints"):
    training.emergence_checkpoints(tmp_path)
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(FileNotFoundError, match="holds no step_NNNNNN"):
    training.emergence_checkpoints(tmp_path)
