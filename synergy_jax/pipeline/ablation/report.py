"""Ablation, report: the plain-language summary.md, from the AblationSummary (a finished run's
summary can be rebuilt: ``summary_markdown(read_ablation(run_dir))``)."""
from __future__ import annotations

import numpy as np

from synergy_jax.pipeline.ablation.analysis import AblationSummary
from synergy_jax.pipeline.ablation.config import unit_noun
from synergy_jax.pipeline.ablation.perturbation import PerturbationSummary
from synergy_jax.pipeline.text import fmt

_WEIGHTS = {"heads": "the heads' q/o weights", "experts": "the experts' gate/up/down weights"}


def sigma_label(p: PerturbationSummary) -> str:
  """The σ axis of the perturbation figures: relative to which weights' RMS, or absolute."""
  if p.sigma_scale != "relative":
    return "σ (absolute)"
  kinds = list(p.noise_by_kind or {"heads": None})
  return "σ, relative to the RMS of " + " / ".join(_WEIGHTS[k] for k in kinds) + (
      " (each kind its own)" if len(kinds) > 1 else "")


def _noise_sentence(p: PerturbationSummary) -> str:
  """σ as configured and the absolute SDs used (per kind of unit when there are two)."""
  if p.sigmas_abs is not None:
    return (f"σ = {p.sigmas} ({p.sigma_scale}; absolute {[fmt(s) for s in p.sigmas_abs]})"
            f", {p.n_seeds} seeds; CIs: {p.ci}.")
  parts = [f"{k} {[fmt(s) for s in v['sigmas_abs']]}"
           + (f" (RMS {fmt(v['weight_rms'])})" if v["weight_rms"] is not None else "")
           for k, v in p.noise_by_kind.items()]
  scale = ("each unit relative to the RMS of its own kind's weights" if p.sigma_scale ==
           "relative" else "absolute")
  return (f"σ = {p.sigmas} ({scale}; absolute {'; '.join(parts)}), {p.n_seeds} seeds; CIs: "
          f"{p.ci}.")


def _set_names(res: AblationSummary, cond: str, limit: int = 8) -> str:
  """The first ``limit`` names of a perturbed unit set ("L0 E1, L2 S0, ...")."""
  names = res.units["names"]
  units = list((res.perturbation.head_sets or {}).get(cond, []))
  shown = ", ".join(names[int(u)] for u in units[:limit])
  return shown + (f", … ({len(units)} in all)" if len(units) > limit else "")


def _ratio_sentence(r: dict, what: str, noun: str) -> str:
  """r: an ``interventions.auc_ratio`` record."""
  lo, hi = r["ci_low"], r["ci_high"]
  if lo > 1:
    verdict = "more than random orders"
  elif hi < 1:
    verdict = "less than random orders"
  else:
    verdict = "no differently from random orders (the CI includes 1)"
  return (f"Ablating the most {what} {noun} first changed behaviour {verdict}: AUC ratio "
          f"{what}/random = {fmt(r['ratio'])} ({int(r['ci_level'] * 100)}% CI {fmt(lo)}–"
          f"{fmt(hi)} over {r['n_random']} random orders).")


def summary_markdown(res: AblationSummary) -> str:
  """Plain-language summary.md of the ablation experiment."""
  d = res.divergence
  p = res.perturbation
  which = res.units["which"]
  noun = unit_noun(which)[1]
  units_line = (f"Heads ranked by **{res.ranking}**" if which == "heads" else
                f"Units: {res.units['description']} (`--units={which}`), ranked by "
                f"**{res.ranking}**")
  lines = [f"# Ablation evaluation — {res.model}", "",
           f"{units_line} from the ΦID profile on "
           f"{res.n_profile_prompts} prompts of the built-in suite.", "",
           "## Behaviour divergence (zero ablation, teacher-forced on the model's own text)", "",
           _ratio_sentence(res.auc_ratio, "synergistic", noun),
           _ratio_sentence(res.auc_ratio_redundant, "redundant", noun), "",
           f"AUC (nats × fraction): synergistic {fmt(d.auc['synergistic'])}, redundant "
           f"{fmt(d.auc['redundant'])}, random {fmt(float(np.mean(d.auc['random'])))} ± "
           f"{fmt(float(np.std(d.auc['random'], ddof=1)))} (sd over orders). "
           f"{d.n_prompts} prompts; all {len(d.fractions)} fractions × "
           f"{2 + len(d.auc['random'])} orders ran in {d.compilations} compilation(s) for "
           f"{d.batches} prompt batch(es).",
           *([f"{len(d.nonfinite)} divergence value(s) (order, fraction, prompt) were not "
              "finite and were left out of their means; results.json → divergence → nonfinite "
              "lists them."] if d.nonfinite else []), "",
           f"## Perturbation (Gaussian noise into "
           f"{fmt(100 * res.config['perturb_fraction'])} % of {noun})", "",
           _noise_sentence(p), "",
           *([f"Most synergistic set: {_set_names(res, 'synergistic')}; most redundant set: "
              f"{_set_names(res, 'redundant')}.", ""] if which != "heads" else []),
           "| condition | rank | " + " | ".join(f"σ={s:g}" for s in p.sigmas) + " |",
           "|---|---|" + "---|" * len(p.sigmas)]
  for cond in p.conditions:
    a = p.accuracy[cond]
    for i, k in enumerate(p.levels):
      cells = [f"{fmt(a['mean'][s][i], 2)} [{fmt(a['ci_low'][s][i], 2)}, "
               f"{fmt(a['ci_high'][s][i], 2)}]" for s in range(len(p.sigmas))]
      lines.append(f"| {cond} | {k} | " + " | ".join(cells) + " |")
  s0, s1 = int(np.argmin(p.sigmas)), int(np.argmax(p.sigmas))
  lines += ["", f"Rows pool the families {p.families} at each difficulty rank (1 = each "
            f"family's easiest level); within families, accuracy lost from σ={p.sigmas[s0]:g} "
            f"to σ={p.sigmas[s1]:g} at the easiest / hardest level:", ""]
  mean_drop = {c: [] for c in p.conditions}
  for fam, fd in p.by_family.items():
    cells = []
    for cond in p.conditions:
      a = np.asarray(fd[cond]["mean"], float)  # (S, K)
      drop = a[s0] - a[s1]
      mean_drop[cond].append(float(np.mean(drop)))
      cells.append(f"{cond} {fmt(drop[0], 2)} / {fmt(drop[-1], 2)}")
    lines.append(f"- {fam} (levels {fd['levels'][0]}–{fd['levels'][-1]}): " + "; ".join(cells))
  avg = {c: float(np.mean(v)) for c, v in mean_drop.items()}
  ranked = sorted(avg, key=avg.get, reverse=True)
  lines.append("")
  if avg[ranked[0]] > avg[ranked[1]]:
    lines.append(f"Largest accuracy loss at the largest σ (mean over families and levels): "
                 f"**{ranked[0]}** {noun} ({fmt(avg[ranked[0]])} vs {fmt(avg[ranked[1]])} for "
                 f"{ranked[1]}, {fmt(avg[ranked[2]])} for {ranked[2]}).")
  else:
    lines.append("No condition lost more accuracy than the others at the largest σ.")
  lines.append("Differences whose CIs overlap should not be read as effects.")
  return "\n".join(lines) + "\n"
