"""Scale experiment, analysis: per-size measurements in, a table ordered by parameter count and
rank correlations with model size out."""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis import stats
from synergy_jax.pipeline.engineer.measure import ModelMeasures

# The series plotted against parameter count: name → (getter, label).
SERIES = {
    "curvature": (lambda m: _trend(m, "curvature"),
                  "depth-trend curvature of the ranking score (< 0: inverted U)"),
    "core_contrast": (lambda m: m.core_contrast, "core contrast (middle third − outer)"),
    "reliability": (lambda m: np.nan if m.reliability is None else m.reliability,
                    "split-half reliability ρ"),
    "accuracy_mean": (lambda m: m.accuracy_mean, "greedy exact match"),
}


def _trend(m: ModelMeasures, key: str, score: str | None = None) -> float:
  trends = m.depth_trend
  pick = trends.get(score) if score else next(iter(trends.values()), {})
  v = (pick or {}).get(key)
  return float("nan") if v is None else float(v)


@dataclasses.dataclass(frozen=True)
class ScaleResult:
  """rows: one dict per size, ascending parameter count; trends: {series: Spearman ρ with
  log parameter count over the sizes with finite values (None below 3 sizes)}."""
  rows: list
  trends: dict


def analyse(measures: dict) -> ScaleResult:
  """measures: {size: ModelMeasures}."""
  rows = []
  for size, m in sorted(measures.items(), key=lambda kv: kv[1].n_params):
    rows.append({"size": size, "n_params": m.n_params, "num_layers": m.num_layers,
                 "num_heads": m.num_heads,
                 **{k: float(get(m)) for k, (get, _) in SERIES.items()},
                 "depth_trend_p": _trend(m, "p_value"),
                 "inverted_u": bool(next(iter(m.depth_trend.values()), {}).get("inverted_u")),
                 "objective": m.objective,
                 "baseline_core_contrast": m.baseline["core_contrast"],
                 "accuracy_by_rank": m.accuracy_by_rank, "verdict": m.verdict})
  trends = {}
  for k in SERIES:
    x = np.log([r["n_params"] for r in rows])
    y = np.array([r[k] for r in rows], np.float64)
    ok = np.isfinite(y)
    trends[k] = None if ok.sum() < 3 else {"spearman_rho": stats.spearman_rho(x[ok], y[ok]),
                                           "n_sizes": int(ok.sum())}
  return ScaleResult(rows, trends)
