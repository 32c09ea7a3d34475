"""Surrogate null for pairwise ΦID atoms: z-scores, p-values, BH-FDR and null-corrected atoms.

Each surrogate replaces source y of every pair by a version whose alignment with x is broken
(``analysis.nulls``: trial shuffling by default, lagged-pair shift, or the classic circular shift);
all pairs of one surrogate are computed at once. The default, trial shuffling, keeps every unit's
series exactly and is a permutation test when prompts are exchangeable, so independent
autocorrelated units are not flagged (tests/analysis/test_analysis_calibration.py measures the
false-positive rate at φ up to 0.95 and the power on coupled units).

Statistics (one-sided, "more than chance"):
  z = (observed − mean_null) / sd_null   (sd with ddof=1; NaN when sd = 0)
  p = (1 + #{null >= observed}) / (1 + n_surrogates)          (pvalue="empirical", default)
  p = 1 − Φ(z)  (Gaussian tail of the z-score)                 (pvalue="gaussian")
per pair and per head (head value = partner mean, as in ranking), and Benjamini–Hochberg FDR
across heads (and across pairs) at level q. Excess atoms are observed − mean_null (nats).

The empirical p can be no smaller than 1/(S+1), so with S = 100 surrogates and thousands of pairs
BH can only reject when many pairs are extreme at once; the Gaussian tail is the alternative when
individual pairs must be resolved, but it assumes a normal null — MI-like atoms have right-skewed
nulls, so it is anti-conservative for them (check ``null_head`` before relying on it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from synergy_jax.analysis import nulls
from synergy_jax.analysis.nulls import (DEFAULT_NULL, NULLS, circular_shift, default_min_shift,
                                        draw_shifts)
from synergy_jax.analysis.ranking import ATOM_INDEX, check_atoms, partner_mean
from synergy_jax.analysis.stats import benjamini_hochberg

__all__ = ["DEFAULT_NULL", "NULLS", "SurrogateResult", "circular_shift", "default_min_shift",
           "draw_shifts", "normal_sf", "observed_pairs", "surrogate_statistics", "surrogate_test"]


def normal_sf(z: np.ndarray) -> np.ndarray:
  """Upper tail 1 − Φ(z) of the standard normal, float64 (NaN stays NaN)."""
  z = np.asarray(z, dtype=np.float64)
  f = np.vectorize(lambda v: 0.5 * math.erfc(v / math.sqrt(2.0)) if np.isfinite(v) or np.isinf(v)
                   else np.nan, otypes=[np.float64])
  return f(z) if z.size else z.copy()


@dataclasses.dataclass(frozen=True)
class SurrogateResult:
  """Null-model statistics for the atoms in ``atoms`` (k names), U units, S surrogates.

  pair_z, pair_p, pair_q, pair_significant: (U, U, k); diagonal NaN / False.
  head_observed, head_z, head_p, head_q, head_significant: (U, k).
  null_head: (S, U, k) per-head partner means of each surrogate.
  null_pair_mean, null_pair_sd: (U, U, k).  design: the ``nulls.NullDesign`` used.
  Excess atoms: ``pair_excess`` (U, U, k) = observed − null mean; ``head_excess`` (U, k) its
  partner mean (nats).
  """
  atoms: tuple[str, ...]
  pair_z: np.ndarray
  pair_p: np.ndarray
  pair_q: np.ndarray
  pair_significant: np.ndarray
  head_observed: np.ndarray
  head_z: np.ndarray
  head_p: np.ndarray
  head_q: np.ndarray
  head_significant: np.ndarray
  null_head: np.ndarray
  null_pair_mean: np.ndarray
  null_pair_sd: np.ndarray
  design: "nulls.NullDesign"
  fdr_q: float
  pvalue: str = "empirical"
  pair_observed: np.ndarray | None = None

  @property
  def n_surrogates(self) -> int:
    return self.design.n_surrogates

  @property
  def method(self) -> str:
    return self.design.method

  @property
  def shifts(self) -> np.ndarray:
    return self.design.shifts

  @property
  def min_shift(self) -> int:
    return self.design.min_shift

  @property
  def pair_excess(self) -> np.ndarray:
    return self.pair_observed - self.null_pair_mean

  @property
  def head_excess(self) -> np.ndarray:
    ex = self.pair_excess
    return np.stack([partner_mean(ex[..., a]) for a in range(ex.shape[-1])], -1)

  def summary(self) -> dict:
    """JSON-able summary for results.json (per atom: significant heads, z-score distribution)."""
    out = {"n_surrogates": self.n_surrogates, "null": self.method, "min_shift": self.min_shift,
           "fdr_q": self.fdr_q, "pvalue": self.pvalue,
           "min_attainable_empirical_p": 1.0 / (1 + self.n_surrogates),
           "method": f"{self.design.describe()}; one-sided {self.pvalue} p; BH-FDR"}
    n = self.head_z.shape[0]
    off = ~np.eye(n, dtype=bool)
    for a, name in enumerate(self.atoms):
      hz = self.head_z[:, a]
      pz = self.pair_z[:, :, a][off]
      out[name] = {
          "n_heads_significant": int(self.head_significant[:, a].sum()),
          "fraction_heads_significant": float(self.head_significant[:, a].mean()),
          "significant_heads": np.flatnonzero(self.head_significant[:, a]).tolist(),
          "head_z_mean": float(np.nanmean(hz)) if np.isfinite(hz).any() else None,
          "head_z_median": float(np.nanmedian(hz)) if np.isfinite(hz).any() else None,
          "pair_z_mean": float(np.nanmean(pz)) if np.isfinite(pz).any() else None,
          "fraction_pairs_significant": float(self.pair_significant[:, :, a][off].mean()),
      }
    return out


def surrogate_test(acts: np.ndarray, observed: np.ndarray, *, n_surrogates: int = 100,
                   seed: int = 0, null: str = DEFAULT_NULL, min_shift: int | None = None,
                   tau: int = 1, config=None, atoms: Sequence[str] = ("sts", "rtr"),
                   fdr_q: float = 0.05, pvalue: str = "empirical",
                   estimator: Callable | None = None, progress: Callable | None = None,
                   dtype=None, mesh=None, **estimator_kwargs) -> SurrogateResult:
  """Surrogate null for the observed atoms (see module docstring and ``analysis.nulls``).

  Args:
    acts: (P, U, T) activations the observed atoms were computed from.
    observed: (U, U, 16) observed atoms, e.g. ``phiid.all_pairs(acts, config=config)``.
    n_surrogates: number of surrogates S (>= 100 recommended: the smallest attainable p is 1/(S+1)).
    seed: RNG seed of the design. null: one of ``nulls.NULLS``. min_shift: smallest shift of the
      shift nulls (default ``default_min_shift``).
    tau: the estimator's lag when no ``config`` is given.
    config: the ``phiid.PhiidConfig`` of the observed atoms (default: PhiidConfig(tau=tau, ...)).
    atoms: atom names to test. fdr_q: BH false discovery rate. pvalue: "empirical" or "gaussian".
    estimator: ``f(acts, *, acts_y, tau, **kw) -> (U, U, 16)`` instead of ``phiid.all_pairs``.
    progress: optional wrapper of the surrogate iterable (slow path).
    dtype, mesh: compute dtype and device mesh of the estimator.
    estimator_kwargs: passed to a custom ``estimator``.
  Returns:
    SurrogateResult.
  """
  from synergy_jax.phiid.config import PhiidConfig
  acts = np.asarray(acts)
  obs = check_atoms(observed)
  if acts.ndim != 3:
    raise ValueError(f"acts must be (P, U, T), got {acts.shape}")
  p_, n, t = acts.shape
  if obs.shape[0] != n:
    raise ValueError(f"observed atoms are for {obs.shape[0]} units but acts has {n}")
  if pvalue not in ("empirical", "gaussian"):
    raise ValueError(f"pvalue must be 'empirical' or 'gaussian', got {pvalue!r}")
  if config is None:
    config = PhiidConfig(tau=tau)
  elif not isinstance(config, PhiidConfig):
    raise ValueError(f"config must be a phiid.PhiidConfig, got {type(config).__name__}")
  design = nulls.draw_design(null, n_surrogates, p_, t, tau=config.tau, seed=seed,
                             min_shift=min_shift)
  obs_pair = observed_pairs(obs, atoms)
  est = None
  if estimator is not None:
    est = lambda x, y: estimator(x, acts_y=y, tau=config.tau, **estimator_kwargs)
  mom = nulls.null_moments(acts, obs_pair, design, config, atoms=atoms, dtype=dtype, mesh=mesh,
                           estimator=est, progress=progress)
  return surrogate_statistics(obs_pair, design, mom, atoms=atoms, fdr_q=fdr_q, pvalue=pvalue)


def observed_pairs(observed: np.ndarray, atoms: Sequence[str] = ("sts", "rtr")) -> np.ndarray:
  """(U, U, 16) atoms → (U, U, K) values of ``atoms`` with the diagonal NaN."""
  obs = check_atoms(observed)
  for a in atoms:
    if a not in ATOM_INDEX:
      raise ValueError(f"unknown atom {a!r}")
  off = ~np.eye(obs.shape[0], dtype=bool)
  return np.where(off[..., None], obs[:, :, [ATOM_INDEX[a] for a in atoms]], np.nan)


def surrogate_statistics(obs_pair: np.ndarray, design: "nulls.NullDesign",
                         moments: "nulls.NullMoments", *, atoms: Sequence[str] = ("sts", "rtr"),
                         fdr_q: float = 0.05, pvalue: str = "empirical") -> SurrogateResult:
  """z-scores, p-values and BH decisions from reduced surrogate values (``nulls.null_moments``).

  obs_pair: (U, U, K) observed values of ``atoms`` (``observed_pairs``).
  """
  if pvalue not in ("empirical", "gaussian"):
    raise ValueError(f"pvalue must be 'empirical' or 'gaussian', got {pvalue!r}")
  k = len(atoms)
  obs_head = np.stack([partner_mean(obs_pair[:, :, a]) for a in range(k)], -1)  # (U, k)
  s1, s2, cnt, ge = moments.s1, moments.s2, moments.cnt, moments.ge
  null_head = moments.null_head

  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
    var = np.where(cnt > 1, (s2 - cnt * mean ** 2) / np.maximum(cnt - 1, 1), np.nan)
    sd = np.sqrt(np.maximum(var, 0.0))
    pair_z = np.where(sd > 0, (obs_pair - mean) / np.where(sd > 0, sd, 1.0), np.nan)
  pair_p = np.where(np.isnan(obs_pair) | (cnt == 0), np.nan, (1.0 + ge) / (1.0 + cnt))

  with np.errstate(invalid="ignore", divide="ignore"):
    hmean = np.nanmean(null_head, 0)
    hsd = np.nanstd(null_head, 0, ddof=1)
    head_z = np.where(hsd > 0, (obs_head - hmean) / np.where(hsd > 0, hsd, 1.0), np.nan)
  valid = np.isfinite(null_head)
  head_ge = np.sum(valid & (null_head >= obs_head[None]), 0)
  head_p = np.where(np.isnan(obs_head), np.nan, (1.0 + head_ge) / (1.0 + valid.sum(0)))

  if pvalue == "gaussian":
    pair_p, head_p = normal_sf(pair_z), normal_sf(head_z)
  head_rej, head_q = zip(*(benjamini_hochberg(head_p[:, a], fdr_q) for a in range(k)))
  # All U(U−1) ordered pairs form one BH family per atom: (i, j) and (j, i) are different
  # comparisons (which unit's series is replaced).
  pair_rej, pair_q = zip(*(benjamini_hochberg(pair_p[:, :, a], fdr_q) for a in range(k)))
  return SurrogateResult(tuple(atoms), pair_z, pair_p, np.stack(pair_q, -1),
                         np.stack(pair_rej, -1), obs_head, head_z, head_p,
                         np.stack(head_q, -1), np.stack(head_rej, -1), null_head, mean, sd,
                         design, fdr_q, pvalue, obs_pair)
