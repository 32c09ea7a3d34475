"""Phase sweep, report: the plain-language summary.md of a sweep, from its SweepSummary (a
finished run directory's summary can be rebuilt: ``summary_markdown(read_sweep(run_dir))``)."""
from __future__ import annotations

import numpy as np

from synergy_jax.pipeline import profile_report, specs
from synergy_jax.pipeline.phase_sweep.analysis import SweepSummary
from synergy_jax.pipeline.phase_sweep.config import ORDER_PARAMETERS
from synergy_jax.pipeline.text import fmt


def _pooled_trend(values, levels, per_prompt_slope: float, name: str) -> str:
  """A sentence on the pooled (level-atoms) values' linear trend, flagging a sign disagreement
  with the per-prompt trend (mean of ratios vs ratio of means)."""
  v = np.asarray(values, np.float64)
  x = np.asarray(levels, np.float64)
  ok = np.isfinite(v)
  if ok.sum() < 2:
    return "- Pooled level values: too few finite values for a trend."
  slope = float(np.polyfit(x[ok], v[ok], 1)[0])
  text = (f"- Pooled level values (ΦID atoms averaged over a level's prompts, then {name}): "
          f"linear slope {fmt(slope)} per level.")
  if np.sign(slope) != np.sign(per_prompt_slope):
    text += (" Its sign differs from the per-prompt trend: the two summaries weigh prompts "
             "differently (ratio of means vs mean of ratios), so neither direction is robust.")
  return text


def _flat_note(t: dict, levels) -> str:
  """A warning when every prompt of some level has the same value (a floor or ceiling)."""
  sus = t.get("susceptibility")
  flat = [levels[i] for i, v in enumerate([] if sus is None else list(sus))
          if v is not None and v == 0]
  if not flat:
    return ""
  return (f" Every prompt has the same value at level(s) {flat}: at a floor or ceiling a tiny "
          "step can pass the tests — judge it by the size of the jump.")


def claim_sentence(name: str, tr: dict, claim_supported: bool) -> str:
  """One sentence on the claim under test — an abrupt shift from redundancy toward synergy as
  difficulty rises — judged by order parameter ``name`` with transition analysis ``tr``; it
  agrees with ``claim_supported`` (``SweepSummary.claim_supported``) by construction."""
  claim = "an abrupt shift from redundancy toward synergy as difficulty rises"
  if "skipped" in tr:
    return f"The claim under test ({claim}) could not be tested: {tr['skipped']}."
  jump = tr["fits"]["logistic"]["jump"]
  mean_level = float(np.mean(tr["level_means"]))
  size = fmt(jump) + (f" ({fmt(100 * abs(jump) / abs(mean_level), 2)}% of the mean "
                       f"{fmt(mean_level)})" if mean_level else "")
  where = f"at difficulty ≈ {fmt(tr['logistic_threshold_unconfirmed'])}"
  if claim_supported:
    return (f"**The claim under test ({claim}) is supported by {name}:** a step of {size} "
            f"upward {where} passes the transition tests; judge whether a step this size "
            "matters.")
  if tr["supported"]:
    return (f"**The claim under test ({claim}) is not supported by {name}:** the transition "
            f"tests find a step {where}, but it goes downward (toward redundancy, {size}), "
            "opposite to the claim.")
  return (f"**The claim under test ({claim}) is not supported by {name}:** no abrupt change "
          "with difficulty passes the transition tests (best logistic step "
          f"{size} {where}).")


def summary_markdown(res: SweepSummary) -> str:
  """Plain-language summary.md of a phase sweep: the verdict on the claim first, then the table
  of per-prompt means with bootstrap CIs (the quantities the figures show) and the details."""
  name = res.order_parameter_name
  op = res.order_parameter[name]
  lv = res.levels
  tr = res.transition[name]
  lines = [f"# Difficulty phase sweep — {res.model}", "",
           claim_sentence(name, tr, res.claim_supported), "",
           f"Control parameter: {res.control}; levels {lv}; prompts per level "
           f"{res.n_prompts}; families/groups {res.families}.",
           *(["Task level k of each family at these ranks: "
              + "; ".join(f"{f} {v}" for f, v in res.level_values.items()) + "."]
             if res.level_values else []),
           *([profile_report.units_line({"units": res.units})] if res.units else []),
           f"Order parameter deciding the verdict: **{name}**. Table and figures: mean over a "
           f"level's prompts of each prompt's value, [{int(op.ci_level * 100)}% bootstrap CI "
           "over prompts].", "",
           "| level | " + " | ".join(ORDER_PARAMETERS) + " | accuracy |",
           "|---|" + "---|" * (len(ORDER_PARAMETERS) + 1)]
  for i, k in enumerate(lv):
    cells = []
    for n in ORDER_PARAMETERS:
      o = res.order_parameter[n]
      cells.append(f"{fmt(o.per_prompt_mean[i])} [{fmt(o.per_prompt_ci_low[i])}, "
                   f"{fmt(o.per_prompt_ci_high[i])}]")
    acc = res.accuracy
    a = ("—" if acc is None else
         f"{fmt(acc.values[i], 2)} [{fmt(acc.ci_low[i], 2)}, {fmt(acc.ci_high[i], 2)}]")
    lines.append(f"| {k:g} | " + " | ".join(cells) + f" | {a} |")
  lines += ["", "## Transition tests", ""]
  if "skipped" in tr:
    lines.append(f"Not analysed: {tr['skipped']}.")
  else:
    slope = tr["fits"]["linear"]["slope"]
    direction = ("rises (toward synergy, the direction the claim predicts)" if slope > 0 else
                 "falls (toward redundancy, against the claim's direction)" if slope < 0 else
                 "does not change")
    lines += [f"A transition (an abrupt step, in either direction) of {name} is "
              f"{'supported' if tr['supported'] else 'not supported'} by the tests: "
              + tr["explanation"], "",
              f"- Trend: the per-prompt {name} {direction}: linear slope {fmt(slope)} per level "
              f"(level means {', '.join(fmt(m) for m in tr['level_means'])}).",
              _pooled_trend(op.values, lv, slope, name),
              f"- Per-prompt {name} against difficulty: logistic threshold "
              f"{fmt(tr['logistic_threshold_unconfirmed'])} (bootstrap CI "
              f"{fmt(tr['threshold_ci'][0])}–{fmt(tr['threshold_ci'][1])}), jump CI "
              f"{fmt(tr['jump_ci'][0])}–{fmt(tr['jump_ci'][1])}, shuffled-label p = "
              f"{fmt(tr['p_value'])}.",
              "- AIC constant / linear / logistic: "
              + " / ".join(fmt(tr["fits"][m]["aic"], 5) for m in ("constant", "linear",
                                                                   "logistic")) + ".",
              f"- Susceptibility (variance of the per-prompt value) peaks at level "
              f"{fmt(tr['susceptibility_peak'])}.{_flat_note(tr, lv)}"]
    for other in ORDER_PARAMETERS:
      t = res.transition[other]
      if other == name or "skipped" in t:
        continue
      lg = t["fits"]["logistic"]
      line = (f"- {other}: transition {'supported' if t['supported'] else 'not supported'} "
              f"(logistic d* = {fmt(lg['threshold'])}, jump {fmt(lg['jump'])}, "
              f"p = {fmt(t['p_value'])}).")
      lines.append(line + _flat_note(t, lv))
  if res.accuracy is not None:
    acc = res.accuracy.values
    lines += ["", f"Task accuracy goes from {fmt(acc[0], 2)} at level {lv[0]:g} to "
              f"{fmt(acc[-1], 2)} at level {lv[-1]:g}."]
  if res.degenerate:
    deg = specs.degenerate_summary(res.degenerate)
    lines += ["", f"{deg['n_units']} unit(s) had constant or non-finite series in some prompts "
              f"and were left out of those prompts' pairs: {', '.join(deg['units'][:10])}"
              f"{' …' if deg['n_units'] > 10 else ''}" + (
                  f"; {deg['n_pairs']} pair(s) were singular in some prompt" if deg["n_pairs"]
                  else "")]
  lines += ["", "Per-prompt values come from 1-prompt ΦID estimates (noisier than the pooled level "
            "values); the transition criteria are listed in results.json → transition."]
  return "\n".join(lines) + "\n"
