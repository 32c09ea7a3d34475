"""The default surrogate null is calibrated: on independent units with strong, varied
autocorrelation (φ up to 0.95), short series and 30 prompts, heads come out significant at the
nominal rate or less; coupled units are still detected; the classic circular shift is not
calibrated on the same data (so the check has teeth)."""
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import surrogates

PHIS = np.linspace(0.0, 0.95, 12)


def _ar1(rng, p, phis, t, burn=200):
  e = rng.standard_normal((p, len(phis), t + burn))
  x = np.zeros_like(e)
  for i in range(1, t + burn):
    x[..., i] = phis[None, :] * x[..., i - 1] + e[..., i]
  return x[..., burn:].astype(np.float32)


def _flags(null, t, reps, config=None):
  p05, flagged = [], []
  for r in range(reps):
    a = _ar1(np.random.default_rng(r), 30, PHIS, t)
    res = surrogates.surrogate_test(a, np.asarray(phiid.all_pairs(a, config=config)),
                                    n_surrogates=100, seed=r, null=null, config=config)
    assert np.all(np.isfinite(res.head_p))
    p05.append(res.head_p < 0.05)
    flagged.append(res.head_significant)
  return np.mean(p05, axis=(0, 1)), np.mean(flagged, axis=(0, 1))  # (2,) sts, rtr


@pytest.mark.parametrize("t", [50, 100])
def test_trial_null_false_positive_rate_on_independent_ar1(t):
  reps = 25
  frac, flagged = _flags("trial", t, reps)
  n = reps * len(PHIS)
  bound = 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / n)  # nominal plus 2.5 binomial standard errors
  assert np.all(frac <= bound), (frac, bound)
  assert np.all(flagged <= 0.05), flagged  # BH at 5%


def test_trial_null_of_pooled_atoms_false_positive_rate():
  """pool="concat" takes the spectral path (analysis.nulls_spectral); same bound."""
  reps = 25
  frac, flagged = _flags("trial", 50, reps, phiid.PhiidConfig(pool="concat"))
  bound = 0.05 + 2.5 * np.sqrt(0.05 * 0.95 / (reps * len(PHIS)))
  assert np.all(frac <= bound), (frac, bound)
  assert np.all(flagged <= 0.05), flagged


def test_circular_shift_is_anti_conservative_on_the_same_data():
  frac, flagged = _flags("circular", 50, 8)
  assert frac[0] > 0.2 and flagged[0] > 0.1  # sts: far above the nominal 5%


def _coupled(rng, p, n, t, k=4, c=0.6, phi=0.6, burn=100):
  """Unit 0 drives units 1..k−1 at lag 1; the rest are independent AR(1)."""
  e = rng.standard_normal((p, n, t + burn))
  x = np.zeros_like(e)
  for i in range(1, t + burn):
    x[..., i] = phi * x[..., i - 1] + e[..., i]
    x[:, 1:k, i] += c * x[:, 0, i - 1][:, None]
  return x[..., burn:].astype(np.float32)


@pytest.mark.parametrize("pool", ["mean", "concat"])
def test_trial_null_detects_coupled_units(pool):
  cfg = phiid.PhiidConfig(pool=pool)
  hits, false = [], []
  for r in range(3):
    a = _coupled(np.random.default_rng(r), 30, 12, 50)
    res = surrogates.surrogate_test(a, np.asarray(phiid.all_pairs(a, config=cfg)),
                                    n_surrogates=100, seed=r, config=cfg)
    sig = res.head_significant.any(-1)
    hits.append(sig[:4])
    false.append(sig[4:])
  assert np.mean(hits) >= 0.8 and np.mean(false) <= 0.1, (hits, false)
