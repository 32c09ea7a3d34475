"""The profile's words: the verdict sentence and summary.md, from ProfileResult summaries.

The summary leads with the verdict (is there a significant inverted U over depth, on which
score), its uncertainty (curvature intervals over heads and over prompts, the permutation p) and
the confound diagnostics, before any point estimate.
"""
from __future__ import annotations

import numpy as np

from synergy_jax.pipeline.text import fmt

SCORE_LABELS = {"rank_difference": "rank score rank(syn) − rank(red)",
                "balance": "balance sts/(sts+rtr)",
                "excess": "null-corrected (excess) rank score"}


def _trend_words(summary: dict, score: str) -> str | None:
  """'curvature −0.41 (95% CI over heads −0.6 to −0.2, over prompts …), p = 0.003, peak 0.52'."""
  tr = (summary.get("depth_trend") or {}).get(score)
  if not tr or "unavailable" in tr:
    return None
  ci = tr["ci"]
  words = (f"curvature {fmt(tr['curvature'], 2, 'f')} (95% CI over heads {fmt(ci[0], 2, 'f')} to "
           f"{fmt(ci[1], 2, 'f')}")
  pci = ((summary.get("layer_profile_ci") or {}).get(score) or {}).get("curvature_ci")
  if pci:
    words += f"; over prompts {fmt(pci[0], 2, 'f')} to {fmt(pci[1], 2, 'f')}"
  return words + (f"), one-sided permutation p = {fmt(tr['p_value'], 3, 'f')}, fitted peak at depth "
                  f"{fmt(tr['peak_depth'], 2, 'f')}")


def verdict_score(summary: dict) -> str:
  """The score the verdict is about: the null-corrected one where the null ran, else the
  ranking score."""
  return "excess" if "excess" in (summary.get("depth_trend") or {}) else \
      summary.get("score_name", "rank_difference")


def inverted_u_supported(summary: dict, score: str) -> bool:
  """Significant inverted U on ``score``: depth-trend permutation p < alpha, negative curvature,
  interior peak, and (where computed) a prompt-bootstrap curvature interval entirely below 0."""
  tr = (summary.get("depth_trend") or {}).get(score) or {}
  if not tr.get("inverted_u"):
    return False
  pci = ((summary.get("layer_profile_ci") or {}).get(score) or {}).get("curvature_ci")
  return pci is None or (pci[1] is not None and np.isfinite(pci[1]) and pci[1] < 0)


def verdict(summary: dict) -> str:
  """One plain sentence: is there a significant inverted U, on the null-corrected score where
  the surrogate null ran (beyond autocorrelation and chance), else on the ranking score."""
  score = verdict_score(summary)
  tr = (summary.get("depth_trend") or {}).get(score) or {}
  words = _trend_words(summary, score)
  label = SCORE_LABELS.get(score, score)
  if words is None:
    return f"No depth-trend test on the {label}: {tr.get('unavailable', 'not computed')}."
  if tr["inverted_u"] and not inverted_u_supported(summary, score):
    return (f"No robust inverted U on the {label} (the permutation test passes but the "
            f"prompt-bootstrap interval of the curvature reaches 0 or above): {words}.")
  if tr["inverted_u"]:
    beyond = " beyond what each head's autocorrelation and chance explain" \
        if score == "excess" else ""
    return f"Significant inverted U (a synergistic core){beyond} on the {label}: {words}."
  why = ("the curvature is not significantly negative" if tr["p_value"] >= tr["alpha"]
         else "the fitted peak lies at the edge of the network")
  return f"No significant inverted U on the {label} ({why}): {words}."


def _row(name: str, s: dict, score: str) -> str:
  prof = " ".join(fmt(v, 2, 'f') for v in s["layer_profile"])
  ci = (s.get("layer_profile_ci") or {}).get(score)
  band = (" ".join(f"[{fmt(lo, 2, 'f')}, {fmt(hi, 2, 'f')}]" for lo, hi in
                   zip(ci["ci_low"], ci["ci_high"])) if ci else "n/a")
  tr = (s.get("depth_trend") or {}).get(score) or {}
  rel = ((s.get("reliability") or {}).get(score) or {}).get("spearman_brown")
  sur = s.get("surrogates") or {}
  sig = sur.get("sts", {}).get("fraction_heads_significant") if sur else None
  return (f"| {name} ({s.get('model', '')}) | {prof} | {band} | {fmt(tr.get('curvature'), 2, 'f')} "
          f"| {fmt(tr.get('p_value'), 3, 'f')} | {fmt(rel, 2, 'f')} | "
          f"{fmt(s['syn_red_spearman']['rho'], 2, 'f')} | "
          f"{fmt(s.get('autocorr_syn_spearman', {}).get('rho'), 2, 'f')} | {fmt(sig, 2, 'f')} |")


def summary_markdown(profiles: dict, meta: dict) -> str:
  """summary.md: verdicts first, then the table with intervals, then how to read it."""
  main_name = next(iter(profiles))
  main = profiles[main_name].summary
  lines = ["# Synergistic-core profile", "", f"**Verdict ({main_name}).** {main['verdict']}", ""]
  for name, p in list(profiles.items())[1:]:
    inputs = p.summary.get("baseline_inputs")
    lines += [f"**{name}{f' ({inputs} inputs)' if inputs else ''}.** {p.summary['verdict']}", ""]
  lines += [units_line(main), ""]
  rho = main["syn_red_spearman"]["rho"]
  ac = main.get("autocorr_syn_spearman", {}).get("rho")
  lines += [f"Confounds ({main_name}): Spearman(synergy, redundancy) = {fmt(rho, 2, 'f')} "
            f"(near +1: the rank difference carries little signal); Spearman(lag-1 "
            f"autocorrelation, synergy) = {fmt(ac, 2, 'f')} (strong: synergy may reflect smoothness, "
            f"see the excess score).", ""]
  score = main.get("score_name", "rank_difference")
  shown = [score] + (["excess"] if score != "excess" and "excess" in main.get("depth_trend", {})
                     else [])
  for sc in shown:
    lines += [f"### {SCORE_LABELS.get(sc, sc)}", "",
              "| model | layer profile (input → output) | 95% prompt-bootstrap CI per layer | "
              "curvature | p (inverted U) | split-half reliability | Spearman(syn, red) | "
              "Spearman(autocorr, syn) | sts-significant heads |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, p in profiles.items():
      s = dict(p.summary)
      if sc == "excess" and "excess" in s:
        s["layer_profile"] = s["excess"]["layer_profile"]
      elif sc != "rank_difference":
        s["layer_profile"] = s["layer_profile_detail"].get(sc, {}).get("mean",
                                                                      s["layer_profile"])
      lines.append(_row(name, s, sc))
    lines.append("")
  if meta:
    lines += ["Settings:", ""] + [f"- {k}: `{v}`" for k, v in meta.items()] + [""]
  sur = main.get("surrogates") or {}
  lines += ["How to read this:",
            "- Layer profile: mean over a layer's heads of the min–max scaled score (0..1). The "
            "study's brain-like pattern is an inverted U: middle layers synergistic, first and "
            "last layers redundant.",
            "- Curvature: quadratic coefficient of the scaled head score over depth 0..1 "
            "(negative = inverted U); p permutes layer labels across heads; an inverted U also "
            "needs the fitted peak inside the network (depth 0.1–0.9).",
            "- Intervals: percentile bootstrap over prompts from per-prompt estimates (nothing "
            "re-generated); split-half reliability is the Spearman–Brown corrected Spearman "
            "between head scores from two random halves of the prompts.",
            f"- Null: {sur.get('method', 'not run')}. Excess atoms are observed minus the "
            "surrogate mean (nats); sts-significant heads: fraction whose mean sts exceeds the "
            "null after Benjamini–Hochberg FDR control."]
  for name, p in profiles.items():
    line = degenerate_line(name, p.summary)
    if line:
      lines.append(line)
  return "\n".join(lines) + "\n"


def units_line(summary: dict) -> str:
  """'Units: 8 experts (2 shared) of a 3-layer model (routed expert activity).'"""
  u = summary["units"]
  act = f" ({u['expert_activity']} expert activity)" if u.get("expert_activity") else ""
  return f"Units: {u['description']} of a {u['num_layers']}-layer model{act}."


def degenerate_line(name: str, summary: dict, shown: int = 10) -> str | None:
  """'- random: 3 unit(s) ... masked: L0 H1, L2 E3, …; 2 singular pair(s) ...' from a summary's
  "degenerate_units" (``specs.degenerate_summary``); None when nothing was degenerate."""
  deg = summary.get("degenerate_units") or {}
  if not deg.get("n_units") and not deg.get("n_pairs"):
    return None
  listed = lambda names: ", ".join(names[:shown]) + (" …" if len(names) > shown else "")
  parts = []
  if deg.get("n_units"):
    parts.append(f"{deg['n_units']} unit(s) had a degenerate series (constant or NaN) in some "
                 f"prompt and were masked (NaN atoms, left out of the ranking): "
                 f"{listed(deg['units'])}")
  if deg.get("n_pairs"):
    parts.append(f"{deg['n_pairs']} pair(s) were singular in some prompt (only the pair "
                 f"masked): {listed(deg['pairs'])}")
  return f"- {name}: " + "; ".join(parts)
