"""Engineer experiment, report: summary.md from the EngineerResult (markdown only)."""
from __future__ import annotations

import numpy as np

from synergy_jax.pipeline.engineer.analysis import QUANTITIES, EngineerResult


def _cell(vals) -> str:
  v = np.asarray(vals, np.float64)
  if not np.isfinite(v).any():
    return "n/a"
  if v.size == 1:
    return f"{v[0]:.3g}"
  return f"{np.nanmean(v):.3g} ± {np.nanstd(v, ddof=1):.2g}"


def summary_markdown(result: EngineerResult, meta: dict) -> str:
  lines = [
      "# Synergy engineering: training with a ΦID term",
      "",
      f"Architecture {meta['architecture']} ({meta['n_params']:,} parameters), "
      f"{meta['steps']} steps per run, target `{meta['target']}`, λ ∈ "
      f"{{{', '.join(f'{w:g}' for w in result.weights)}}}, seeds {list(result.seeds)}. "
      "Loss = task loss − λ·tanh(J); J = mean (sts − rtr) of middle-third layers minus the outer "
      "layers (or −distance to the target profile), on each batch's teacher-forced head norms.",
      "",
      "## Verdict",
      "",
      *[f"- {s}" for s in result.verdict],
      *[f"- Run λ/seed {k} failed and is left out (its values are NaN): {v}"
        for k, v in (meta.get("failed") or {}).items()],
      "",
      "## Mean ± SD over seeds",
      "",
      "| quantity | " + " | ".join(f"λ = {w:g}" for w in result.weights) + " |",
      "|---|" + "---|" * len(result.weights),
  ]
  for q, (_, what) in QUANTITIES.items():
    lines.append(f"| {q} ({what}) | "
                 + " | ".join(_cell(result.values[q][w]) for w in result.weights) + " |")
  lines += ["", "Per-run values: runs.csv; comparisons with λ = 0 (Hedges' g with bootstrap CI, "
            "permutation p): results.json → comparisons.", ""]
  return "\n".join(lines)
