"""Per-token atoms of each unit (local_head_atoms): mean over time, subsets, bounded memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.phiid import PhiidConfig
from synergy_jax.phiid import local as local_lib


def _acts(seed, p=2, n=5, t=20):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  a[..., 1:] += 0.5 * a[..., :-1]
  a[:, 1, 1:] += 0.7 * a[:, 0, :-1]
  return a


@pytest.mark.parametrize("config", [
    PhiidConfig(kind="copula", redundancy="mmi"),
    PhiidConfig(redundancy="ccs", pool="concat", bias_correction=True),
    PhiidConfig(kind="discrete", redundancy="ccs", pool="concat", tau=2, preprocess="diff"),
])
def test_mean_over_time_equals_partner_average_of_atoms(config):
  acts = _acts(1)
  with jax.enable_x64(True):
    loc = np.asarray(phiid.local_head_atoms(acts, config, block_size=2))
    atoms = np.asarray(phiid.all_pairs(acts, config=config))
  s = 20 - config.tau - (config.preprocess == "diff")
  assert loc.shape == (2, 5, 16, s)
  assert np.isfinite(loc).all()
  # Mean over tokens (and prompts: every prompt has S samples) = mean over partners j ≠ i.
  np.testing.assert_allclose(loc.mean(axis=(0, 3)), np.nanmean(atoms, axis=1), rtol=0,
                             atol=1e-10)


def test_per_prompt_mean_matches_per_prompt_atoms_and_heads_subset():
  acts = _acts(2)
  with jax.enable_x64(True):
    loc = np.asarray(phiid.local_head_atoms(acts, PhiidConfig(redundancy="ccs")))
    sub = np.asarray(phiid.local_head_atoms(acts, PhiidConfig(redundancy="ccs"), heads=[3, 0],
                                            block_size=1))
    one_prompt = np.asarray(phiid.all_pairs(acts[1:], redundancy="ccs"))
  np.testing.assert_allclose(loc[1].mean(axis=-1), np.nanmean(one_prompt, axis=1), rtol=0,
                             atol=1e-10)
  np.testing.assert_allclose(sub, loc[:, [3, 0]], rtol=0, atol=1e-12)


def test_degenerate_partner_left_out_and_degenerate_unit_nan():
  acts = _acts(3)
  acts[0, 4] = 1.0
  with pytest.raises(ValueError, match="unit 4, prompt 0 of acts: constant past"):
    phiid.local_head_atoms(acts)
  with jax.enable_x64(True), pytest.warns(UserWarning, match=r"masking units \[4\]"):
    loc = np.asarray(phiid.local_head_atoms(acts, on_degenerate="mask"))
    clean = np.asarray(phiid.local_head_atoms(acts[:, :4]))
  assert np.isnan(loc[:, 4]).all()
  np.testing.assert_allclose(loc[:, :4], clean, rtol=0, atol=1e-12)


def test_bad_heads_raise():
  with pytest.raises(ValueError, match=r"heads: 7 is not a unit index in \[0, 5\)"):
    phiid.local_head_atoms(_acts(0), heads=[1, 7])


def test_memory_stays_bounded_for_1152_units():
  """Compiled (not run) for U = 1152, S = 99 in float32: XLA's own temporary-buffer count stays
  under the automatic block's budget and far below one U × U × S array."""
  p, n, t = 2, 1152, 100
  config = PhiidConfig(redundancy="ccs")
  budget = 2 ** 28
  block = phiid.auto_block_size(p, n, t - 1, config=config, local=True, itemsize=4,
                                memory_bytes=budget)
  hpad = -(-n // block) * block
  compiled = jax.jit(local_lib.local_core, static_argnames=("config", "block", "dtype")).lower(
      jax.ShapeDtypeStruct((p, n, t), jnp.float32), jax.ShapeDtypeStruct((hpad,), jnp.int32),
      jax.ShapeDtypeStruct((hpad, n), jnp.float32), config=config, block=block,
      dtype=jnp.dtype(jnp.float32)).compile()
  mem = compiled.memory_analysis()
  full = n * n * (t - 1) * 4
  assert 1 <= block < n
  assert mem.temp_size_in_bytes < 1.5 * budget, (mem.temp_size_in_bytes, budget)
  assert mem.temp_size_in_bytes < full / 10
