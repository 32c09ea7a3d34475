"""The optax loop: a tiny run lowers the loss; stop-and-resume equals an uninterrupted run; the
optimizer schedule; the exact-match shortcut agrees with its definition."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import models, training
from synergy_jax.training import checkpoints, loop

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def _cfg(**kw):
  base = dict(steps=40, batch_size=4, seq_len=128, learning_rate=1e-2, warmup_steps=4,
              end_learning_rate=1e-3, save_every=10, eval_every=20, eval_examples=2, log_every=5)
  base.update(kw)
  return training.TrainConfig(**base)


def test_tiny_run_lowers_loss(tmp_path):
  mc = training.default_model_config(**TINY)
  result = training.train(mc, _cfg(), tmp_path / "run", log=lambda s: None)
  rows = training.read_log(tmp_path / "run" / "log.csv")
  losses = [r["loss"] for r in rows if "loss" in r]
  assert len(losses) == 8
  assert losses[0] > 3.0  # near ln(100) = 4.6 at the start
  assert losses[-1] < 0.8 * losses[0]
  assert result.step == 40
  # checkpoints at 0, every save_every, and the end; accuracy columns at eval steps
  assert checkpoints.steps(tmp_path / "run" / "checkpoints") == [0, 10, 20, 30, 40]
  acc_steps = [r["step"] for r in rows if "acc_add_1" in r]
  assert acc_steps == [0, 20, 40]
  cfg = json.loads((tmp_path / "run" / "run_config.json").read_text())
  assert cfg["train"]["steps"] == 40 and cfg["model"]["num_hidden_layers"] == 2


def test_stop_and_resume_equals_uninterrupted(tmp_path):
  mc = training.default_model_config(**TINY)
  cfg = _cfg(steps=12, save_every=4, eval_every=6)
  full = training.train(mc, cfg, tmp_path / "a", log=lambda s: None)
  part = training.train(mc, cfg, tmp_path / "b", stop_after=6, log=lambda s: None)
  assert part.step == 6
  # a checkpoint was taken at the stop; a resumed run continues from it
  assert checkpoints.steps(tmp_path / "b" / "checkpoints")[-1] == 6
  rest = training.train(mc, cfg, tmp_path / "b", log=lambda s: None)
  for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(rest.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  steps_logged = [r["step"] for r in training.read_log(tmp_path / "b" / "log.csv")]
  assert steps_logged == sorted(set(steps_logged))  # no duplicates after the resume


def test_resume_with_other_config_is_refused(tmp_path):
  mc = training.default_model_config(**TINY)
  training.train(mc, _cfg(steps=4, warmup_steps=1, save_every=2, eval_every=4), tmp_path / "r",
                 log=lambda s: None)
  with pytest.raises(ValueError, match=r"different configuration.*\['steps'\]"):
    training.train(mc, _cfg(steps=8, warmup_steps=1, save_every=2, eval_every=4), tmp_path / "r",
                   log=lambda s: None)


def test_resume_may_change_bookkeeping_only(tmp_path):
  """Checkpoint/eval/log intervals may change on resume; the parameters do not."""
  mc = training.default_model_config(**TINY)
  a = training.train(mc, _cfg(steps=8, warmup_steps=1, save_every=4, eval_every=8),
                     tmp_path / "a", log=lambda s: None)
  training.train(mc, _cfg(steps=8, warmup_steps=1, save_every=4, eval_every=8), tmp_path / "b",
                 stop_after=4, log=lambda s: None)
  b = training.train(mc, _cfg(steps=8, warmup_steps=1, save_every=2, eval_every=2, log_every=1),
                     tmp_path / "b", log=lambda s: None)
  assert checkpoints.steps(tmp_path / "b" / "checkpoints") == [0, 4, 6, 8]
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_schedule_warmup_and_cosine():
  cfg = _cfg(steps=100, warmup_steps=10, learning_rate=1e-2, end_learning_rate=1e-3)
  assert loop.learning_rate(cfg, 0) == 0.0
  np.testing.assert_allclose(loop.learning_rate(cfg, 5), 5e-3, rtol=1e-6)
  np.testing.assert_allclose(loop.learning_rate(cfg, 10), 1e-2, rtol=1e-6)
  # cosine half-way through the decay: end + (peak - end) / 2
  np.testing.assert_allclose(loop.learning_rate(cfg, 55), 1e-3 + 4.5e-3, rtol=1e-5)
  np.testing.assert_allclose(loop.learning_rate(cfg, 100), 1e-3, rtol=1e-6)


def test_clipping_bounds_the_update():
  """With a huge gradient the first AdamW step still moves each weight by about lr."""
  cfg = _cfg(steps=10, warmup_steps=1, learning_rate=1e-2, weight_decay=0.0)
  opt = loop.make_optimizer(cfg)
  params = {"w": jnp.ones((3, 3))}
  state = opt.init(params)
  _, state = opt.update({"w": jnp.full((3, 3), 1e6)}, state, params)  # step 0: lr 0
  updates, _ = opt.update({"w": jnp.full((3, 3), 1e6)}, state, params)
  assert np.all(np.abs(np.asarray(updates["w"])) <= 1e-2 * 1.01)


def test_weighted_nll_matches_reference():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  targets = rng.integers(0, 5, size=(2, 3))
  weights = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
  ref, total = 0.0, 0.0
  for b in range(2):
    for t in range(3):
      z = logits[b, t]
      nll = np.log(np.exp(z).sum()) - z[targets[b, t]]
      ref += weights[b, t] * nll
      total += weights[b, t]
  np.testing.assert_allclose(float(loop.weighted_nll(logits, targets, weights)), ref / total,
                             rtol=1e-5)


def test_exact_match_fn_agrees_with_greedy_loop():
  """Teacher-forced exact match equals an explicit greedy decode done token by token.

  (A random model gets nearly everything wrong; the shipped model's test repeats the comparison
  against models.generate where most answers are right.)
  """
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  es = loop.make_eval_set(2, 0)
  got = np.asarray(loop.exact_match(model, es.ids, es.answer_mask))
  f = lambda ids: model(ids).logits  # the module called eagerly, token by token
  for i in range(0, len(es.keys), 5):
    row, mask = es.ids[i], es.answer_mask[i]
    start = int(np.argmax(mask))  # position whose prediction is the first answer token
    end = int(np.nonzero(mask)[0][-1]) + 1
    buf = row.copy()  # causal: tokens after position t do not change the prediction at t
    buf[start + 1:] = 0
    for t in range(start, end):
      buf[t + 1] = int(np.argmax(np.asarray(f(buf[None]))[0, t]))
    assert got[i] == bool(np.array_equal(buf[start + 1:end + 1], row[start + 1:end + 1]))
