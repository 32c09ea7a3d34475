"""Phase sweep, files: results.json, CSV tables, per-prompt arrays, figures and summary.md of a
sweep, and ``run_phase_sweep``, the experiment from a --model string to a run directory."""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable

import numpy as np

from synergy_jax import plots, results
from synergy_jax.pipeline import specs
from synergy_jax.pipeline.phase_sweep.analysis import SweepResult, SweepSummary, analyse_sweep
from synergy_jax.pipeline.phase_sweep.config import (ORDER_PARAMETERS, PhaseSweepConfig,
                                                     select_items)
from synergy_jax.pipeline.phase_sweep.report import summary_markdown


def write_sweep(run_dir, result: SweepResult) -> SweepSummary:
  """Writes results.json, order_parameters.csv, accuracy.csv, per_prompt.csv, transition.csv,
  per_prompt.npz, phase_sweep_<order parameter>.png and summary.md; returns the summary."""
  run_dir = pathlib.Path(run_dir)
  res = result.summary
  results.write_json(run_dir / "results.json", res)
  lv = res.levels
  rows = []
  for name in ORDER_PARAMETERS:
    o = res.order_parameter[name]
    sus = res.susceptibility[name]
    for i, k in enumerate(lv):
      rows.append({"order_parameter": name, "level": k, "n_prompts": res.n_prompts[i],
                   "value": o.values[i], "ci_low": o.ci_low[i], "ci_high": o.ci_high[i],
                   "per_prompt_mean": o.per_prompt_mean[i],
                   "per_prompt_ci_low": o.per_prompt_ci_low[i],
                   "per_prompt_ci_high": o.per_prompt_ci_high[i],
                   "susceptibility": (sus[i] if sus is not None and len(sus) == len(lv)
                                      else float("nan"))})
  results.write_csv(run_dir / "order_parameters.csv", rows)
  if res.accuracy is not None:
    acc = res.accuracy
    results.write_csv(run_dir / "accuracy.csv", [
        {"level": k, "family": f, "accuracy": acc.per_family[f][i]}
        for i, k in enumerate(lv) for f in acc.per_family] + [
        {"level": k, "family": "all", "accuracy": acc.values[i]} for i, k in enumerate(lv)])
  per = result.per_prompt
  pp = {"prompt": np.arange(per.shape[0]), "level": result.x, "group": result.groups}
  if result.correct is not None:
    pp["correct"] = result.correct.astype(int)
  for j, name in enumerate(ORDER_PARAMETERS):
    pp[name] = per[:, j]
  results.write_csv(run_dir / "per_prompt.csv", {k: list(v) for k, v in pp.items()})
  results.write_npz(run_dir / "per_prompt.npz", level=result.x, order_parameters=per,
                    names=np.asarray(ORDER_PARAMETERS))
  trows = []
  for name, t in res.transition.items():
    if "skipped" in t:
      continue
    for m, f in t["fits"].items():
      trows.append({"order_parameter": name, "model": m, "aic": f["aic"], "sse": f["sse"],
                    "held_out_loglik": t["held_out_loglik"][m], "supported": t["supported"]})
  if trows:
    results.write_csv(run_dir / "transition.csv", trows)
  for name in ORDER_PARAMETERS:
    t = res.transition[name]
    o = res.order_parameter[name]
    sus = t.get("susceptibility")
    fig = plots.phase_sweep(
        lv, {"mean": np.asarray(o.per_prompt_mean, float),
             "ci_low": np.asarray(o.per_prompt_ci_low, float),
             "ci_high": np.asarray(o.per_prompt_ci_high, float)},
        np.asarray(sus if sus is not None and len(sus) == len(lv) else [np.nan] * len(lv),
                   float),
        None if res.accuracy is None else {
            "mean": np.asarray(res.accuracy.values, float),
            "ci_low": np.asarray(res.accuracy.ci_low, float),
            "ci_high": np.asarray(res.accuracy.ci_high, float)},
        order_name=f"{name} (mean over prompts)",
        fit_curve=None if "fit_curve" not in t else (t["fit_curve"]["x"], t["fit_curve"]["y"]),
        threshold=None if t.get("threshold") is None else t["threshold"]["estimate"],
        threshold_ci=None if t.get("threshold") is None else t["threshold"]["ci"],
        title=f"phase sweep — {res.model}: {name} against difficulty",
        ci_level=o.ci_level,
        save=run_dir / f"phase_sweep_{name}.png")
    del fig
  results.write_text(run_dir / "summary.md", summary_markdown(res))
  return res


def run_phase_sweep(model: str, config: PhaseSweepConfig, run_dir, *, cache_dir,
                    prompts_path: str | None = None, dtype: str = "float32",
                    progress: Callable | None = None) -> SweepSummary:
  """The phase-sweep experiment for a --model string; writes everything into ``run_dir``.

  prompts_path: a JSONL file with a ``difficulty`` on every prompt (then no accuracy), instead of
  the task families; ``config.levels``, if given, selects difficulty labels from it.
  Returns the summary written to results.json (with ``wall_s``).
  """
  t0 = time.time()
  items = select_items(config, prompts_path)  # prompt errors before the model is loaded
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  res = analyse_sweep(spec, items, config, cache_dir,
                      progress=specs.labelled(progress, spec.label, unit="prompt"))
  res = dataclasses.replace(res, summary=dataclasses.replace(res.summary,
                                                             wall_s=time.time() - t0))
  return write_sweep(run_dir, res)
