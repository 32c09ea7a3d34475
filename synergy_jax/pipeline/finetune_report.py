"""The fine-tuning experiment's report: summary.md with a plain verdict, figures, CSV tables and
results.json (writing only; the numbers come from pipeline/finetune.py)."""
from __future__ import annotations

import math
import pathlib

import numpy as np

from synergy_jax import plots, results
from synergy_jax.pipeline.text import fmt

ALPHA = 0.05


def min_p(n_a: int, n_b: int) -> float:
  """Smallest two-sided p an exact permutation test of n_a vs n_b runs can give (the two most
  extreme relabellings out of C(n_a + n_b, n_a))."""
  return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))


def verdict(c: dict, a: str, b: str) -> str:
  """One sentence on a comparison dict of pipeline.finetune.compare."""
  # Hedges' g is ±inf when the two groups do not overlap: written as ∞, not "n/a"
  g, g_lo, g_hi = (fmt(c[k], nonfinite="signed") for k in ("hedges_g", "g_ci_low", "g_ci_high"))
  stat = (f"median difference {fmt(c['median_difference'])} ({fmt(c['median_a'])} vs "
          f"{fmt(c['median_b'])}), Hedges' g {g} "
          f"[{int(c['ci_level'] * 100)}% CI {g_lo}, {g_hi}], "
          f"permutation p = {fmt(c['permutation_p'])}")
  floor = min_p(c["n_a"], c["n_b"])
  if floor > ALPHA:
    return (f"cannot be decided with {c['n_a']} vs {c['n_b']} runs (the smallest possible p is "
            f"{fmt(floor)} > {ALPHA}); {stat}")
  if c["permutation_p"] <= ALPHA and c["median_difference"] > 0:
    return f"**{a} heads gained more** than {b} heads: {stat}"
  if c["permutation_p"] <= ALPHA and c["median_difference"] < 0:
    return f"**{a} heads gained less** than {b} heads: {stat}"
  return f"no detectable difference between {a} and {b} heads: {stat}"


def claim_sentence(res: dict) -> str:
  """What the result says about the study's claim for this method."""
  comps = res["comparisons"]
  wins = [comps[k]["best"]["permutation_p"] <= ALPHA and comps[k]["best"]["median_difference"] > 0
          for k in ("synergistic_vs_random", "synergistic_vs_redundant")]
  undecidable = min_p(comps["synergistic_vs_random"]["best"]["n_a"],
                      comps["synergistic_vs_random"]["best"]["n_b"]) > ALPHA
  if undecidable:
    return ("Verdict: too few seeds to test the claim (run with --seeds=5 or more); the numbers "
            "below are descriptive only.")
  if res["method"] == "grpo":
    if all(wins):
      return ("Verdict: **supports** the study's claim — GRPO on the synergistic heads improved "
              "accuracy more than on random and on redundant heads.")
    return ("Verdict: **does not support** the study's claim that GRPO on the synergistic heads "
            "improves accuracy more than on random and redundant heads"
            + (" (it beat one of the two)." if any(wins) else "."))
  if any(wins):
    return ("Verdict: **unlike the study**, SFT on the synergistic heads improved accuracy more "
            "than on another head set.")
  return ("Verdict: **consistent with** the study's SFT result — no detectable advantage of the "
          "synergistic heads under supervised fine-tuning (absence of evidence: see the CIs).")


def summary_markdown(res: dict) -> str:
  tune = res["config"]["tune"]
  base = res["base_accuracy"]
  lines = [f"# Fine-tuning the synergistic core — {res['method'].upper()} on {res['model']}", "",
           claim_sentence(res), "",
           f"{res['n_heads_per_condition']} of {res['num_layers'] * res['num_heads']} heads per "
           f"condition (fraction {res['config']['fraction']:g}, ranked by {res['ranking']}; "
           f"{res['heads_tied_at_boundary']} head(s) tie at the selection boundary and are split "
           "by unit order); "
           f"{len(res['conditions']['synergistic']['best'])} seeds per condition; "
           f"{tune['steps']} steps, evaluated every {tune['eval_every']} steps on "
           f"{tune['eval_examples']} held-out examples per cell {res['eval_cells']} (greedy exact "
           f"match). Base accuracy {fmt(base['acc'])}.", "",
           "| condition | best in window (per seed) | median | final (per seed) | median |",
           "|---|---|---|---|---|"]
  for c, d in res["conditions"].items():
    lines.append(f"| {c} | {' '.join(fmt(v, 2) for v in d['best'])} | "
                 f"{fmt(float(np.median(d['best'])))} | "
                 f"{' '.join(fmt(v, 2) for v in d['final'])} | "
                 f"{fmt(float(np.median(d['final'])))} |")
  lines += [""]
  for key, comp in res["comparisons"].items():
    a, b = key.split("_vs_")
    for m in ("best", "final"):
      lines.append(f"- {m} accuracy, {a} vs {b}: {verdict(comp[m], a, b)}.")
  lines += ["", "How to read this: each run fine-tunes only its heads' query rows and output "
            "columns from the same base; 'best in window' is the best evaluation after step 0 "
            f"(steps ≥ {res['config']['window_start']:g} × steps), as the study picks its "
            "checkpoints, and is biased upwards by the choice; 'final' is not. p-values are "
            "two-sided exact permutation tests over seeds of the difference of medians; g uses "
            "the pooled SD with Hedges' small-sample correction, CI by bootstrap over seeds. "
            "Overlapping CIs and p > 0.05 mean no detectable difference, not equality."]
  return "\n".join(lines) + "\n"


def figures(run_dir: pathlib.Path, res: dict) -> None:
  """learning_curves.png (mean ± SD over seeds per condition, base dashed) and
  final_accuracy.png (per-seed best and final accuracies per condition)."""
  fig, axes = plots._figure(1, 1, (6.0, 4.0))
  ax = axes[0, 0]
  for c, d in res["conditions"].items():
    x, acc = np.asarray(d["curves"]["steps"]), np.asarray(d["curves"]["accuracy"])
    m, sd = acc.mean(0), acc.std(0, ddof=1)
    color = plots.COLORS.get(c)
    ax.plot(x, m, "o-", color=color, label=f"{c} (n={acc.shape[0]})")
    ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, lw=0)
  ax.axhline(res["base_accuracy"]["acc"], color="k", ls="--", lw=1, label="base")
  ax.set_xlabel("fine-tuning step")
  ax.set_ylabel("held-out accuracy (greedy exact match)")
  ax.set_title(f"{res['method'].upper()}: learning curves (mean ± SD over seeds)")
  ax.legend()
  plots._finish(fig, run_dir / "learning_curves.png")

  fig, axes = plots._figure(2, 1, (4.0, 3.8))
  for ax, m in zip(axes[0], ("best", "final")):
    for i, (c, d) in enumerate(res["conditions"].items()):
      v = np.asarray(d[m])
      jitter = np.linspace(-0.12, 0.12, v.size) if v.size > 1 else np.zeros(1)
      ax.scatter(i + jitter, v, color=plots.COLORS.get(c), zorder=3)
      ax.hlines(np.median(v), i - 0.25, i + 0.25, color="k", lw=2)
    ax.axhline(res["base_accuracy"]["acc"], color="k", ls="--", lw=1)
    ax.set_xticks(range(len(res["conditions"])), list(res["conditions"]))
    ax.set_title("best in window" if m == "best" else "final")
    ax.set_ylabel("held-out accuracy")
  fig.suptitle(f"{res['method'].upper()}: accuracy per seed (bar: median; dashed: base)")
  plots._finish(fig, run_dir / "final_accuracy.png")


def write_finetune(run_dir, res: dict) -> dict:
  """Writes results.json, runs.csv (one row per condition × seed), curves.csv, the figures and
  summary.md; returns results.json's dict."""
  run_dir = pathlib.Path(run_dir)
  public = {k: v for k, v in res.items() if not k.startswith("_")}
  results.write_json(run_dir / "results.json", public)
  rows, curve_rows = [], []
  for c, d in res["conditions"].items():
    for k in range(len(d["best"])):
      rows.append({"condition": c, "seed": k, "best": d["best"][k],
                   "best_step": d["best_step"][k], "final": d["final"][k]})
      for s, a in zip(d["curves"]["steps"], d["curves"]["accuracy"][k]):
        curve_rows.append({"condition": c, "seed": k, "step": s, "accuracy": a})
  results.write_csv(run_dir / "runs.csv", rows)
  results.write_csv(run_dir / "curves.csv", curve_rows)
  figures(run_dir, public)
  results.write_text(run_dir / "summary.md", summary_markdown(public))
  return public
