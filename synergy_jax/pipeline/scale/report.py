"""Scale experiment, report: summary.md (markdown only)."""
from __future__ import annotations

import numpy as np

from synergy_jax.pipeline.scale.analysis import SERIES, ScaleResult


def _f(v, d=3) -> str:
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{d}g}"


def summary_markdown(result: ScaleResult, meta: dict) -> str:
  lines = ["# The synergistic core across model size", "",
           f"Default recipe ({meta['steps']} steps × batch {meta['batch_size']}, seed "
           f"{meta['seed']}) at {len(result.rows)} sizes; each profiled against its random-init "
           "baseline (matched inputs).", "",
           "| size | parameters | " + " | ".join(SERIES) + " | depth-trend p | baseline core |",
           "|---|---|" + "---|" * (len(SERIES) + 2)]
  for r in result.rows:
    lines.append(f"| {r['size']} | {r['n_params']:,} | "
                 + " | ".join(_f(r[k]) for k in SERIES)
                 + f" | {_f(r['depth_trend_p'], 2)} | {_f(r['baseline_core_contrast'])} |")
  lines += ["", "## Trends with size (Spearman ρ against log parameter count)", ""]
  for k, t in result.trends.items():
    lines.append(f"- {SERIES[k][1]}: " + ("needs >= 3 sizes with finite values" if t is None
                                          else f"ρ = {_f(t['spearman_rho'], 2)} over "
                                               f"{t['n_sizes']} sizes"))
  lines += ["", "Per-size profile verdicts:", ""]
  lines += [f"- {r['size']}: {r['verdict']}" for r in result.rows]
  lines += ["", "Models with their cards: results.json → models (reusable as --model=FOLDER).",
            ""]
  return "\n".join(lines)
