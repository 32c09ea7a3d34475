"""Resampling statistics: ranks, seeded bootstrap over prompts, empirical p-values, BH-FDR.

All functions are numpy; loops run over bootstrap replicates only, each replicate vectorised.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
  """Ranks of a 1-D array, base 1 (smallest value → 1), ties get the average of their ranks.

  NaN entries get rank NaN and do not take part: the finite values are ranked 1..n_finite.

  Args:
    x: (N,) values.
  Returns:
    (N,) float64 ranks.
  """
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 1:
    raise ValueError(f"rankdata expects a 1-D array, got shape {x.shape}")
  out = np.full(x.shape, np.nan)
  ok = ~np.isnan(x)
  v = x[ok]
  if v.size == 0:
    return out
  order = np.argsort(v, kind="stable")
  sv = v[order]
  # Runs of equal values: start index of each run; average rank = mean of (start+1 .. end).
  new_run = np.concatenate([[True], sv[1:] != sv[:-1]])
  run_id = np.cumsum(new_run) - 1
  starts = np.flatnonzero(new_run)
  ends = np.concatenate([starts[1:], [sv.size]])
  avg = (starts + 1 + ends) / 2.0  # mean of integers starts+1 .. ends
  r = np.empty(v.size)
  r[order] = avg[run_id]
  out[ok] = r
  return out


@dataclasses.dataclass(frozen=True)
class BootstrapCI:
  """A point estimate with a percentile bootstrap interval.

  estimate: the statistic on the full data; low/high: the (1-level)/2 and (1+level)/2 percentiles
  of the bootstrap distribution; samples: (n_boot, ...) replicate values.
  """
  estimate: np.ndarray
  low: np.ndarray
  high: np.ndarray
  level: float
  samples: np.ndarray

  def to_dict(self) -> dict:
    return {"estimate": np.asarray(self.estimate), "ci_low": np.asarray(self.low),
            "ci_high": np.asarray(self.high), "ci_level": self.level,
            "n_boot": int(self.samples.shape[0])}


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
  """(n_boot, n) indices drawn with replacement from range(n), reproducible from ``seed``."""
  if n < 1:
    raise ValueError(f"bootstrap needs at least one observation, got n={n}")
  if n_boot < 1:
    raise ValueError(f"n_boot must be >= 1, got {n_boot}")
  return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def stratified_bootstrap_indices(groups: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
  """(n_boot, n) indices resampled with replacement *within* each group (e.g. difficulty level).

  Each replicate keeps every group's size, so a per-level statistic always has all levels.
  """
  groups = np.asarray(groups)
  if groups.ndim != 1:
    raise ValueError(f"groups must be 1-D, got shape {groups.shape}")
  rng = np.random.default_rng(seed)
  out = np.empty((n_boot, groups.size), dtype=np.int64)
  for g in np.unique(groups):
    members = np.flatnonzero(groups == g)
    out[:, members] = members[rng.integers(0, members.size, size=(n_boot, members.size))]
  return out


def percentile_interval(samples: np.ndarray, level: float = 0.95, axis: int = 0):
  """(low, high) percentile interval of ``samples`` along ``axis``, ignoring NaN replicates."""
  if not 0.0 < level < 1.0:
    raise ValueError(f"CI level must be in (0, 1), got {level}")
  a = (1.0 - level) / 2.0
  lo, hi = np.nanquantile(np.asarray(samples, dtype=np.float64), [a, 1.0 - a], axis=axis)
  return lo, hi


def bootstrap_ci(data: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], *,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                 groups: np.ndarray | None = None) -> BootstrapCI:
  """Percentile bootstrap CI of ``statistic`` resampling the first axis of ``data`` (prompts).

  Args:
    data: (P, ...) one entry per prompt.
    statistic: maps a (P, ...) array to a scalar or array (e.g. ``lambda d: d.mean(0)``).
    n_boot: number of replicates; level: two-sided coverage; seed: RNG seed.
    groups: optional (P,) labels for a stratified bootstrap (resample within each label).
  Returns:
    BootstrapCI with the full-data estimate and percentile limits.
  """
  data = np.asarray(data)
  if data.ndim == 0 or data.shape[0] == 0:
    raise ValueError(f"bootstrap_ci: data must have a non-empty prompt axis, got shape {data.shape}")
  if groups is None:
    idx = bootstrap_indices(data.shape[0], n_boot, seed)
  else:
    if len(groups) != data.shape[0]:
      raise ValueError(f"bootstrap_ci: groups has {len(groups)} labels for {data.shape[0]} prompts")
    idx = stratified_bootstrap_indices(np.asarray(groups), n_boot, seed)
  est = np.asarray(statistic(data), dtype=np.float64)
  samples = np.stack([np.asarray(statistic(data[i]), dtype=np.float64) for i in idx])
  lo, hi = percentile_interval(samples, level)
  return BootstrapCI(est, lo, hi, level, samples)


def empirical_pvalue(observed: np.ndarray, null: np.ndarray, axis: int = 0) -> np.ndarray:
  """One-sided upper p-value (1 + #{null >= observed}) / (1 + n_null) along ``axis`` of ``null``.

  The +1 counts the observation as one draw of the null, so p is never 0 (Phipson & Smyth 2010).
  NaN observations give NaN; NaN null draws are left out of both counts.
  """
  null = np.asarray(null, dtype=np.float64)
  obs = np.expand_dims(np.asarray(observed, dtype=np.float64), axis)
  valid = ~np.isnan(null)
  ge = np.sum((null >= obs) & valid, axis=axis)
  n = np.sum(valid, axis=axis)
  p = (1.0 + ge) / (1.0 + n)
  return np.where(np.isnan(np.squeeze(obs, axis)), np.nan, p)


def benjamini_hochberg(pvalues: np.ndarray, q: float = 0.05):
  """Benjamini–Hochberg step-up FDR control (1995) over all finite p-values.

  Args:
    pvalues: array of any shape; NaN entries are not tested (rejected=False, adjusted=NaN).
    q: target false discovery rate.
  Returns:
    (rejected bool array, adjusted p-values) of the input's shape. Adjusted p-values are
    min_{k>=i} (m / k) p_(k), capped at 1; H_i is rejected iff adjusted_i <= q.
  """
  if not 0.0 < q < 1.0:
    raise ValueError(f"FDR level q must be in (0, 1), got {q}")
  p = np.asarray(pvalues, dtype=np.float64)
  flat = p.ravel()
  ok = ~np.isnan(flat)
  if np.any((flat[ok] < 0) | (flat[ok] > 1)):
    raise ValueError("benjamini_hochberg: p-values must lie in [0, 1]")
  adj = np.full(flat.shape, np.nan)
  v = flat[ok]
  m = v.size
  if m:
    order = np.argsort(v, kind="stable")
    scaled = v[order] * m / np.arange(1, m + 1)
    mono = np.minimum.accumulate(scaled[::-1])[::-1]
    a = np.empty(m)
    a[order] = np.minimum(mono, 1.0)
    adj[ok] = a
  rejected = np.where(np.isnan(adj), False, adj <= q)
  return rejected.reshape(p.shape), adj.reshape(p.shape)


def stratified_mean_ci(values: np.ndarray, groups: np.ndarray, n_boot: int, level: float,
                       seed: int) -> tuple[float, float, float]:
  """(mean, low, high): percentile bootstrap CI of the mean of (P,) values, resampling within
  each group (e.g. task family) so every replicate keeps the groups' sizes.

  Only finite values take part (the caller reports how many: ``np.isfinite(values).sum()``);
  (NaN, NaN, NaN) when none is finite.
  """
  v = np.asarray(values, np.float64)
  ok = np.isfinite(v)
  if not ok.any():
    return float("nan"), float("nan"), float("nan")
  v, g = v[ok], np.asarray(groups)[ok]
  idx = stratified_bootstrap_indices(g, n_boot, seed)
  lo, hi = percentile_interval(v[idx].mean(1), level)
  return float(v.mean()), float(lo), float(hi)


def two_way_bootstrap(c: np.ndarray, *, n_boot: int, level: float, seed: int):
  """(mean, low, high) of the mean of c (R seeds × E examples), resampling seeds and examples
  independently with replacement (percentile interval of the two-way bootstrap; crossed random
  effects, e.g. Owen, Ann. Appl. Stat. 2007)."""
  c = np.asarray(c, np.float64)
  if c.ndim != 2 or 0 in c.shape:
    raise ValueError(f"two_way_bootstrap: expected a non-empty (seeds, examples) array, got "
                     f"shape {c.shape}")
  if not np.isfinite(c).all():
    raise ValueError("two_way_bootstrap: the values contain NaN or inf")
  rng = np.random.default_rng(seed)
  si = rng.integers(0, c.shape[0], size=(n_boot, c.shape[0]))
  ei = rng.integers(0, c.shape[1], size=(n_boot, c.shape[1]))
  boot = c[si[:, :, None], ei[:, None, :]].mean(axis=(1, 2))  # (n_boot,)
  lo, hi = percentile_interval(boot, level)
  return float(c.mean()), float(lo), float(hi)
