"""Model fingerprints (cache keys): any single changed weight, dtype or compute mode changes them;
identical content gives identical fingerprints."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st

from synergy_jax import models
from synergy_jax.pipeline import specs


@dataclasses.dataclass(frozen=True)
class FakeModel:
  config: str
  params: dict
  dtype: str = "float32"


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {"embed": rng.standard_normal((6, 4)).astype(np.float32),
          "layers": {"q": rng.standard_normal((2, 4, 3)).astype(np.float32)}}


@settings(max_examples=40, deadline=None)
@given(leaf=st.sampled_from(["embed", "q"]), flat_index=st.integers(0, 23),
       delta=st.sampled_from([1e-7, -3e-3, 1.0, 1e6]))
def test_any_single_changed_weight_changes_the_fingerprint(leaf, flat_index, delta):
  base = _params()
  changed = _params()
  arr = changed["embed"] if leaf == "embed" else changed["layers"]["q"]
  flat = arr.reshape(-1)
  old = flat[flat_index]
  flat[flat_index] = np.float32(old + delta) if np.float32(old + delta) != old else np.nextafter(
      old, np.float32(np.inf))
  assert flat[flat_index] != old
  assert specs.model_fingerprint(FakeModel("c", changed)) != specs.model_fingerprint(
      FakeModel("c", base))


def test_swapped_rows_dtype_config_and_compute_mode_change_it():
  model = models.init(models.load_config("default"), 0)
  fp = specs.model_fingerprint(model)
  # New arrays with the same bytes: same fingerprint (the memo is not what makes it equal).
  copy = model.replace(params=jax.tree_util.tree_map(lambda x: jnp.array(np.asarray(x)),
                                                     model.params))
  assert specs.model_fingerprint(copy) == fp
  # Two rows of the embedding swapped: same sums, same statistics, other model.
  emb_path, emb = next((p, leaf) for p, leaf in jax.tree_util.tree_flatten_with_path(
      model.params)[0] if leaf.ndim == 2)
  swapped = np.asarray(emb).copy()
  swapped[[0, 1]] = swapped[[1, 0]]
  assert not np.array_equal(swapped, np.asarray(emb))
  leaves, tree = jax.tree_util.tree_flatten(model.params)
  leaves = [jnp.asarray(swapped) if leaf is emb else leaf for leaf in leaves]
  other = model.replace(params=jax.tree_util.tree_unflatten(tree, leaves))
  assert specs.model_fingerprint(other) != fp, f"swapping rows of {jax.tree_util.keystr(emb_path)}"
  bf16 = model.replace(params=models.cast(model.params, "bfloat16"), dtype="bfloat16")
  assert specs.model_fingerprint(bf16) not in (fp, specs.model_fingerprint(other))
  with jax.enable_x64(True):
    assert specs.compute_dtype() == "float64"
    assert specs.model_fingerprint(model) != fp
  assert specs.compute_dtype() == "float32" and specs.model_fingerprint(model) == fp


def test_numpy_weights_changed_in_place_are_not_remembered():
  params = _params()
  model = FakeModel("c", params)
  fp = specs.model_fingerprint(model)
  params["embed"][3, 2] += 1.0  # same array object, new content
  assert specs.model_fingerprint(model) != fp
