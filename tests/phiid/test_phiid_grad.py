"""Reverse-mode gradients of the Gaussian ΦID: finite-difference agreement, no NaN, soft minimum.

Every gradient check compares ⟨∇f, v⟩ with the central difference (f(x + εv) − f(x − εv)) / 2ε in
float64 along a few random unit directions v, where f is a fixed random weighting of the atoms.
MMI and CCS are piecewise smooth (a minimum; sign rules), so each check first asserts that x is
away from a branch change: ``_branches`` records which candidate each MMI minimum picks and the
sign pattern of every CCS rule, and they must be identical at x − εv and x + εv; MMI inputs are
the first random draw whose minima all win by more than 1e-4 nats (``_away_from_ties``).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.phiid import gaussian
from synergy_jax.phiid import kinds
from synergy_jax.phiid import lattice
from synergy_jax.phiid import transforms

EPS = 1e-5
RTOL = 1e-6
NUM_DIRECTIONS = 2


def _acts(seed, shape):
  """Autocorrelated, cross-coupled series (atoms well away from 0)."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(shape)
  a = a + 0.6 * np.roll(a, 1, axis=-1)
  return a + 0.4 * np.roll(a, 1, axis=-2)


# A CCS sample whose co-information is below this (nats) may switch branch freely: its jump is
# far below what the finite differences resolve (e.g. the double redundancy's co-information is
# 0 up to rounding where the other rules all answer 0).
CCS_JUMP_TOL = 1e-12


@functools.partial(jax.jit, static_argnames="config")
def _rules(src, trg, config):
  """What each piecewise rule does at the pairs (src[..., i], trg[..., i]), as the estimator
  sees them. src, trg: (..., T), or (..., P, T) for pool="concat".

  MMI: per minimum, the candidates' average MIs (k, ..., 1). CCS: per rule, the local
  co-information and whether all local terms agree with its sign (..., S) each.
  """
  axes = kinds.pool_axes(config, -2)
  lagged = [kinds.kind_of(config).prepare(transforms.preprocess(v, config.preprocess), config,
                                          axes) for v in (src, trg)]
  (xp, xf), (yp, yf) = lagged
  if config.pool == "concat":
    xp, xf, yp, yf = (u.reshape(u.shape[:-2] + (-1,)) for u in (xp, xf, yp, yf))
  zs = (xp, yp, xf, yf)
  offsets = phiid.bias.mi_offsets(xp.shape[-1]) if config.bias_correction else None
  corrs = gaussian.correlations(zs)
  if config.redundancy == "mmi":
    avg = gaussian.shift(gaussian.average_mis(*corrs), offsets)
    groups = [v[:2] for v in lattice.PID_REDUNDANCIES.values()] + [lattice.DOUBLE_CANDIDATES]
    return [jnp.stack([avg[c] for c in g]) for g in groups]
  loc = gaussian.local_mis(corrs, zs, offsets)
  rules = [((loc[c1], loc[c2], loc[j]), loc[c1] + loc[c2] - loc[j])
           for c1, c2, j in lattice.PID_REDUNDANCIES.values()]
  vals = lattice.lattice_values(loc, "ccs", None)
  coinfo = sum(w * vals[k] for k, w in enumerate(lattice.DOUBLE_COINFO) if w)
  rules.append((tuple(loc[c] for c in lattice.DOUBLE_CANDIDATES), coinfo))
  out = []
  for terms, co in rules:
    agree = jnp.all(jnp.stack([jnp.sign(t) == jnp.sign(co) for t in terms]), axis=0)
    out.append((co, agree))
  return out


def _branches(src, trg, config):
  """(branch signature, margin): which candidate every MMI minimum takes and the smallest gap to
  the runner-up; or, for CCS, which samples each rule keeps (samples whose co-information is below
  ``CCS_JUMP_TOL`` left out) and margin inf."""
  rules = _rules(src, trg, config)
  if config.redundancy == "mmi":
    cands = [np.asarray(m) for m in rules]
    margin = min(float(np.min(np.diff(np.sort(m, axis=0)[:2], axis=0))) for m in cands)
    return [np.argmin(m, axis=0) for m in cands], margin
  return [np.asarray(agree & (jnp.abs(co) > CCS_JUMP_TOL)) for co, agree in rules], np.inf


def _assert_same_branches(pairs_of, x, v, config):
  """pairs_of(x) → (src, trg) series; x ± εv must sit on the same branch, x well inside it."""
  lo, hi = (_branches(*pairs_of(x + s * EPS * v), config) for s in (-1, 1))
  for a, b in zip(lo[0], hi[0]):
    np.testing.assert_array_equal(a, b, err_msg="x ± εv straddles a branch change")
  mid = _branches(*pairs_of(x), config)[1]
  assert mid > 1e-4, f"an MMI minimum is within {mid} nats of a tie"


def _away_from_ties(make, pairs_of, config, tries=20):
  """The first of make(0), make(1), ... whose MMI minima all win by > 1e-4 nats (CCS: make(0))."""
  for seed in range(tries):
    x = make(seed)
    if _branches(*pairs_of(x), config)[1] > 1e-4:
      return x
  raise AssertionError(f"no input among {tries} seeds is away from MMI ties")


def _check_directional(f, x, seed, pairs_of, config, free=None):
  """⟨∇f(x), v⟩ against central differences for NUM_DIRECTIONS random unit directions (zero
  where the bool array ``free``, broadcastable to x, is False)."""
  g = jax.jit(jax.grad(f))(x)
  assert jnp.isfinite(g).all(), "gradient has NaN/inf"
  assert float(jnp.max(jnp.abs(g))) > 0
  rng = np.random.default_rng(seed)
  ff = jax.jit(f)
  for _ in range(NUM_DIRECTIONS):
    v = jnp.asarray(rng.standard_normal(x.shape))
    v = v if free is None else jnp.where(free, v, 0.0)
    v = v / jnp.linalg.norm(v)
    _assert_same_branches(pairs_of, x, v, config)
    fd = (float(ff(x + EPS * v)) - float(ff(x - EPS * v))) / (2 * EPS)
    ad = float(jnp.vdot(g, v))
    assert np.isfinite(fd) and np.isfinite(ad)
    assert abs(ad - fd) <= RTOL * max(abs(fd), abs(ad)), (ad, fd)
  return g


def _weights(seed, shape):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


# (tau, redundancy, pool, bias_correction): every value of every factor once per function (each
# case is a reverse-mode compilation, up to ~15 s of CPU for CCS).
PHIID_CASES = [(1, "mmi", "mean", False), (2, "ccs", "concat", True)]
ALL_PAIRS_CASES = [(2, "mmi", "concat", True), (1, "ccs", "mean", False)]


@pytest.mark.parametrize("tau,redundancy,pool,bias", PHIID_CASES)
def test_phiid_gradient_matches_finite_differences(tau, redundancy, pool, bias):
  config = phiid.PhiidConfig(tau=tau, redundancy=redundancy, pool=pool, bias_correction=bias)
  with jax.enable_x64(True):
    x = _away_from_ties(lambda k: jnp.asarray(_acts(k, (2, 3, 24))), lambda x: (x[0], x[1]),
                        config)  # (src/trg, P, T)
    w = _weights(7, (3, 16) if pool == "mean" else (16,))
    atoms = lambda x: jnp.stack(list(phiid.phiid(x[0], x[1], config=config).values()), -1)
    f = lambda x: jnp.sum(w * atoms(x))
    _check_directional(f, x, 11, lambda x: (x[0], x[1]), config)


def _all_pairs_series(x):
  """(P, U, T) → (src, trg), each (pairs, P, T), of every ordered pair i ≠ j (``_branches``)."""
  i, j = np.nonzero(~np.eye(x.shape[1], dtype=bool))
  return jnp.moveaxis(x[:, i], 0, 1), jnp.moveaxis(x[:, j], 0, 1)


def _with_degenerate_units(a):
  """(P, U, T) → (P, U + 2, T): a constant unit U and a unit U + 1 whose future is an affine map
  of its past; both masked with NaN."""
  p, n, t = a.shape
  const = np.full((p, 1, t), 2.0)
  affine = np.broadcast_to(0.5 ** np.arange(t), (p, 1, t))
  return np.concatenate([a, const, affine], axis=1)


@pytest.mark.parametrize("tau,redundancy,pool,bias", ALL_PAIRS_CASES)
def test_all_pairs_gradient_matches_finite_differences(tau, redundancy, pool, bias):
  # Degenerate units ride along: their entries are NaN (nansum skips them), yet the gradient must
  # stay finite everywhere and be exactly 0 for the constant unit. The directions leave them
  # alone (any perturbation would make them estimable, with huge MIs).
  config = phiid.PhiidConfig(tau=tau, redundancy=redundancy, pool=pool, bias_correction=bias)
  with jax.enable_x64(True):
    live = lambda x: _all_pairs_series(x[:, :4])  # branch checks on the estimable pairs
    x = _away_from_ties(lambda k: jnp.asarray(_with_degenerate_units(_acts(k, (2, 4, 20)))),
                        live, config)
    n = x.shape[1]
    w = _weights(3, (n, n, 16))
    f = lambda x: jnp.nansum(w * phiid.all_pairs(x, config=config))
    free = (jnp.arange(n) < 4)[None, :, None]
    g = _check_directional(f, x, 5, live, config, free)
    assert float(jnp.max(jnp.abs(g[:, 4]))) == 0.0


def test_blocked_gradient_equals_unblocked():
  # Default config; 5 units in blocks of 2 (padded rows, band path: 3 blocks) against one block.
  with jax.enable_x64(True):
    x = jnp.asarray(_acts(21, (2, 5, 16)))
    w = _weights(4, (5, 5, 16))
    grads = [jax.grad(lambda x: jnp.nansum(w * phiid.all_pairs(x, block_size=b)))(x)
             for b in (5, 2)]
    for g in grads:
      assert jnp.isfinite(g).all()
    np.testing.assert_allclose(np.asarray(grads[1]), np.asarray(grads[0]), rtol=1e-9, atol=1e-12)


def test_phiid_gradient_finite_with_degenerate_batch_elements():
  with jax.enable_x64(True):
    a = _acts(2, (2, 4, 30))
    a[1, 1] = 2.0  # trg constant in batch element 1
    a[1, 2] = 0.5 ** np.arange(30)  # trg's future an affine map of its past in element 2
    a[1, 3] = 3 * a[0, 3] + 1  # an affine copy of src in element 3: a singular pair
    src, trg = jnp.asarray(a[0]), jnp.asarray(a[1])
    # jit: inside it the problem codes are traced, so the degenerate elements come back as NaN
    # instead of raising.
    g = jax.jit(jax.grad(lambda s: jnp.nansum(phiid.phiid(s, trg)["sts"])))(src)
    assert jnp.isfinite(g).all()
    np.testing.assert_array_equal(np.asarray(g[1:]), 0.0)
    assert float(jnp.max(jnp.abs(g[0]))) > 0


def test_smooth_min_gradient_and_consistency():
  t = 0.05
  config = phiid.PhiidConfig(smooth_min=t)
  with jax.enable_x64(True):
    x = jnp.asarray(_acts(31, (2, 4, 20)))
    w = _weights(9, (4, 4, 16))
    f = lambda x: jnp.nansum(w * phiid.all_pairs(x, config=config))
    # Smooth everywhere: no branch precondition (ties of the hard minimum do not matter).
    g = jax.grad(f)(x)
    assert jnp.isfinite(g).all()
    rng = np.random.default_rng(1)
    for _ in range(NUM_DIRECTIONS):
      v = jnp.asarray(rng.standard_normal(x.shape))
      v = v / jnp.linalg.norm(v)
      fd = (float(f(x + EPS * v)) - float(f(x - EPS * v))) / (2 * EPS)
      ad = float(jnp.vdot(g, v))
      assert abs(ad - fd) <= RTOL * max(abs(fd), abs(ad)), (ad, fd)
    # The block path (blocks of one row, band) equals the one-pair definition, pair by pair.
    cfg = config.replace(pool="concat", tau=2, bias_correction=True)
    grid = np.asarray(phiid.all_pairs(x, config=cfg, block_size=1))
    for i, j in ((0, 1), (3, 2)):
      one = phiid.phiid(x[:, i], x[:, j], config=cfg)
      np.testing.assert_allclose(grid[i, j], np.stack([np.asarray(one[a]) for a in phiid.ATOMS]),
                                 rtol=1e-10, atol=1e-12)
    # Within t·log k below the hard minimum: every lattice value lies in [hard − t·log 4, hard].
    hard = np.asarray(phiid.all_pairs(x, config=cfg.replace(smooth_min=None), block_size=1))
    r_soft, r_hard = (np.einsum("...k,ak->...a", a, lattice.LATTICE) for a in (grid, hard))
    off = ~np.eye(4, dtype=bool)
    assert np.all(r_soft[off] <= r_hard[off] + 1e-12)
    assert np.all(r_soft[off] >= r_hard[off] - t * np.log(4) - 1e-12)


def test_soft_minimum_bounds():
  t = 0.1
  with jax.enable_x64(True):
    v = [jnp.array([0.3, 1.0, -2.0]), jnp.array([0.31, 0.2, -2.0])]
    soft = np.asarray(lattice.soft_minimum(v, t))
  hard = np.minimum(*map(np.asarray, v))
  assert np.all(soft <= hard + 1e-15) and np.all(soft >= hard - t * np.log(2) - 1e-15)
  np.testing.assert_allclose(soft[2], -2.0 - t * np.log(2))  # a tie: exactly t·log 2 below


@pytest.mark.parametrize("value,culprit", [(0, "> 0"), (-1.0, "> 0"), (True, "> 0"),
                                           (float("nan"), "> 0"), ("0.1", "> 0")])
def test_smooth_min_validation(value, culprit):
  with pytest.raises(ValueError, match=r"smooth_min=.*" + culprit):
    phiid.PhiidConfig(smooth_min=value)


def test_smooth_min_rejects_other_estimators_and_local():
  with pytest.raises(ValueError, match="smooth_min.*redundancy='ccs'"):
    phiid.PhiidConfig(smooth_min=0.1, redundancy="ccs")
  with pytest.raises(ValueError, match="smooth_min.*kind='discrete'"):
    phiid.PhiidConfig(smooth_min=0.1, kind="discrete")
  x = _acts(0, (2, 3, 12))
  cfg = phiid.PhiidConfig(smooth_min=0.1)
  with pytest.raises(ValueError, match="smooth_min.*local"):
    phiid.phiid(x[0], x[1], config=cfg, local=True)
  with pytest.raises(ValueError, match="smooth_min.*local_head_atoms"):
    phiid.local_head_atoms(x, cfg)


def test_cache_key_has_smooth_min_only_when_set():
  assert "smooth_min" not in phiid.PhiidConfig().cache_key(np.float32)
  key = phiid.PhiidConfig(smooth_min=0.25).cache_key(np.float32)
  assert key["smooth_min"] == 0.25
  assert key != phiid.PhiidConfig(smooth_min=0.5).cache_key(np.float32)
