"""Resampling statistics: ranks, seeded bootstrap over prompts, empirical p-values, BH-FDR.

All functions are numpy; loops run over bootstrap replicates only, each replicate vectorised.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from synergy_jax.analysis.units import as_units


def rankdata(x: np.ndarray) -> np.ndarray:
  """Ranks of a 1-D array, base 1 (smallest value → 1), ties get the average of their ranks.

  NaN entries get rank NaN and do not take part: the finite values are ranked 1..n_finite.

  Args:
    x: (n,) values.
  Returns:
    (n,) float64 ranks.
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


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
  """Spearman rank correlation of two (n,) arrays over the entries finite in both (NaN if < 3)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  ok = np.isfinite(a) & np.isfinite(b)
  if ok.sum() < 3:
    return float("nan")
  ra, rb = rankdata(a[ok]), rankdata(b[ok])
  ra, rb = ra - ra.mean(), rb - rb.mean()
  den = np.sqrt((ra * ra).sum() * (rb * rb).sum())
  return float((ra * rb).sum() / den) if den > 0 else float("nan")


def spearman_brown(r: float, factor: float = 2.0) -> float:
  """Reliability of a measure ``factor`` times as long as one with reliability r:
  k r / (1 + (k − 1) r) (Spearman 1910; Brown 1910). For split halves (k = 2): 2r / (1 + r).
  Defined for 0 ≤ r ≤ 1 (halves that agree); a negative or NaN r gives NaN (no reliability to
  project; the split-half r itself is reported alongside)."""
  r = float(r)
  if not np.isfinite(r) or r < 0:
    return float("nan")
  return factor * r / (1.0 + (factor - 1.0) * r)


def split_half_spearman(per_prompt: np.ndarray, score: Callable[[np.ndarray], np.ndarray], *,
                        n_splits: int = 20, seed: int = 0) -> dict:
  """Split-half reliability of a per-head score.

  Args:
    per_prompt: (P, ...) per-prompt estimates (e.g. (P, U, U, 2) pair sts/rtr).
    score: maps a (P', ...) subset to the (U,) head score computed from those prompts only.
    n_splits: random halves averaged (each split: a random half of the prompts vs the rest).
  Returns:
    {"rho": mean split-half Spearman, "rho_sd", "spearman_brown": 2ρ/(1+ρ) of the mean ρ,
     "n_splits", "per_split": list of ρ}.
  """
  per_prompt = np.asarray(per_prompt)
  p = per_prompt.shape[0]
  if p < 4:
    raise ValueError(f"split_half_spearman needs at least 4 prompts, got {p}")
  if n_splits < 1:
    raise ValueError(f"n_splits must be >= 1, got {n_splits}")
  rng = np.random.default_rng(seed)
  rhos = []
  for _ in range(n_splits):
    perm = rng.permutation(p)
    a, b = perm[:p // 2], perm[p // 2:]
    rhos.append(spearman_rho(score(per_prompt[a]), score(per_prompt[b])))
  rhos = np.asarray(rhos)
  mean = float(np.nanmean(rhos)) if np.isfinite(rhos).any() else float("nan")
  return {"rho": mean, "rho_sd": float(np.nanstd(rhos)) if np.isfinite(rhos).any() else None,
          "spearman_brown": spearman_brown(mean), "n_splits": int(n_splits),
          "per_split": rhos.tolist()}


def quadratic_fit(d: np.ndarray, y: np.ndarray) -> np.ndarray:
  """(…, 3) least-squares [β0, β1, β2] of y ≈ β0 + β1 d + β2 d² for y (…, n) over d (n,)."""
  x = np.stack([np.ones_like(d), d, d * d], -1)  # (n, 3)
  return np.linalg.lstsq(x, np.moveaxis(np.atleast_2d(y), -1, 0), rcond=None)[0].T.reshape(
      np.shape(y)[:-1] + (3,))


def _peak(beta: np.ndarray) -> float:
  """argmax over depth [0, 1] of β0 + β1 d + β2 d²."""
  grid = np.linspace(0.0, 1.0, 201)
  return float(grid[np.argmax(beta[1] * grid + beta[2] * grid * grid)])


@dataclasses.dataclass(frozen=True)
class DepthTrend:
  """Quadratic trend of a head score over normalised depth (0 = first layer, 1 = last).

  curvature: β2 of score ≈ β0 + β1 d + β2 d² over heads (negative = inverted U); ci: percentile
  bootstrap interval of β2 resampling heads; p_value: one-sided (inverted U) permutation p,
  (1 + #{β2_perm ≤ β2}) / (1 + n_perm), layer labels permuted across heads; peak_depth: depth of
  the fitted maximum on [0, 1]; interior_peak: the maximum lies strictly inside (0.1 ≤ d ≤ 0.9);
  inverted_u: p_value < alpha and curvature < 0 and interior_peak.
  """
  curvature: float
  ci: tuple
  p_value: float
  peak_depth: float
  interior_peak: bool
  inverted_u: bool
  alpha: float
  n_heads: int
  n_perm: int

  def to_dict(self) -> dict:
    return {"curvature": self.curvature, "ci": list(self.ci), "p_value": self.p_value,
            "peak_depth": self.peak_depth, "interior_peak": self.interior_peak,
            "inverted_u": self.inverted_u, "alpha": self.alpha, "n_heads": self.n_heads,
            "n_perm": self.n_perm,
            "method": "quadratic fit over normalised depth; p from permuting layer labels across "
                      "heads (one-sided, curvature < 0); CI: bootstrap over heads"}

  def __getitem__(self, key):  # dict-style access, as the API reads
    return self.to_dict()[key]


def depth_trend(score: np.ndarray, units, num_heads: int | None = None, *, n_perm: int = 1000,
                n_boot: int = 1000, level: float = 0.95, alpha: float = 0.05,
                seed: int = 0) -> DepthTrend:
  """Tests for an inverted U of a per-unit score over depth (see ``DepthTrend``).

  Args:
    score: (U,) unit scores; NaN units are left out.
    units: the unit table (``analysis.units.Units``; each unit sits at its layer's depth
      l / (L − 1) of the model's L layers), or num_layers with ``num_heads`` for the head grid
      (unit = layer * num_heads + head). L ≥ 3 (a quadratic needs three depths).
    n_perm, n_boot: permutations and bootstrap replicates; level: CI coverage; alpha: level of the
      ``inverted_u`` verdict.
  """
  units = as_units(units, num_heads)
  s = np.asarray(score, np.float64)
  if units.num_layers < 3:
    raise ValueError(f"depth_trend needs at least 3 layers for a curvature, got {units.num_layers}")
  if s.shape != (units.size,):
    raise ValueError(f"score must have shape ({units.size},) for {units.layout()}, got {s.shape}")
  if n_perm < 1 or n_boot < 1:
    raise ValueError(f"n_perm and n_boot must be >= 1, got {n_perm}, {n_boot}")
  d = units.depth
  ok = np.isfinite(s)
  d, s = d[ok], s[ok]
  if len(np.unique(d)) < 3:
    raise ValueError(f"depth_trend: finite scores in only {len(np.unique(d))} layers; need 3")
  beta = quadratic_fit(d, s)
  rng = np.random.default_rng(seed)
  perm = np.stack([rng.permutation(s) for _ in range(n_perm)])  # (n_perm, n)
  null = quadratic_fit(d, perm)[:, 2]
  p = float(empirical_pvalue(-beta[2], -null))  # lower tail: curvature at least as negative
  boot = []
  for idx in rng.integers(0, s.size, size=(n_boot, s.size)):
    if len(np.unique(d[idx])) >= 3:
      boot.append(quadratic_fit(d[idx], s[idx])[2])
  lo, hi = percentile_interval(np.asarray(boot), level)
  peak = _peak(beta)
  interior = 0.1 <= peak <= 0.9
  return DepthTrend(float(beta[2]), (float(lo), float(hi)), float(p), peak, bool(interior),
                    bool(p < alpha and beta[2] < 0 and interior), alpha, int(s.size), n_perm)
# --------------------------------------------------------------------------------------------------
# Two-group comparisons of independent runs (e.g. fine-tuning seeds of two conditions)
# --------------------------------------------------------------------------------------------------


def _two_groups(x, y, name: str, minimum: int) -> tuple[np.ndarray, np.ndarray]:
  x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
  for label, a in (("x", x), ("y", y)):
    if a.size < minimum:
      raise ValueError(f"{name}: group {label} has {a.size} value(s); needs >= {minimum}")
    if not np.all(np.isfinite(a)):
      raise ValueError(f"{name}: group {label} has non-finite values at "
                       f"{np.flatnonzero(~np.isfinite(a)).tolist()}")
  return x, y


def hedges_g(x, y) -> float:
  """Hedges' g of x minus y: Cohen's d with the pooled SD, times the small-sample correction
  J = 1 − 3 / (4 (n_x + n_y) − 9) (Hedges 1981; Hedges & Olkin 1985, eq. 5.3.9 approximation).

  x (n_x ≥ 2,), y (n_y ≥ 2,). Returns NaN when both groups have zero spread (g undefined; callers
  report it), ±inf when only the means differ.
  """
  x, y = _two_groups(x, y, "hedges_g", 2)
  nx, ny = x.size, y.size
  pooled = np.sqrt(((nx - 1) * x.var(ddof=1) + (ny - 1) * y.var(ddof=1)) / (nx + ny - 2))
  diff = x.mean() - y.mean()
  if pooled == 0:
    return float("nan") if diff == 0 else float(np.sign(diff) * np.inf)
  return float(diff / pooled * (1.0 - 3.0 / (4.0 * (nx + ny) - 9.0)))


@dataclasses.dataclass(frozen=True)
class EffectSize:
  """Hedges' g with a percentile bootstrap CI (groups resampled separately); n_undefined:
  replicates where g was undefined (both resampled groups constant), left out of the CI."""
  g: float
  ci_low: float
  ci_high: float
  level: float
  n_boot: int
  n_undefined: int


def hedges_g_ci(x, y, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> EffectSize:
  """Hedges' g of x − y and its percentile bootstrap interval (each group resampled with
  replacement within itself). Replicates where both resampled groups are constant but differ
  give ±inf and take part (the interval then reaches ±inf: the data cannot bound g); quantiles
  are order statistics (inverted CDF), so no interpolation meets an infinity."""
  x, y = _two_groups(x, y, "hedges_g_ci", 2)
  ix = bootstrap_indices(x.size, n_boot, seed)
  iy = bootstrap_indices(y.size, n_boot, seed + 1)
  reps = np.array([hedges_g(x[a], y[b]) for a, b in zip(ix, iy)])
  undefined = int(np.isnan(reps).sum())
  if undefined == n_boot:
    lo = hi = float("nan")
  else:
    if not 0.0 < level < 1.0:
      raise ValueError(f"CI level must be in (0, 1), got {level}")
    lo, hi = np.quantile(reps[~np.isnan(reps)], [(1 - level) / 2, (1 + level) / 2],
                         method="inverted_cdf")
  return EffectSize(hedges_g(x, y), float(lo), float(hi), level, n_boot, undefined)


@dataclasses.dataclass(frozen=True)
class PermutationTest:
  """Two-sided permutation test of statistic(x) − statistic(y): the observed difference, p (the
  fraction of relabellings with |difference| ≥ |observed|, the identity included), the number of
  relabellings used and whether they were all of them (exact)."""
  difference: float
  p: float
  n_permutations: int
  exact: bool


def permutation_test(x, y, *, statistic: Callable = np.median, n_perm: int = 10000,
                     seed: int = 0) -> PermutationTest:
  """Two-sample permutation test of a difference in ``statistic`` (default: medians).

  Exact (all C(n_x + n_y, n_x) relabellings) when there are at most ``n_perm`` of them, else
  ``n_perm`` random relabellings plus the observed one (p never 0; Phipson & Smyth 2010). Valid
  when the pooled values are exchangeable under the null, e.g. independent runs. ``statistic``
  must reduce axis -1: f(a (..., n)) -> (...).
  """
  import itertools
  import math

  x, y = _two_groups(x, y, "permutation_test", 1)
  pooled = np.concatenate([x, y])
  n, nx = pooled.size, x.size
  observed = float(statistic(x, axis=-1) - statistic(y, axis=-1))
  total = math.comb(n, nx)
  if total <= n_perm:
    groups = np.array(list(itertools.combinations(range(n), nx)))
    in_x = np.zeros((total, n), bool)
    in_x[np.arange(total)[:, None], groups] = True
    exact = True
  else:
    rng = np.random.default_rng(seed)
    in_x = np.zeros((n_perm + 1, n), bool)
    in_x[0, :nx] = True
    for r in range(1, n_perm + 1):
      in_x[r, rng.permutation(n)[:nx]] = True
    exact = False
  order = np.argsort(~in_x, axis=1, kind="stable")  # x-members first, in index order
  perm = pooled[order]
  diffs = statistic(perm[:, :nx], axis=-1) - statistic(perm[:, nx:], axis=-1)
  tol = 1e-12 * max(1.0, abs(observed))  # relabellings tied with the observation count
  p = float(np.mean(np.abs(diffs) >= abs(observed) - tol))
  return PermutationTest(observed, p, int(in_x.shape[0]), exact)
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
