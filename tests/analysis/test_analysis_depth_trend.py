"""depth_trend recovers a planted inverted U and rejects flat and monotone head scores at (or
below) the nominal rate; reliability helpers against closed forms."""
import numpy as np
import pytest
import scipy.stats

from synergy_jax.analysis import stats

L, H = 6, 8
DEPTH = np.repeat(np.arange(L) / (L - 1), H)


def _rate(make, reps=120):
  hits = 0
  for r in range(reps):
    rng = np.random.default_rng(r)
    res = stats.depth_trend(make(rng), L, H, n_perm=199, n_boot=20, seed=r)
    assert np.isfinite(res.curvature) and 0 < res.p_value <= 1
    hits += res.p_value < 0.05
  return hits / reps


def test_planted_inverted_u_is_recovered():
  rng = np.random.default_rng(0)
  score = -(DEPTH - 0.5) ** 2 + 0.05 * rng.standard_normal(L * H)
  res = stats.depth_trend(score, L, H, seed=1)
  # Least squares on the planted curve: curvature −1, peak 0.5.
  assert res.curvature == pytest.approx(-1.0, abs=0.15)
  assert res.ci[0] < -1.0 + 0.3 and res.ci[1] < 0
  assert res.p_value == pytest.approx(1 / 1001) and res.inverted_u
  assert res.peak_depth == pytest.approx(0.5, abs=0.05) and res["peak_depth"] == res.peak_depth
  assert _rate(lambda g: -(DEPTH - 0.5) ** 2 + 0.1 * g.standard_normal(L * H), reps=40) >= 0.9


def test_flat_and_monotone_scores_rejected_at_nominal_rate():
  se = np.sqrt(0.05 * 0.95 / 120)
  flat = _rate(lambda g: g.standard_normal(L * H))
  linear = _rate(lambda g: DEPTH + 0.3 * g.standard_normal(L * H))
  assert flat <= 0.05 + 2.5 * se and linear <= 0.05 + 2.5 * se, (flat, linear)


def test_monotone_concave_is_not_an_inverted_u():
  # sqrt(d) curves down but peaks at the last layer: negative curvature, no interior peak.
  res = stats.depth_trend(np.sqrt(DEPTH) + 1e-3 * np.arange(L * H) % 3, L, H, seed=0)
  assert res.curvature < 0 and res.peak_depth == 1.0 and not res.inverted_u


def test_depth_trend_errors():
  with pytest.raises(ValueError, match="at least 3 layers"):
    stats.depth_trend(np.zeros(8), 2, 4)
  with pytest.raises(ValueError, match=r"shape \(48,\)"):
    stats.depth_trend(np.zeros(40), L, H)
  score = np.full(L * H, np.nan)
  score[:2 * H] = 1.0
  with pytest.raises(ValueError, match="only 2 layers"):
    stats.depth_trend(score, L, H)


def test_spearman_brown_and_split_half():
  assert stats.spearman_brown(0.5) == pytest.approx(2 / 3)
  assert stats.spearman_brown(0.6, 3) == pytest.approx(1.8 / 2.2)
  assert np.isnan(stats.spearman_brown(-0.3))
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal(30), rng.standard_normal(30)
  assert stats.spearman_rho(a, b) == pytest.approx(scipy.stats.spearmanr(a, b)[0])
  # Every prompt carries the same head pattern plus small noise: halves agree almost perfectly.
  pattern = rng.standard_normal(20)
  per_prompt = pattern[None] + 0.001 * rng.standard_normal((10, 20))
  res = stats.split_half_spearman(per_prompt, lambda s: s.mean(0), n_splits=5)
  assert res["rho"] > 0.99 and res["spearman_brown"] > 0.99 and len(res["per_split"]) == 5
  noise = rng.standard_normal((10, 400))  # no head pattern: halves agree only by chance
  res = stats.split_half_spearman(noise, lambda s: s.mean(0), n_splits=50, seed=1)
  assert abs(res["rho"]) < 0.2
  with pytest.raises(ValueError, match="at least 4 prompts"):
    stats.split_half_spearman(noise[:3], lambda s: s.mean(0))
