"""Bootstrap, empirical p-values and Benjamini–Hochberg against hand examples and scipy."""
import numpy as np
import pytest
import scipy.stats

from synergy_jax.analysis import stats


def test_bh_hand_example():
  # m = 5, q = 0.05: thresholds k/5 * 0.05 = .01 .02 .03 .04 .05.
  p = np.array([0.001, 0.04, 0.03, 0.2, 0.012])
  rej, adj = stats.benjamini_hochberg(p, 0.05)
  # Sorted: .001 .012 .03 .04 .2 → largest k with p_(k) <= k q/m is k=4 (.04 <= .04).
  np.testing.assert_array_equal(rej, [True, True, True, False, True])
  np.testing.assert_allclose(adj, [0.005, 0.05, 0.05, 0.2, 0.03])


def test_bh_matches_scipy_and_ignores_nan():
  rng = np.random.default_rng(0)
  p = np.concatenate([rng.uniform(size=50), rng.uniform(0, 0.01, size=10)])
  rej, adj = stats.benjamini_hochberg(p, 0.1)
  np.testing.assert_allclose(adj, scipy.stats.false_discovery_control(p, method="bh"))
  pn = p.copy().reshape(6, 10)
  pn[0, 0] = np.nan
  rej2, adj2 = stats.benjamini_hochberg(pn, 0.1)
  assert adj2.shape == (6, 10) and np.isnan(adj2[0, 0]) and not rej2[0, 0]
  np.testing.assert_allclose(adj2.ravel()[1:],
                             scipy.stats.false_discovery_control(p[1:], method="bh"))
  with pytest.raises(ValueError):
    stats.benjamini_hochberg([0.5, 1.5])


def test_empirical_pvalue():
  null = np.array([[0.0], [1.0], [2.0], [3.0]])
  np.testing.assert_allclose(stats.empirical_pvalue(np.array([2.0]), null), [(1 + 2) / 5])
  np.testing.assert_allclose(stats.empirical_pvalue(np.array([9.0]), null), [1 / 5])


def test_bootstrap_ci_mean_coverage_and_seed():
  rng = np.random.default_rng(3)
  data = rng.normal(1.0, 1.0, size=200)
  ci = stats.bootstrap_ci(data, lambda d: d.mean(0), n_boot=500, seed=1)
  se = data.std(ddof=1) / np.sqrt(200)
  assert ci.low < data.mean() < ci.high
  assert abs((ci.high - ci.low) - 2 * 1.96 * se) < 0.3 * 2 * 1.96 * se
  ci2 = stats.bootstrap_ci(data, lambda d: d.mean(0), n_boot=500, seed=1)
  assert ci.low == ci2.low and ci.high == ci2.high


def test_stratified_bootstrap_keeps_groups():
  groups = np.array([0, 0, 0, 1, 1, 2])
  idx = stats.stratified_bootstrap_indices(groups, 50, seed=0)
  assert idx.shape == (50, 6)
  np.testing.assert_array_equal(groups[idx], np.broadcast_to(groups, (50, 6)))
