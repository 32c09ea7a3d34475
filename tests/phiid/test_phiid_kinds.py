"""Estimator variants (copula, discrete schemes, preprocessing, bias correction) against
independent references, and every variant through all_pairs equal to the one-pair function."""
import jax
import numpy as np
import pytest
from scipy import special

import phiid_reference as ref
from synergy_jax import phiid
from synergy_jax.phiid import PhiidConfig

ATOMS = phiid.ATOMS


def _acts(seed, p=2, n=6, t=24):
  """(P, U, T) positive, coupled, autocorrelated series (unit 1 follows unit 0)."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  for s in range(1, t):
    a[:, :, s] += 0.5 * a[:, :, s - 1]
  a[:, 1, 1:] += 0.8 * a[:, 0, :-1]
  return 2.0 + a + 0.05 * np.arange(t)  # a trend, so detrending matters


def _vec(d):
  return np.array([np.asarray(d[name]) for name in ATOMS]).T


def _reference_grid(acts, config, **kw):
  """(U, U, 16) from the per-pair reference (mean over prompts, or one pooled estimate)."""
  p, n, _ = acts.shape
  out = np.full((n, n, 16), np.nan)
  for i in range(n):
    for j in range(n):
      if i == j:
        continue
      if config.pool == "mean":
        out[i, j] = np.mean([ref.reference_variant(acts[q:q + 1, i], acts[q:q + 1, j],
                                                   config.tau, config.redundancy, config.kind,
                                                   **kw) for q in range(p)], axis=0)
      else:
        out[i, j] = ref.reference_variant(acts[:, i], acts[:, j], config.tau, config.redundancy,
                                          config.kind, **kw)
  return out


@pytest.mark.parametrize("config", [
    PhiidConfig(kind="copula", redundancy="mmi", tau=2),
    PhiidConfig(kind="copula", redundancy="ccs", pool="concat", preprocess="detrend"),
])
def test_copula_equals_gaussian_on_independent_normal_scores(config):
  acts = _acts(1)
  expected = _reference_grid(acts, config, prep=config.preprocess)
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(acts, config=config, block_size=2))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_copula_invariant_to_monotone_transforms():
  acts = _acts(2)
  moved = acts.copy()
  moved[:, 0] = np.exp(acts[:, 0])
  moved[:, 3] = acts[:, 3] ** 3
  moved[:, 4] = -1.0 / (1.0 + np.exp(-acts[:, 4]))  # decreasing: only the order flips ...
  config = PhiidConfig(kind="copula")
  with jax.enable_x64(True):
    base = np.asarray(phiid.all_pairs(acts, config=config))
    got = np.asarray(phiid.all_pairs(moved, config=config))
    gauss = np.asarray(phiid.all_pairs(moved))
  keep = [0, 1, 2, 3, 5]  # ... so unit 4 is left out of the exact comparison
  np.testing.assert_allclose(got[np.ix_(keep, keep)], base[np.ix_(keep, keep)], rtol=0,
                             atol=1e-12)
  # The Gaussian estimator is not invariant: the transforms change its atoms clearly.
  assert np.nanmax(np.abs(gauss[np.ix_(keep, keep)] - base[np.ix_(keep, keep)])) > 1e-3


@pytest.mark.parametrize("config, kw", [
    (PhiidConfig(kind="discrete", redundancy="ccs", pool="concat", tau=2), {}),
    (PhiidConfig(kind="discrete", discretise="series", redundancy="ccs"),
     {"discretise": "series"}),
    (PhiidConfig(kind="discrete", discretise="quantile", num_states=3, preprocess="diff"),
     {"discretise": "quantile", "num_states": 3}),
])
def test_discrete_schemes_match_plug_in_reference(config, kw):
  acts = _acts(3, t=40)
  expected = _reference_grid(acts, config, prep=config.preprocess, **kw)
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(acts, config=config, block_size=2))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_digamma_closed_form_matches_scipy():
  for z in [0.5, 1.0, 1.5, 2.0, 7.5, 30.0, 999.5]:
    assert phiid.bias.digamma_half_integer(z) == pytest.approx(special.digamma(z), abs=1e-12)


def _bias_scipy(da, db, n):
  """b(d_A, d_B, n) = g(d_A) + g(d_B) − g(d_A + d_B), g(d) = ½ Σ_{i≤d} ψ((n − i)/2) (test-side)."""
  g = lambda d: 0.5 * sum(special.digamma((n - i) / 2) for i in range(1, d + 1))
  return g(da) + g(db) - g(da + db)


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_bias_correction_shifts_every_mi_by_the_wishart_bias(redundancy):
  """Corrected atoms = Möbius inversion of the reference lattice with each MI lowered by b."""
  rng = np.random.default_rng(6)
  x = rng.standard_normal(30)
  y = 0.6 * np.roll(x, 1) + rng.standard_normal(30)
  tau, n = 1, 29
  i = ref.local_mi_table(x, y, tau)
  dims = {"x": 1, "y": 1, "s": 2}
  i = {k: v - _bias_scipy(dims[k[0]], dims[k[1]], n) for k, v in i.items()}
  expected = ref.local_atoms_from_mis(i, redundancy).mean(axis=0)
  with jax.enable_x64(True):
    got = _vec(phiid.phiid(x, y, config=PhiidConfig(redundancy=redundancy,
                                                      bias_correction=True)))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_bias_corrected_white_noise_tdmi_averages_to_zero():
  """Independent white noise, 4000 pairs of length 40: the plug-in TDMI (sum of atoms) is
  clearly positive (≈ 4 correlations / (2n)), the corrected one is 0 within 3 standard errors."""
  rng = np.random.default_rng(7)
  x, y = rng.standard_normal((2, 4000, 40))
  with jax.enable_x64(True):
    plug = _vec(phiid.phiid(x, y)).sum(axis=-1)
    corr = _vec(phiid.phiid(x, y, config=PhiidConfig(bias_correction=True))).sum(axis=-1)
  assert np.isfinite(plug).all() and np.isfinite(corr).all()
  se_plug, se_corr = plug.std(ddof=1) / np.sqrt(plug.size), corr.std(ddof=1) / np.sqrt(corr.size)
  assert plug.mean() > 10 * se_plug and plug.mean() > 0.03
  assert abs(corr.mean()) < 3 * se_corr, (corr.mean(), se_corr)


# Between them: every kind, both redundancies, both pools, every preprocessing, bias correction,
# the lagged and quantile discretisations; the first is also run sharded over 8 devices.
ALL_VARIANTS = [
    PhiidConfig(tau=2, redundancy="ccs", preprocess="detrend", bias_correction=True),
    PhiidConfig(kind="copula", pool="concat", preprocess="diff", bias_correction=True),
    PhiidConfig(kind="discrete", redundancy="ccs", pool="concat"),
    PhiidConfig(kind="discrete", discretise="quantile", num_states=3, tau=2),
]


@pytest.mark.parametrize("config", ALL_VARIANTS)
def test_every_variant_all_pairs_blocked_banded_sharded_equals_one_pair(config):
  acts = _acts(8, p=2, n=6, t=30)
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("pairs",))
  with jax.enable_x64(True):
    banded = np.asarray(phiid.all_pairs(acts, config=config, block_size=2))
    sharded = banded
    if config is ALL_VARIANTS[0]:
      sharded = np.asarray(phiid.all_pairs(acts, config=config, block_size=1, mesh=mesh))
    expected = np.full((6, 6, 16), np.nan)
    for i in range(6):
      for j in range(6):
        if i != j:
          atoms = _vec(phiid.phiid(acts[:, i], acts[:, j], config=config))
          expected[i, j] = atoms if config.pool == "concat" else atoms.mean(axis=0)
  off = ~np.eye(6, dtype=bool)
  assert np.isfinite(expected[off]).all()
  np.testing.assert_allclose(banded, expected, rtol=0, atol=1e-10)
  np.testing.assert_allclose(sharded, expected, rtol=0, atol=1e-10)
