"""Circular-shift surrogates: shifts, null calibration on independent noise, detection of coupling.

Uses a simple independent estimator (lagged Gaussian MI of x_t → y_{t+1} as "sts", and
contemporaneous correlation² as "rtr") and, in one test, the real ``phiid.all_pairs``.
"""
import numpy as np
import pytest

from synergy_jax.analysis import ranking, surrogates


def simple_estimator(acts, *, acts_y=None, tau=1, **_):
  """(N, N, 16) with sts = lagged MI −½log(1−r²) of x_t → y_{t+τ}, rtr = corr(x_t, y_t)²."""
  x = np.asarray(acts, dtype=np.float64)
  y = x if acts_y is None else np.asarray(acts_y, dtype=np.float64)

  def corr(a, b):  # (P, N, T') × (P, N, T') → (N, N) mean over prompts
    a = (a - a.mean(-1, keepdims=True)) / a.std(-1, keepdims=True)
    b = (b - b.mean(-1, keepdims=True)) / b.std(-1, keepdims=True)
    return np.einsum("pit,pjt->ij", a, b) / (a.shape[0] * a.shape[-1])

  out = np.zeros((x.shape[1], x.shape[1], 16))
  r_lag = corr(x[..., :-tau], y[..., tau:])
  out[..., ranking.ATOM_INDEX["sts"]] = -0.5 * np.log(1 - np.minimum(r_lag ** 2, 0.999))
  out[..., ranking.ATOM_INDEX["rtr"]] = corr(x, y) ** 2
  if acts_y is None:
    out[np.arange(x.shape[1]), np.arange(x.shape[1])] = np.nan
  return out


def test_normal_sf():
  import scipy.stats
  z = np.array([-2.0, 0.0, 1.5, 8.0, np.nan])
  np.testing.assert_allclose(surrogates.normal_sf(z)[:4], scipy.stats.norm.sf(z[:4]), rtol=1e-12)
  assert np.isnan(surrogates.normal_sf(z)[4])


def test_circular_shift_and_draws():
  acts = np.arange(2 * 2 * 5, dtype=float).reshape(2, 2, 5)
  out = surrogates.circular_shift(acts, np.array([1, 3]))
  np.testing.assert_array_equal(out[0], np.roll(acts[0], 1, axis=-1))
  np.testing.assert_array_equal(out[1], np.roll(acts[1], 3, axis=-1))
  s = surrogates.draw_shifts(200, 4, 100, min_shift=10, seed=0)
  assert s.min() >= 10 and s.max() <= 90
  assert surrogates.default_min_shift(100) == 10 and surrogates.default_min_shift(5) == 2
  with pytest.raises(ValueError, match="min_shift"):
    surrogates.draw_shifts(2, 2, 10, min_shift=6, seed=0)


def _ar1(rng, p, n, t, phi=0.5):
  e = rng.normal(size=(p, n, t))
  x = np.zeros_like(e)
  for i in range(1, t):
    x[..., i] = phi * x[..., i - 1] + e[..., i]
  return x


def test_independent_noise_z_centred_and_few_discoveries():
  rng = np.random.default_rng(0)
  acts = _ar1(rng, 4, 10, 200)
  obs = simple_estimator(acts)
  res = surrogates.surrogate_test(acts, obs,
                                  null="circular", n_surrogates=100, seed=1,
                                  estimator=simple_estimator)
  off = ~np.eye(10, dtype=bool)
  z = res.pair_z[..., 0][off]
  assert abs(np.mean(z)) < 0.25 and 0.6 < np.std(z) < 1.4
  assert res.head_significant.sum() <= 1
  p = res.pair_p[..., 0][off]
  assert 0.35 < np.mean(p) < 0.65  # roughly uniform p-values
  summ = res.summary()
  assert summ["n_surrogates"] == 100 and set(summ) >= {"sts", "rtr"}


def test_head_z_centred_over_independent_datasets():
  # Heads of one dataset share pairs and shifts, so their z-scores are correlated; the mean over
  # heads is centred only on average over datasets (sd of one dataset's mean ≈ 0.6).
  means = []
  for s in range(8):
    acts = _ar1(np.random.default_rng(100 + s), 3, 8, 150)
    res = surrogates.surrogate_test(acts, simple_estimator(acts),
                                    null="circular", n_surrogates=50, seed=s,
                                    estimator=simple_estimator)
    means.append(np.nanmean(res.head_z, 0))
  assert np.all(np.abs(np.mean(means, 0)) < 0.45)


def test_coupled_pair_detected():
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(3, 6, 300))
  acts[:, 1, 1:] += 1.5 * acts[:, 0, :-1]  # unit 0 drives unit 1 at lag 1
  obs = simple_estimator(acts)
  res = surrogates.surrogate_test(acts, obs,
                                  null="circular", n_surrogates=100, seed=2,
                                  estimator=simple_estimator)
  assert res.pair_z[0, 1, 0] > 5
  assert res.pair_p[0, 1, 0] == pytest.approx(1 / 101)  # the smallest attainable empirical p
  # 30 ordered pairs: BH's first threshold 0.05/30 is below 1/101, so only the Gaussian tail
  # can resolve a single coupled pair.
  assert not res.pair_significant[0, 1, 0]
  res_g = surrogates.surrogate_test(acts, obs,
                                    null="circular", n_surrogates=100, seed=2, pvalue="gaussian",
                                    estimator=simple_estimator)
  assert res_g.pair_significant[0, 1, 0]
  z = np.where(np.isnan(res_g.pair_z[..., 0]), -np.inf, res_g.pair_z[..., 0])
  assert np.unravel_index(np.argmax(z), z.shape) == (0, 1)
  assert res_g.summary()["pvalue"] == "gaussian"
  assert np.isnan(res.pair_z[2, 2, 0])


def test_with_real_phiid_all_pairs():
  from synergy_jax import phiid
  rng = np.random.default_rng(3)
  acts = _ar1(rng, 2, 5, 120, phi=0.6).astype(np.float32)
  obs = np.asarray(phiid.all_pairs(acts))
  res = surrogates.surrogate_test(acts, obs, null="circular", n_surrogates=30, seed=0)
  assert res.head_z.shape == (5, 2) and res.null_head.shape == (30, 5, 2)
  off = ~np.eye(5, dtype=bool)
  assert abs(np.nanmean(res.pair_z[..., 0][off])) < 1.0  # independent series: null-like sts
