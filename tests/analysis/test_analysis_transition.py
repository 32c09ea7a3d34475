"""Logistic transition fits on synthetic data: known threshold recovered, no jump not claimed,
a linear trend not called a transition; the fits themselves against numpy/scipy references."""
import numpy as np
import pytest
import scipy.optimize

from synergy_jax.analysis import transition as tr

LEVELS = np.repeat(np.arange(1.0, 9.0), 25)  # 8 levels × 25 prompts


def _fast(x, y, **kw):
  return tr.analyze_transition(x, y, n_boot=150, n_perm=150, seed=0, **kw)


def test_known_threshold_recovered():
  rng = np.random.default_rng(0)
  y = tr.logistic(LEVELS, 5.3, 0.3, 0.2, 0.8) + 0.1 * rng.normal(size=LEVELS.size)
  res = _fast(LEVELS, y)
  assert res.supported, res.explanation
  assert abs(res.threshold - 5.3) < 0.35
  assert res.threshold_ci[0] <= 5.3 <= res.threshold_ci[1]
  lg = res.fits["logistic"].params
  assert abs(lg["low"] - 0.2) < 0.05 and abs(lg["high"] - 0.8) < 0.05
  d = res.to_dict()
  assert d["threshold"]["estimate"] == res.threshold and d["supported"]
  assert res.susceptibility.shape == (8,)
  import json
  from synergy_jax import results
  json.dumps(results.to_jsonable(d))  # results.json-ready


def test_no_jump_not_claimed():
  rng = np.random.default_rng(1)
  y = 0.5 + 0.1 * rng.normal(size=LEVELS.size)
  res = _fast(LEVELS, y)
  assert not res.supported and res.threshold is None
  assert res.to_dict()["threshold"] is None
  assert "No transition" in res.explanation


def test_linear_trend_not_a_transition():
  rng = np.random.default_rng(2)
  y = 0.05 * LEVELS + 0.1 * rng.normal(size=LEVELS.size)
  res = _fast(LEVELS, y)
  assert not res.supported
  assert not res.criteria["aic"]["passed"]


def test_logistic_fit_matches_scipy_least_squares():
  rng = np.random.default_rng(3)
  x = np.repeat(np.linspace(0, 1, 11), 10)
  y = tr.logistic(x, 0.55, 0.08, -1.0, 2.0) + 0.3 * rng.normal(size=x.size)
  f = tr.fit_logistic(x, y)
  ref = scipy.optimize.curve_fit(lambda x, t, w, lo, hi: tr.logistic(x, t, w, lo, hi), x, y,
                                 p0=[0.5, 0.1, 0.0, 1.0])[0]
  ref_sse = np.sum((y - tr.logistic(x, *ref)) ** 2)
  assert f.sse <= ref_sse * (1 + 1e-4)
  np.testing.assert_allclose([f.params["threshold"], f.params["width"]], ref[:2], rtol=0.05)


def test_linear_and_constant_fits_and_aic():
  rng = np.random.default_rng(4)
  x = rng.uniform(size=40)
  y = 1 + 2 * x + rng.normal(size=40)
  lin = tr.fit_linear(x, y)
  slope, intercept = np.polyfit(x, y, 1)
  assert lin.params["slope"] == pytest.approx(slope) and lin.params["intercept"] == pytest.approx(
      intercept)
  const = tr.fit_constant(x, y)
  n = 40
  s2 = np.mean((y - y.mean()) ** 2)
  assert const.aic == pytest.approx(2 * 2 + n * np.log(2 * np.pi * s2) + n)


def test_susceptibility_and_errors():
  x = np.array([1, 1, 1, 2, 2, 2.0])
  y = np.array([0, 1, 2, 0, 0, 0.0])
  lv, var, peak = tr.susceptibility(x, y)
  np.testing.assert_allclose(var, [1.0, 0.0])
  assert peak == 1.0
  with pytest.raises(ValueError, match=">= 3 difficulty levels"):
    tr.analyze_transition(x, y)
  with pytest.raises(ValueError, match="non-finite"):
    tr.fit_logistic(np.array([1.0, 2.0, np.nan]), np.zeros(3))
