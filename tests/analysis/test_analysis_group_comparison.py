"""Two-group comparisons of runs: Hedges' g against its closed form, its bootstrap CI, and the
permutation test's false-positive rate under the null (independent and autocorrelated runs) and
its power under a shift."""
import numpy as np
import pytest

from synergy_jax.analysis import stats


def test_hedges_g_closed_form():
  # means 2 and 5, both SDs 1: d = -3, J = 1 - 3 / (4 * 6 - 9) = 0.8
  assert stats.hedges_g([1, 2, 3], [4, 5, 6]) == pytest.approx(-2.4, rel=1e-12)
  # unequal sizes: y has mean 3.75 and squared deviations summing to 8.75, so the pooled
  # variance is (2 * 1 + 8.75) / 5 = 2.15
  x, y = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0, 6.0]
  j = 1 - 3 / (4 * 7 - 9)
  assert stats.hedges_g(x, y) == pytest.approx((2 - 3.75) / np.sqrt(2.15) * j, rel=1e-12)
  assert np.isnan(stats.hedges_g([1, 1], [1, 1]))  # undefined: no spread, no difference
  assert stats.hedges_g([2, 2], [1, 1]) == np.inf
  with pytest.raises(ValueError, match="group y has 1"):
    stats.hedges_g([1, 2], [3])
  with pytest.raises(ValueError, match=r"group x has non-finite values at \[1\]"):
    stats.hedges_g([1, np.nan], [3, 4])


def test_hedges_g_ci_brackets_and_narrows():
  rng = np.random.default_rng(0)
  small = stats.hedges_g_ci(rng.normal(1, 1, 8), rng.normal(0, 1, 8), n_boot=500, seed=1)
  big = stats.hedges_g_ci(rng.normal(1, 1, 200), rng.normal(0, 1, 200), n_boot=500, seed=1)
  for e in (small, big):
    assert np.isfinite([e.g, e.ci_low, e.ci_high]).all() and e.ci_low <= e.g <= e.ci_high
  assert big.ci_high - big.ci_low < 0.5 * (small.ci_high - small.ci_low)
  assert big.ci_low < 1.0 < big.ci_high  # the true effect (1 SD)


def test_permutation_exact_small_case():
  # 2 + 2 values: C(4, 2) = 6 relabellings; medians differ by 2.5 only for the two extreme ones
  res = stats.permutation_test([3.0, 4.0], [0.0, 1.0])
  assert res.exact and res.n_permutations == 6
  assert res.difference == pytest.approx(3.0)
  assert res.p == pytest.approx(2 / 6)


def _rejection_rate(draw, n_rep=300, alpha=0.05, seed=0):
  rng = np.random.default_rng(seed)
  ps = np.array([stats.permutation_test(*draw(rng)).p for _ in range(n_rep)])
  assert np.isfinite(ps).all()
  return float(np.mean(ps <= alpha))


def _ar1_run_mean(rng, n_runs, shift=0.0, phi=0.9, t=50):
  """Each run's value: the mean of its own AR(1) series (autocorrelated within a run)."""
  e = rng.normal(size=(n_runs, t))
  x = np.zeros((n_runs, t))
  for k in range(1, t):
    x[:, k] = phi * x[:, k - 1] + e[:, k]
  return x.mean(1) + shift


def test_permutation_false_positive_rate_and_power():
  # null true, 5 vs 5 independent runs: exact test, rate <= alpha (+ 2 binomial SE)
  se = np.sqrt(0.05 * 0.95 / 300)
  fpr = _rejection_rate(lambda r: (r.normal(size=5), r.normal(size=5)))
  assert fpr <= 0.05 + 2 * se
  fpr_ar = _rejection_rate(lambda r: (_ar1_run_mean(r, 5), _ar1_run_mean(r, 5)), seed=1)
  assert fpr_ar <= 0.05 + 2 * se
  # null false: a 2.5-SD shift of the median is found most of the time with 5 runs each
  power = _rejection_rate(lambda r: (r.normal(2.5, 1, 5), r.normal(size=5)), seed=2)
  assert power >= 0.8
  sd = np.std(_ar1_run_mean(np.random.default_rng(3), 2000))
  power_ar = _rejection_rate(lambda r: (_ar1_run_mean(r, 5, 2.5 * sd), _ar1_run_mean(r, 5)),
                             seed=4)
  assert power_ar >= 0.8


def test_hedges_g_ci_with_constant_resamples_reaches_infinity():
  # two runs per group: a resample of one value twice has no spread, g = ±inf there
  e = stats.hedges_g_ci([0.5, 0.52], [0.40, 0.41], n_boot=200, seed=0)
  assert np.isfinite(e.g) and e.g > 0
  assert e.ci_high == np.inf and not np.isnan(e.ci_low)
