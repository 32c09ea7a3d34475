"""Surrogate designs and the compiled null kernel: equal to one phiid.all_pairs call per surrogate
(trial, circular) or to an independent per-pair computation (pair_shift)."""
import pathlib
import sys

import jax
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import nulls

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "phiid"))
import phiid_reference as ref  # noqa: E402  (the plain NumPy ΦID reference)

STS, RTR = phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")


def _acts(p=6, n=5, t=30, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  a[:, 1, 1:] += 0.9 * a[:, 0, :-1]  # a coupled pair
  a[2, 3, :] = 1.5  # unit 3 constant in prompt 2: masked everywhere
  return a


def _observed(acts, config):
  o = np.asarray(phiid.all_pairs(acts, config=config, on_degenerate="mask"))[:, :, [STS, RTR]]
  return np.where(np.eye(acts.shape[1], dtype=bool)[..., None], np.nan, o)


def _same(a, b):
  np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
  np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", ["trial", "circular"])
@pytest.mark.parametrize("pool", ["mean", "concat"])
def test_kernel_equals_one_all_pairs_call_per_surrogate(method, pool):
  with jax.enable_x64(True), pytest.warns(UserWarning, match="masking"):
    acts = _acts()
    cfg = phiid.PhiidConfig(pool=pool)
    obs = _observed(acts, cfg)
    design = nulls.draw_design(method, 5, 6, 30, seed=1)  # odd: the last pair is half used
    fast = nulls.null_moments(acts, obs, design, cfg)
    slow = nulls.null_moments(acts, obs, design, cfg, force_slow=True)
  for f, s in zip(dataclasses_values(fast), dataclasses_values(slow)):
    _same(f, s)
  assert np.all(np.isnan(fast.null_head[:, 3]))  # the degenerate unit has no null
  assert np.all(np.isfinite(fast.null_head[:, [0, 1, 2, 4]]))
  assert fast.cnt[0, 1, 0] == 5 and fast.cnt[0, 3, 0] == 0


def dataclasses_values(m):
  return (m.s1, m.s2, m.cnt, m.ge, m.null_head)


def _reference_pair_shift(acts, design, s, i, j):
  """sts, rtr of pair (i, j) of surrogate s, from explicitly rolled lagged vectors."""
  vals = []
  for p in range(acts.shape[0]):
    x, y = np.asarray(acts[p, i], np.float64), np.asarray(acts[p, j], np.float64)
    xp, xf, yp, yf = x[:-1], x[1:], y[:-1], y[1:]
    yp, yf = (np.roll(v, design.shifts[s, p]) for v in (yp, yf))
    atoms, _ = ref.reference_columns(xp, yp, xf, yf, "mmi")
    vals.append(atoms[[STS, RTR]])
  return np.mean(vals, 0)


def test_pair_shift_kernel_equals_rolled_lagged_pairs():
  with jax.enable_x64(True):
    acts = _acts(p=5, n=5, t=25, seed=3)[:, [0, 1, 2, 4]]  # without the degenerate unit
    cfg = phiid.PhiidConfig()
    obs = _observed(acts, cfg)
    design = nulls.draw_design("pair_shift", 4, 5, 25, seed=2)
    mom = nulls.null_moments(acts, obs, design, cfg)
    ref = np.array([[[_reference_pair_shift(acts, design, s, i, j) if i != j else [np.nan] * 2
                      for j in range(4)] for i in range(4)] for s in range(4)])  # (S, N, N, 2)
  _same(mom.s1, np.nansum(ref, 0) * ~np.eye(4, dtype=bool)[..., None])
  _same(mom.null_head, np.nanmean(ref, 1))  # column means: unit j moved against every partner
  with pytest.raises(ValueError, match="pair_shift"):
    nulls.null_moments(acts, obs, design, cfg, force_slow=True)


def test_designs():
  d = nulls.draw_design("trial", 30, 7, 40, seed=0)
  p = np.arange(7)
  assert d.paired and not np.any(d.prompt_map == p)  # derangements
  assert all(sorted(row) == list(p) for row in d.prompt_map)  # permutations
  for m in range(0, 30, 2):  # rows 2m, 2m + 1 are inverse permutations
    np.testing.assert_array_equal(d.prompt_map[m + 1][d.prompt_map[m]], p)
  s = nulls.draw_design("pair_shift", 10, 4, 50, seed=0)
  assert s.paired and s.shifts.min() >= s.min_shift and s.shifts.max() <= 49 - s.min_shift
  np.testing.assert_array_equal((s.shifts[0::2] + s.shifts[1::2]) % 49, 0)
  c = nulls.draw_design("circular", 10, 4, 50, seed=0)
  assert not c.paired and c.shifts.min() >= 5
  with pytest.raises(ValueError, match="at least 5 prompts"):
    nulls.draw_design("trial", 10, 4, 50)
  with pytest.raises(ValueError, match="null must be one of"):
    nulls.draw_design("shuffle", 10, 8, 50)
  with pytest.raises(ValueError, match="n_surrogates"):
    nulls.draw_design("trial", 1, 8, 50)


def test_ties_within_rounding_count_as_exceeding():
  """A surrogate equal to the observed value up to rounding counts as ≥ it (conservative)."""
  import jax.numpy as jnp
  for dtype in (jnp.float32,):
    tol = nulls.tie_tolerance(dtype)
    assert 0 < tol < 1e-4
    obs = jnp.full((1, 3, 1), 0.01, dtype)
    v = obs + jnp.asarray([-0.5 * tol, -2 * tol, 0.0], dtype)[None, :, None]
    zero = jnp.zeros_like(obs)
    _, _, cnt, ge = nulls._accumulate((zero, zero, zero, zero), v, obs)  # pylint: disable=protected-access
    np.testing.assert_array_equal(np.asarray(ge).ravel(), [1, 0, 1])
    np.testing.assert_array_equal(np.asarray(cnt).ravel(), [1, 1, 1])
  with jax.enable_x64(True):
    assert nulls.tie_tolerance(jnp.float64) < 1e-13
