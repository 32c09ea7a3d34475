"""Ablation, files: results.json, CSV tables, arrays, figures and summary.md, and
``run_ablation``, the experiment from a --model string to a run directory."""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable, Sequence

import numpy as np

from synergy_jax import plots, results
from synergy_jax.pipeline import specs
from synergy_jax.pipeline.ablation.analysis import AblationResult, AblationSummary, analyse_ablation
from synergy_jax.pipeline.ablation.config import AblationConfig, unit_noun
from synergy_jax.pipeline.ablation.report import sigma_label, summary_markdown


def write_ablation(run_dir, result: AblationResult) -> AblationSummary:
  """Writes results.json, divergence.csv, perturbation.csv, head_scores.csv (one row per unit,
named as ``Units.names``), divergence.png, perturbation.png, perturbation_<family>.png,
  perturbation.npz and summary.md; returns the summary."""
  run_dir = pathlib.Path(run_dir)
  res = result.summary
  noun = unit_noun(res.units["which"])[1]
  results.write_json(run_dir / "results.json", res)
  d, p = res.divergence, res.perturbation
  rows = []
  for i, f in enumerate(d.fractions):
    row = {"fraction": f, "synergistic": d.synergistic[i], "redundant": d.redundant[i],
           "random_mean": d.random["mean"][i], "random_sd": d.random["sd"][i]}
    for r, c in enumerate(d.random["curves"]):
      row[f"random_{r}"] = c[i]
    rows.append(row)
  results.write_csv(run_dir / "divergence.csv", rows)
  prow = []
  for fam, fd in p.by_family.items():
    for cond in p.conditions:
      for s, sg in enumerate(p.sigmas):
        for i, k in enumerate(fd["levels"]):
          prow.append({"family": fam, "level": k, "condition": cond, "sigma": sg,
                       **_sigma_abs_columns(p, s), "accuracy": fd[cond]["mean"][s][i],
                       "ci_low": fd[cond]["ci_low"][s][i], "ci_high": fd[cond]["ci_high"][s][i]})
  results.write_csv(run_dir / "perturbation.csv", prow)
  hs = res.head_scores
  cols = res.unit_table.columns()
  results.write_csv(run_dir / "head_scores.csv", {
      **cols, **{k: hs[k] for k in ("score", "synergy", "redundancy", "rank_score", "balance")}})
  results.write_npz(run_dir / "perturbation.npz", correct=result.correct,
                    sigmas=np.asarray(p.sigmas), conditions=np.asarray(p.conditions))
  plots.divergence_curves(d.fractions, d.synergistic, d.redundant, d.random["curves"],
                                title=f"{res.model}: zero ablation, {noun} ranked by "
                                      f"{res.ranking}", units=noun,
                                save=run_dir / "divergence.png")
  ci_text = f"{int(res.config['ci_level'] * 100)}% bootstrap CI over seeds × examples"
  for fam, levels, acc, name, kind in (
      [("families " + ", ".join(p.families) + " pooled", p.levels, p.accuracy,
        "perturbation.png", "difficulty rank")]
      + [(f"task family {fam}", fd["levels"], fd, f"perturbation_{fam}.png", "level k")
         for fam, fd in p.by_family.items()]):
    plots.perturbation_accuracy(
        p.sigmas, levels, {c: np.asarray(acc[c]["mean"]) for c in p.conditions},
        ci={c: (np.asarray(acc[c]["ci_low"]), np.asarray(acc[c]["ci_high"]))
            for c in p.conditions},
        title=f"{res.model}: noise in {int(100 * res.config['perturb_fraction'])}% of "
              f"{noun} — {fam}", sigma_label=sigma_label(p), level_label=kind, ci_text=ci_text,
        save=run_dir / name)
  results.write_text(run_dir / "summary.md", summary_markdown(res))
  return res


def _sigma_abs_columns(p, s: int) -> dict:
  """perturbation.csv's absolute noise SD(s) at σ index s: "sigma_abs" when one kind of unit is
  perturbed, "sigma_abs_heads" and "sigma_abs_experts" for heads+experts."""
  if p.sigmas_abs is not None:
    return {"sigma_abs": p.sigmas_abs[s]}
  return {f"sigma_abs_{k}": v["sigmas_abs"][s] for k, v in p.noise_by_kind.items()}


def run_ablation(model: str, prompts: Sequence[str], config: AblationConfig, run_dir, *,
                 cache_dir, dtype: str = "float32",
                 progress: Callable | None = None) -> AblationSummary:
  """The ablation experiment for a --model string on ranking ``prompts``; writes everything into
  ``run_dir`` and returns the summary written to results.json (with ``wall_s``)."""
  t0 = time.time()
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  res = analyse_ablation(spec, prompts, config, cache_dir,
                         progress=specs.labelled(progress, spec.label))
  res = dataclasses.replace(res, summary=dataclasses.replace(res.summary,
                                                             wall_s=time.time() - t0))
  return write_ablation(run_dir, res)
