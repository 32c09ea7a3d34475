"""orbax checkpoints: round trip of a training state, and clear errors for missing/corrupt ones."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from synergy_jax.training import checkpoints


def _state(seed=0):
  rng = np.random.default_rng(seed)
  params = {"embed": jnp.asarray(rng.normal(size=(11, 4)), jnp.float32),
            "layers": {"q": jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32)}}
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  opt_state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  _, opt_state = opt.update(grads, opt_state, params)
  return {"params": params, "opt_state": opt_state}


def _assert_tree_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(tmp_path):
  state = _state()
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 0, state)
  later = jax.tree.map(lambda x: x + 1, state)
  checkpoints.save(mngr, 5, later)
  mngr.close()
  assert checkpoints.steps(tmp_path / "ck") == [0, 5]
  target = jax.eval_shape(lambda: _state(1))
  _assert_tree_equal(checkpoints.restore(tmp_path / "ck", 0, target), state)
  _assert_tree_equal(checkpoints.restore(tmp_path / "ck", None, target), later)
  # the optimizer's named tuples come back as such
  restored = checkpoints.restore(tmp_path / "ck", 5, target)
  assert type(restored["opt_state"][1][0]).__name__ == "ScaleByAdamState"


def test_missing_folder_and_step(tmp_path):
  target = jax.eval_shape(_state)
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpoints.restore(tmp_path / "nowhere", None, target)
  with pytest.raises(FileNotFoundError, match="nowhere"):
    checkpoints.steps(tmp_path / "nowhere")
  mngr = checkpoints.manager(tmp_path / "ck")
  mngr.close()
  with pytest.raises(FileNotFoundError, match="no finished checkpoint"):
    checkpoints.restore(tmp_path / "ck", None, target)
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 3, _state())
  mngr.close()
  with pytest.raises(FileNotFoundError, match=r"no step 4; it holds steps \[3\]"):
    checkpoints.restore(tmp_path / "ck", 4, target)


def _files(root):
  for dirpath, _, names in os.walk(root):
    for n in names:
      yield os.path.join(dirpath, n)


def test_corrupt_checkpoint_is_named(tmp_path):
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 7, _state())
  mngr.close()
  target = jax.eval_shape(_state)
  # damage every data file of the step (keep the folder so the step still looks finished)
  for path in _files(tmp_path / "ck" / "7"):
    with open(path, "r+b") as f:
      size = f.seek(0, 2)
      f.seek(0)
      f.write(b"\x00garbage" * max(1, size // 8))
  with pytest.raises(ValueError, match=r"checkpoint step 7 in .*ck.* is damaged"):
    checkpoints.restore(tmp_path / "ck", 7, target)


def test_checkpoint_with_files_removed(tmp_path):
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 2, _state())
  mngr.close()
  for path in _files(tmp_path / "ck" / "2"):
    if "_CHECKPOINT_METADATA" not in path:
      os.remove(path)
  with pytest.raises((ValueError, FileNotFoundError), match=r"step 2"):
    checkpoints.restore(tmp_path / "ck", 2, jax.eval_shape(_state))


def test_other_tree_is_rejected(tmp_path):
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 1, _state())
  mngr.close()
  target = jax.eval_shape(_state)
  target["params"]["embed"] = jax.ShapeDtypeStruct((12, 4), jnp.float32)
  with pytest.raises(ValueError, match="step 1"):
    checkpoints.restore(tmp_path / "ck", 1, target)
