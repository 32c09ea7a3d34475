"""Spearman correlation (vs scipy) and lag-1 autocorrelation (vs a direct formula/AR(1))."""
import numpy as np
import scipy.stats

from synergy_jax.analysis import diagnostics


def test_spearman_matches_scipy_with_ties_and_nan():
  rng = np.random.default_rng(0)
  x = np.round(rng.normal(size=50), 1)
  y = x + rng.normal(size=50)
  x[3] = np.nan
  c = diagnostics.spearman(x, y, n_perm=200, seed=0)
  ok = np.isfinite(x)
  ref = scipy.stats.spearmanr(x[ok], y[ok])
  assert c.n == 49
  np.testing.assert_allclose(c.rho, ref.statistic, rtol=1e-12)
  assert c.p_value < 0.01


def test_spearman_independent_not_significant():
  rng = np.random.default_rng(5)
  c = diagnostics.spearman(rng.normal(size=40), rng.normal(size=40), n_perm=500, seed=1)
  assert abs(c.p_value - 0.5) < 0.5 and c.p_value > 0.01


def test_lag1_autocorrelation():
  rng = np.random.default_rng(0)
  phi = 0.8
  t = 4000
  e = rng.normal(size=(2, 1, t))
  x = np.zeros_like(e)
  for i in range(1, t):
    x[..., i] = phi * x[..., i - 1] + e[..., i]
  acts = np.concatenate([x, e], axis=1)  # unit 0 AR(1), unit 1 white noise
  r = diagnostics.lag1_autocorrelation(acts)
  assert abs(r[0] - phi) < 0.03 and abs(r[1]) < 0.05
  # Direct formula on a short series.
  s = np.array([1.0, 3.0, 2.0, 5.0])
  c = s - s.mean()
  expected = (c[:-1] * c[1:]).sum() / (c * c).sum()
  np.testing.assert_allclose(diagnostics.lag1_autocorrelation(s[None, None]), [expected])


def test_diagnostics_summary():
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(3, 6, 20))
  d = diagnostics.diagnostics(np.arange(6.0), np.arange(6.0)[::-1], acts, n_perm=50)
  assert d["syn_red_spearman"]["rho"] == -1.0
  assert d["autocorr_lag1"].shape == (6,)
