"""Diagnostics for known confounds of the synergy–redundancy ranking.

* Per-head synergy and redundancy strongly (anti-)correlated → the rank difference mostly
  reflects one quantity; reported as a Spearman correlation.
* Slowly varying (highly autocorrelated) series inflate time-delayed mutual information, so a
  head's lag-1 autocorrelation is reported and correlated with its synergy.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis.stats import empirical_pvalue, rankdata


@dataclasses.dataclass(frozen=True)
class Correlation:
  """rho: Spearman coefficient; n: pairs used; p_value: two-sided permutation p (NaN if n_perm=0)."""
  rho: float
  n: int
  p_value: float

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pearson r along the last axis; NaN where either input has zero variance."""
  a = a - a.mean(-1, keepdims=True)
  b = b - b.mean(-1, keepdims=True)
  den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def spearman(x: np.ndarray, y: np.ndarray, *, n_perm: int = 0, seed: int = 0) -> Correlation:
  """Spearman rank correlation: Pearson r of average-tie ranks over pairs where both are finite.

  Args:
    x, y: (n,) values.
    n_perm: if > 0, a two-sided permutation p-value (1 + #{|rho_perm| >= |rho|}) / (1 + n_perm).
  """
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"spearman: x and y must be (n,) of equal shape, got {x.shape}, {y.shape}")
  ok = np.isfinite(x) & np.isfinite(y)
  n = int(ok.sum())
  if n < 3:
    return Correlation(float("nan"), n, float("nan"))
  rx, ry = rankdata(x[ok]), rankdata(y[ok])
  rho = float(_pearson(rx, ry))
  p = float("nan")
  if n_perm > 0 and np.isfinite(rho):
    rng = np.random.default_rng(seed)
    perm = np.stack([rng.permutation(ry) for _ in range(n_perm)])  # (n_perm, n)
    null = _pearson(np.broadcast_to(rx, perm.shape), perm)
    p = float(empirical_pvalue(abs(rho) - 1e-12, np.abs(null)))  # two-sided; tolerance for ties
  return Correlation(rho, n, p)


def lag1_autocorrelation(acts: np.ndarray) -> np.ndarray:
  """Lag-1 autocorrelation per prompt and unit, averaged over prompts.

  r1 = Σ_t (x_t − m)(x_{t+1} − m) / Σ_t (x_t − m)²  (the usual ACF estimator, m = series mean).

  Args:
    acts: (P, U, T) activations (P prompts, U units, T time steps), T >= 3.
  Returns:
    (U,) mean over prompts of r1; constant series contribute nothing (NaN if all are constant).
  """
  a = np.asarray(acts, dtype=np.float64)
  if a.ndim != 3 or a.shape[-1] < 3:
    raise ValueError(f"acts must be (P, U, T) with T >= 3, got shape {a.shape}")
  c = a - a.mean(-1, keepdims=True)
  num = (c[..., :-1] * c[..., 1:]).sum(-1)  # (P, U)
  den = (c * c).sum(-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    r = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
  cnt = np.isfinite(r).sum(0)
  return np.where(cnt > 0, np.nansum(r, 0) / np.maximum(cnt, 1), np.nan)


def diagnostics(synergy: np.ndarray, redundancy: np.ndarray, acts: np.ndarray | None = None, *,
                n_perm: int = 1000, seed: int = 0) -> dict:
  """Summary for results.json.

  Returns:
    {"syn_red_spearman": Correlation dict, and if ``acts`` is given "autocorr_lag1": (U,) array
    and "autocorr_syn_spearman": Correlation dict}.
  """
  out = {"syn_red_spearman": spearman(synergy, redundancy, n_perm=n_perm, seed=seed).to_dict()}
  if acts is not None:
    ac = lag1_autocorrelation(acts)
    if ac.shape != np.shape(synergy):
      raise ValueError(f"acts has {ac.shape[0]} units but synergy has {np.shape(synergy)[0]}")
    out["autocorr_lag1"] = ac
    out["autocorr_syn_spearman"] = spearman(ac, synergy, n_perm=n_perm, seed=seed).to_dict()
  return out
