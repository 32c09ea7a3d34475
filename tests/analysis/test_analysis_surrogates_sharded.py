"""The surrogate null split over a mesh of simulated devices (analysis.nulls_sharded) equals the
single-device nulls.null_moments for every design, on the compiled kernel and on the estimator
path; the multi-process form is tests/test_multihost.py."""
import warnings

import jax
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import nulls
from synergy_jax.analysis import nulls_sharded

STS, RTR = phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")
P, N, T = 6, 4, 24


def _acts():
  rng = np.random.default_rng(4)
  a = rng.standard_normal((P, N, T))
  a[:, 1, 1:] += 0.9 * a[:, 0, :-1]  # a coupled pair
  a[2, 3, :] = 1.5  # unit 3 constant in prompt 2: no null anywhere
  return a


def _observed(acts, config):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    o = np.asarray(phiid.all_pairs(acts, config=config, on_degenerate="mask"))[:, :, [STS, RTR]]
  return np.where(np.eye(N, dtype=bool)[..., None], np.nan, o)


def _mesh(d):
  return jax.sharding.Mesh(np.array(jax.devices()[:d]), ("surrogates",))


@pytest.mark.parametrize("kind,method,devices", [("gaussian", "trial", 4),
                                                 ("gaussian", "pair_shift", 3),
                                                 ("copula", "trial", 4)])
def test_split_surrogates_equal_one_device(kind, method, devices):
  with jax.enable_x64(True):
    acts = _acts()
    cfg = phiid.PhiidConfig(kind=kind)
    obs = _observed(acts, cfg)
    # 5 surrogates: odd (the last inverse pair is half used) and not a multiple of the devices.
    design = nulls.draw_design(method, 5, P, T, seed=2)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      one = nulls.null_moments(acts, obs, design, cfg)
    split = nulls_sharded.null_moments(acts, obs, design, cfg, mesh=_mesh(devices))
  assert nulls.kernel_applies(cfg, ("sts", "rtr")) == (kind == "gaussian")
  for name in ("s1", "s2", "cnt", "ge", "null_head"):
    a, b = getattr(one, name), getattr(split, name)
    assert a.shape == b.shape, name
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
    np.testing.assert_allclose(np.nan_to_num(b), np.nan_to_num(a), rtol=1e-10, atol=1e-12,
                               err_msg=name)
  off = ~np.eye(N, dtype=bool)
  assert split.cnt[0, 1, 0] == 5 and split.cnt[0, 3, 0] == 0  # unit 3 degenerate: no surrogate
  assert np.isfinite(split.null_head[:, [0, 1, 2]]).all()
  assert np.isnan(split.null_head[:, 3]).all()
  assert np.isfinite(split.s1[:3, :3][off[:3, :3]]).all()


def test_pair_shift_without_the_kernel_is_refused():
  acts = _acts()
  cfg = phiid.PhiidConfig(kind="copula")
  design = nulls.draw_design("pair_shift", 4, P, T, seed=0)
  with pytest.raises(ValueError, match="pair_shift"):
    nulls_sharded.null_moments(acts, np.zeros((N, N, 2)), design, cfg, mesh=_mesh(2))


@pytest.mark.parametrize("devices", [3, 4])
def test_split_spectral_null_equals_one_device(devices):
  """Pooled atoms: the spectral path split over devices (blocks crossing relabellings, padding)
  equals the single-device spectral path and the one-call-per-surrogate loop."""
  with jax.enable_x64(True):
    acts = _acts()
    cfg = phiid.PhiidConfig(pool="concat")
    obs = _observed(acts, cfg)
    design = nulls.draw_design("trial", 9, P, T, seed=5)  # 3 relabellings, the last half used
    assert len(design.orders) == 3
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      one = nulls.null_moments(acts, obs, design, cfg, spectral=True)
      slow = nulls.null_moments(acts, obs, design, cfg, force_slow=True)
    split = nulls_sharded.null_moments(acts, obs, design, cfg, mesh=_mesh(devices))
  for name in ("s1", "s2", "cnt", "ge", "null_head"):
    for ref in (one, slow):
      a, b = getattr(ref, name), getattr(split, name)
      assert a.shape == b.shape, name
      np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
      np.testing.assert_allclose(np.nan_to_num(b), np.nan_to_num(a), rtol=1e-10, atol=1e-12,
                                 err_msg=name)
  assert split.cnt[0, 1, 0] == 9 and split.cnt[0, 3, 0] == 0
