"""Checksummed checkpoints: damaged bytes are detected and named by step, a run falls back to the
last good checkpoint on request, and log.csv keeps one row per step across such a resume."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from synergy_jax import training
from synergy_jax.training import checkpoints

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def _state():
  return {"params": {"w": jnp.arange(20000, dtype=jnp.float32), "b": jnp.ones((3, 2))}}


def _largest_file(root):
  files = [os.path.join(d, n) for d, _, ns in os.walk(root) for n in ns]
  return max(files, key=os.path.getsize)


def _flip_middle_bytes(path, n=4):
  with open(path, "r+b") as f:
    size = f.seek(0, 2)
    f.seek(size // 2)
    b = f.read(n)
    f.seek(size // 2)
    f.write(bytes(x ^ 0xFF for x in b))


def test_checksum_sees_every_single_change():
  s = _state()
  base = checkpoints.checksum(s)
  assert base.shape == (32,) and base.dtype == np.uint8
  for i in (0, 1234, 19999):
    w = np.asarray(s["params"]["w"]).copy()
    w[i] = np.nextafter(w[i], np.float32(np.inf))  # one ulp
    assert not np.array_equal(checkpoints.checksum({"params": {**s["params"], "w": w}}), base)
  as_int = {"params": {**s["params"], "b": jnp.ones((3, 2), jnp.int32)}}
  assert not np.array_equal(checkpoints.checksum(as_int), base)
  swapped = {"params": {"w": s["params"]["w"], "c": s["params"]["b"]}}
  assert not np.array_equal(checkpoints.checksum(swapped), base)


def test_corrupted_bytes_are_one_clear_error_naming_the_step(tmp_path):
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 3, _state())
  mngr.close()
  target = jax.eval_shape(_state)
  ok = checkpoints.restore(tmp_path / "ck", 3, target)  # intact: restores and verifies
  np.testing.assert_array_equal(np.asarray(ok["params"]["w"]), np.arange(20000))
  _flip_middle_bytes(_largest_file(tmp_path / "ck" / "3"))
  with pytest.raises(checkpoints.DamagedCheckpoint, match=r"checkpoint step 3 in .* is damaged") \
      as err:
    checkpoints.restore(tmp_path / "ck", 3, target)
  assert "\n" not in str(err.value) and len(str(err.value)) < 600
  # no chained storage traceback under it
  assert err.value.__cause__ is None
  assert err.value.__context__ is None or err.value.__suppress_context__


def test_wrong_stored_checksum_is_detected(tmp_path):
  mngr = checkpoints.manager(tmp_path / "ck")
  bad = {**_state(), checkpoints.CHECKSUM_KEY: np.zeros(32, np.uint8)}
  mngr.save(4, args=ocp.args.StandardSave(bad))
  mngr.wait_until_finished()
  mngr.close()
  with pytest.raises(checkpoints.DamagedCheckpoint, match="step 4.*checksum does not match"):
    checkpoints.restore(tmp_path / "ck", 4, jax.eval_shape(_state))


def _cfg(**kw):
  base = dict(steps=6, batch_size=2, seq_len=128, learning_rate=1e-2, warmup_steps=1,
              end_learning_rate=1e-3, save_every=10, eval_every=3, eval_examples=1, log_every=1)
  base.update(kw)
  return training.TrainConfig(**base)


def test_damaged_checkpoint_fallback_and_log_rows_once(tmp_path):
  mc = training.default_model_config(**TINY)
  quiet = lambda s: None
  full = training.train(mc, _cfg(), tmp_path / "a", log=quiet)
  run = tmp_path / "b"
  training.train(mc, _cfg(), run, stop_after=3, log=quiet)
  assert checkpoints.steps(run / "checkpoints") == [0, 3]
  _flip_middle_bytes(_largest_file(run / "checkpoints" / "3"))
  with pytest.raises(ValueError,
                     match=r"step 3 .*damaged.*previous one \(step 0\) with --resume_from_last_good"):
    training.train(mc, _cfg(), run, log=quiet)
  messages = []
  rest = training.train(mc, _cfg(), run, resume_from_last_good=True, log=messages.append)
  assert any("resuming" in m and "step 0" in m for m in messages)
  assert any("skipped" in m and "step 3" in m for m in messages)
  assert os.listdir(run / "damaged_checkpoints")[0].startswith("3-")
  for x, y in zip(jax.tree.leaves(full.params), jax.tree.leaves(rest.params)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  steps = [int(r["step"]) for r in training.read_log(run / "log.csv")]
  assert steps == [0, 1, 2, 3, 4, 5, 6]  # step 0 once, although the run resumed from it
  want = [int(r["step"]) for r in training.read_log(tmp_path / "a" / "log.csv")]
  assert steps == want
