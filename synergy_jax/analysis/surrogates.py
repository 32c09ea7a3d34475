"""Circular-shift surrogate null for pairwise ΦID atoms.

For each surrogate s and prompt p a shift δ[s, p] is drawn uniformly from
{min_shift, ..., T − min_shift}; the y-series of every pair is the original series circularly
shifted by δ along time, while the x-series is unshifted. This keeps each series' own
autocorrelation and marginal distribution but destroys the time alignment between x and y, so
any sts/rtr left over is what the estimator reports for dynamically unrelated units with the same
autocorrelation (the main confound of time-delayed information measures). Small shifts are
excluded because they leave strongly autocorrelated series nearly aligned.

All pairs of one surrogate are computed at once through the estimator's ``acts_y`` argument
(``phiid.all_pairs(acts, acts_y=shifted)``: unit i of ``acts`` is x, unit j of ``acts_y`` is y).

Statistics (one-sided, "more than chance"):
  z = (observed − mean_null) / sd_null   (sd with ddof=1; NaN when sd = 0)
  p = (1 + #{null >= observed}) / (1 + n_surrogates)          (pvalue="empirical", default)
  p = 1 − Φ(z)  (Gaussian tail of the z-score)                 (pvalue="gaussian")
per pair and per head (head value = partner mean, as in ranking), and Benjamini–Hochberg FDR
across heads (and across pairs) at level q.

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

from synergy_jax.analysis.ranking import ATOM_INDEX, check_atoms, partner_mean
from synergy_jax.analysis.stats import benjamini_hochberg


def default_min_shift(num_steps: int, tau: int = 1) -> int:
  """max(tau + 1, ceil(T / 10)): shifts shorter than a tenth of the series are excluded."""
  return max(tau + 1, int(np.ceil(num_steps / 10)))


def draw_shifts(n_surrogates: int, n_prompts: int, num_steps: int, *, min_shift: int,
                seed: int) -> np.ndarray:
  """(S, P) integer shifts uniform on {min_shift, ..., T − min_shift}, reproducible from seed."""
  if not 1 <= min_shift <= num_steps - min_shift:
    raise ValueError(f"min_shift={min_shift} leaves no admissible shift for T={num_steps} steps "
                     f"(need 1 <= min_shift <= T/2)")
  rng = np.random.default_rng(seed)
  return rng.integers(min_shift, num_steps - min_shift + 1, size=(n_surrogates, n_prompts))


def circular_shift(acts: np.ndarray, shifts: np.ndarray) -> np.ndarray:
  """Rolls each prompt's series along time: out[p, n, t] = acts[p, n, (t − shifts[p]) mod T].

  Args:
    acts: (P, N, T); shifts: (P,) integers.
  Returns:
    (P, N, T) shifted copy (same shift for all units of a prompt).
  """
  a = np.asarray(acts)
  shifts = np.asarray(shifts)
  if a.ndim != 3 or shifts.shape != (a.shape[0],):
    raise ValueError(f"circular_shift: acts (P, N, T) and shifts (P,) expected, got {a.shape}, "
                     f"{shifts.shape}")
  t = a.shape[-1]
  idx = (np.arange(t)[None, :] - shifts[:, None]) % t  # (P, T)
  return np.take_along_axis(a, np.broadcast_to(idx[:, None, :], a.shape), axis=-1)


def normal_sf(z: np.ndarray) -> np.ndarray:
  """Upper tail 1 − Φ(z) of the standard normal, float64 (NaN stays NaN)."""
  z = np.asarray(z, dtype=np.float64)
  f = np.vectorize(lambda v: 0.5 * math.erfc(v / math.sqrt(2.0)) if np.isfinite(v) or np.isinf(v)
                   else np.nan, otypes=[np.float64])
  return f(z) if z.size else z.copy()


def _default_estimator():
  from synergy_jax import phiid  # lazy: phiid is a heavy import and optional for this module
  return phiid.all_pairs


@dataclasses.dataclass(frozen=True)
class SurrogateResult:
  """Null-model statistics for the atoms in ``atoms`` (k names), N units, S surrogates.

  pair_z, pair_p, pair_q, pair_significant: (N, N, k); diagonal NaN / False.
  head_observed, head_z, head_p, head_q, head_significant: (N, k).
  null_head: (S, N, k) per-head partner means of each surrogate.
  null_pair_mean, null_pair_sd: (N, N, k).  shifts: (S, P).
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
  shifts: np.ndarray
  min_shift: int
  fdr_q: float
  pvalue: str = "empirical"

  @property
  def n_surrogates(self) -> int:
    return int(self.shifts.shape[0])

  def summary(self) -> dict:
    """JSON-able summary for results.json (per atom: significant heads, z-score distribution)."""
    out = {"n_surrogates": self.n_surrogates, "min_shift": self.min_shift, "fdr_q": self.fdr_q,
           "pvalue": self.pvalue, "min_attainable_empirical_p": 1.0 / (1 + self.n_surrogates),
           "method": f"circular shift of y against x per prompt; one-sided {self.pvalue} p; BH-FDR"}
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
                   seed: int = 0, min_shift: int | None = None, tau: int = 1,
                   atoms: Sequence[str] = ("sts", "rtr"), fdr_q: float = 0.05,
                   pvalue: str = "empirical",
                   estimator: Callable | None = None, progress: Callable | None = None,
                   **estimator_kwargs) -> SurrogateResult:
  """Circular-shift null for the observed atoms (see module docstring).

  Args:
    acts: (P, N, T) activations the observed atoms were computed from.
    observed: (N, N, 16) observed atoms, e.g. ``phiid.all_pairs(acts, tau=tau, ...)``.
    n_surrogates: number of surrogates S (>= 100 recommended: the smallest attainable p is 1/(S+1)).
    seed: RNG seed of the shifts. min_shift: see :func:`default_min_shift`.
    tau: the estimator's lag, passed on and used for the default min_shift.
    atoms: atom names to test.
    fdr_q: BH false discovery rate. pvalue: "empirical" or "gaussian" (see module docstring).
    estimator: ``f(acts, *, acts_y, tau, **kw) -> (N, N, 16)``; default ``phiid.all_pairs``.
    progress: optional wrapper of the surrogate iterable (e.g. ``tqdm.tqdm``).
    estimator_kwargs: passed to the estimator (redundancy=, pool=, mesh=, ...).
  Returns:
    SurrogateResult.
  """
  acts = np.asarray(acts)
  obs = check_atoms(observed)
  if acts.ndim != 3:
    raise ValueError(f"acts must be (P, N, T), got {acts.shape}")
  p_, n, t = acts.shape
  if obs.shape[0] != n:
    raise ValueError(f"observed atoms are for {obs.shape[0]} units but acts has {n}")
  if n_surrogates < 2:
    raise ValueError(f"n_surrogates must be >= 2 (a z-score needs a null sd), got {n_surrogates}")
  if pvalue not in ("empirical", "gaussian"):
    raise ValueError(f"pvalue must be 'empirical' or 'gaussian', got {pvalue!r}")
  for a in atoms:
    if a not in ATOM_INDEX:
      raise ValueError(f"unknown atom {a!r}")
  idx = [ATOM_INDEX[a] for a in atoms]
  k = len(idx)
  estimator = estimator or _default_estimator()
  min_shift = default_min_shift(t, tau) if min_shift is None else int(min_shift)
  shifts = draw_shifts(n_surrogates, p_, t, min_shift=min_shift, seed=seed)

  off = ~np.eye(n, dtype=bool)
  obs_pair = np.where(off[..., None], obs[:, :, idx], np.nan)  # (N, N, k)
  obs_head = np.stack([partner_mean(obs_pair[:, :, a]) for a in range(k)], -1)  # (N, k)
  s1 = np.zeros((n, n, k))
  s2 = np.zeros((n, n, k))
  cnt = np.zeros((n, n, k))
  ge = np.zeros((n, n, k))
  null_head = np.empty((n_surrogates, n, k))
  it = range(n_surrogates)
  for s in (progress(it) if progress else it):
    sur = np.asarray(estimator(acts, acts_y=circular_shift(acts, shifts[s]), tau=tau,
                               **estimator_kwargs), dtype=np.float64)
    if sur.shape != (n, n, 16):
      raise ValueError(f"estimator returned shape {sur.shape} for surrogate {s}; expected "
                       f"({n}, {n}, 16)")
    v = np.where(off[..., None], sur[:, :, idx], np.nan)
    ok = np.isfinite(v)
    vz = np.where(ok, v, 0.0)
    s1 += vz
    s2 += vz * vz
    cnt += ok
    ge += ok & (v >= obs_pair)
    null_head[s] = np.stack([partner_mean(v[:, :, a]) for a in range(k)], -1)

  with np.errstate(invalid="ignore", divide="ignore"):
    mean = np.where(cnt > 0, s1 / np.maximum(cnt, 1), np.nan)
    var = np.where(cnt > 1, (s2 - cnt * mean ** 2) / np.maximum(cnt - 1, 1), np.nan)
    sd = np.sqrt(np.maximum(var, 0.0))
    pair_z = np.where(sd > 0, (obs_pair - mean) / np.where(sd > 0, sd, 1.0), np.nan)
  pair_p = np.where(np.isnan(obs_pair) | (cnt == 0), np.nan, (1.0 + ge) / (1.0 + cnt))

  hmean = np.nanmean(null_head, 0)
  hsd = np.nanstd(null_head, 0, ddof=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    head_z = np.where(hsd > 0, (obs_head - hmean) / np.where(hsd > 0, hsd, 1.0), np.nan)
  valid = np.isfinite(null_head)
  head_ge = np.sum(valid & (null_head >= obs_head[None]), 0)
  head_p = np.where(np.isnan(obs_head), np.nan, (1.0 + head_ge) / (1.0 + valid.sum(0)))

  if pvalue == "gaussian":
    pair_p, head_p = normal_sf(pair_z), normal_sf(head_z)
  head_rej, head_q = zip(*(benjamini_hochberg(head_p[:, a], fdr_q) for a in range(k)))
  # All N(N−1) ordered pairs form one BH family per atom: (i, j) and (j, i) are different
  # comparisons (which unit's series is shifted).
  pair_rej, pair_q = zip(*(benjamini_hochberg(pair_p[:, :, a], fdr_q) for a in range(k)))
  return SurrogateResult(tuple(atoms), pair_z, pair_p, np.stack(pair_q, -1),
                         np.stack(pair_rej, -1), obs_head, head_z, head_p,
                         np.stack(head_q, -1), np.stack(head_rej, -1), null_head, mean, sd,
                         shifts, min_shift, fdr_q, pvalue)

