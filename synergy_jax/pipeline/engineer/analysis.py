"""Engineer experiment, analysis: per-(λ, seed) measurements in, across-seed comparisons of every
λ ≠ 0 with λ = 0 and a plain-words verdict out (arrays in, a typed result out; no files)."""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis import stats
from synergy_jax.pipeline.engineer.measure import ModelMeasures
from synergy_jax.pipeline.text import fmt

# The quantities compared across seeds: name → (getter, what it says).
QUANTITIES = {
    "objective": (lambda m: m.objective,
                  "the training term J on the profile prompts' generated activity (nats)"),
    "core_contrast": (lambda m: m.core_contrast,
                      "core contrast of the ranking score (middle third − outer, min–max scaled)"),
    "curvature": (lambda m: _curvature(m), "depth-trend curvature of the ranking score"),
    "reliability": (lambda m: np.nan if m.reliability is None else m.reliability,
                    "split-half reliability ρ of the ranking score"),
    "accuracy_mean": (lambda m: m.accuracy_mean, "greedy exact match over families × levels"),
    "auc_ratio_synergistic": (lambda m: np.nan if m.ablation is None
                              else m.ablation["auc_ratio_synergistic"],
                              "ablation damage of synergistic-first over random orders (AUC "
                              "ratio)"),
}


def _curvature(m: ModelMeasures) -> float:
  for v in m.depth_trend.values():
    if "curvature" in v:
      return float(v["curvature"])
  return float("nan")


@dataclasses.dataclass(frozen=True)
class EngineerResult:
  """values: {quantity: {λ: [value per seed]}}; comparisons: {quantity: {λ: comparison with
  λ = 0}} (mean difference, Hedges' g with a bootstrap CI, permutation p; None entries where
  fewer than 2 seeds or non-finite values); verdict: sentences; runs: one row per (λ, seed)."""
  weights: tuple
  seeds: tuple
  values: dict
  comparisons: dict
  verdict: list
  runs: list


def compare(x, y, *, n_boot: int, level: float, n_perm: int, seed: int) -> dict:
  """x (λ ≠ 0 seeds) against y (λ = 0 seeds): mean difference, Hedges' g and its bootstrap CI
  (≥ 2 finite values per group), two-sided permutation p of the mean difference."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  out = {"mean": float(np.mean(x)) if x.size else None,
         "mean_zero": float(np.mean(y)) if y.size else None,
         "difference": None, "hedges_g": None, "g_ci": None, "permutation_p": None,
         "n_permutations": None, "exact": None, "n": [int(x.size), int(y.size)]}
  if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or not x.size or not y.size:
    out["note"] = "non-finite values: not compared"
    return out
  out["difference"] = float(x.mean() - y.mean())
  pt = stats.permutation_test(x, y, statistic=np.mean, n_perm=n_perm, seed=seed)
  out.update(permutation_p=pt.p, n_permutations=pt.n_permutations, exact=pt.exact)
  if x.size >= 2 and y.size >= 2:
    es = stats.hedges_g_ci(x, y, n_boot=n_boot, level=level, seed=seed)
    out.update(hedges_g=es.g, g_ci=[es.ci_low, es.ci_high])
  else:
    out["note"] = "Hedges' g needs >= 2 seeds per λ"
  return out


def _sentence(lam: float, q: str, c: dict) -> str:
  if c["difference"] is None:
    return f"λ = {lam:g}: {q} not compared ({c.get('note', 'no values')})"
  g = "" if c["hedges_g"] is None else \
      f", Hedges' g {fmt(c['hedges_g'], 2)} [{fmt(c['g_ci'][0], 2)}, {fmt(c['g_ci'][1], 2)}]"
  return (f"λ = {lam:g} vs 0: {q} {fmt(c['mean'])} vs {fmt(c['mean_zero'])} "
          f"(difference {fmt(c['difference'])}{g}; permutation p = {fmt(c['permutation_p'], 2)}"
          f" over {c['n'][0]}+{c['n'][1]} seeds)")


def verdict(comparisons: dict, weights, alpha: float = 0.05) -> list[str]:
  """Plain sentences: did J and the core contrast move in λ's direction (and significantly),
  and what happened to accuracy and ablation damage."""
  out = []
  for lam in weights:
    if lam == 0:
      continue
    cj = comparisons["objective"][lam]
    cc = comparisons["core_contrast"][lam]
    want = np.sign(lam)
    parts = []
    for name, c in (("the term J", cj), ("the measured core contrast", cc)):
      if c["difference"] is None:
        parts.append(f"{name} could not be compared")
        continue
      direction = "in the intended direction" if np.sign(c["difference"]) == want else \
          "against the intended direction"
      sig = (c["permutation_p"] is not None and c["permutation_p"] < alpha)
      parts.append(f"{name} moved {direction} ({'significant' if sig else 'not significant'} "
                   f"at {alpha:g}, p = {fmt(c['permutation_p'], 2)})")
    out.append(f"λ = {lam:g}: " + "; ".join(parts) + ".")
    for q in ("accuracy_mean", "auc_ratio_synergistic", "reliability"):
      out.append(_sentence(lam, q, comparisons[q][lam]) + ".")
  min_p = [c["permutation_p"] for q in comparisons.values() for c in q.values()
           if c["permutation_p"] is not None]
  if min_p and min(min_p) > alpha:
    out.append(f"With these seeds no comparison reaches p < {alpha:g}; the smallest attainable "
               f"permutation p is limited by the number of seeds, so read the differences as "
               "estimates, not findings.")
  return out


def analyse(measures: dict, weights, seeds, *, n_boot: int = 2000, level: float = 0.95,
            n_perm: int = 10000, seed: int = 0) -> EngineerResult:
  """measures: {(λ, seed): ModelMeasures or None (a run that failed, e.g. diverged; its values
  are NaN, so comparisons involving it say "not compared")} for every λ in ``weights``
  (containing 0) and seed."""
  weights = tuple(float(w) for w in weights)
  nan = float("nan")
  values = {q: {w: [nan if measures.get((w, s)) is None else float(get(measures[(w, s)]))
                    for s in seeds] for w in weights}
            for q, (get, _) in QUANTITIES.items()}
  comparisons = {q: {w: compare(values[q][w], values[q][0.0], n_boot=n_boot, level=level,
                                n_perm=n_perm, seed=seed)
                     for w in weights if w != 0.0}
                 for q in QUANTITIES}
  runs = []
  for w in weights:
    for s in seeds:
      m = measures.get((w, s))
      if m is None:
        continue
      runs.append({"weight": w, "seed": s, **{q: float(get(m)) for q, (get, _) in
                                              QUANTITIES.items()},
                   "baseline_core_contrast": m.baseline["core_contrast"],
                   "accuracy_by_rank": m.accuracy_by_rank, "verdict": m.verdict})
  return EngineerResult(weights, tuple(seeds), values, comparisons,
                        verdict(comparisons, weights), runs)
