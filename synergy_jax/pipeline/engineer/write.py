"""Engineer experiment, files and the run: train (or reuse) every (λ, seed) model, measure each
(cached per model), analyse, and write results.json, runs.csv, engineer.png and summary.md
atomically (``synergy_jax.results``)."""
from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Callable

import numpy as np

from synergy_jax import results
from synergy_jax.pipeline.engineer.analysis import QUANTITIES, EngineerResult, analyse
from synergy_jax.pipeline.engineer.config import EngineerConfig, MeasureConfig
from synergy_jax.pipeline.engineer.measure import ModelMeasures, measure_model
from synergy_jax.pipeline.engineer.report import summary_markdown
from synergy_jax.pipeline.engineer.trained import trained_model
from synergy_jax.training import synergy
from synergy_jax.training.default import default_model_config


def measures_cached(model_dir, config: MeasureConfig, cache_dir, *, target: str = synergy.CORE,
                    progress: Callable | None = None) -> ModelMeasures:
  """``measure_model``, stored beside the model as measures-<hash>.json and reused."""
  key = {"what": "measures", "measure": dataclasses.asdict(config), "target": target}
  path = pathlib.Path(model_dir) / f"measures-{results.config_hash(key)}.json"
  if path.exists():
    return ModelMeasures(**json.loads(path.read_text()))
  m = measure_model(model_dir, config, cache_dir, target=target, progress=progress)
  results.write_json(path, m.to_dict())
  return ModelMeasures(**json.loads(path.read_text()))  # the same (JSON-normalised) values


def figure(result: EngineerResult, path) -> None:
  """Each compared quantity against λ: one dot per seed, the mean as a line."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  qs = list(QUANTITIES)
  fig, axes = plt.subplots(1, len(qs), figsize=(3.2 * len(qs), 3.2), constrained_layout=True)
  w = np.asarray(result.weights)
  for ax, q in zip(axes, qs):
    vals = np.array([result.values[q][x] for x in result.weights], np.float64)  # (W, S)
    for s in range(vals.shape[1]):
      ax.plot(w, vals[:, s], "o", color="0.6", ms=4)
    with np.errstate(invalid="ignore"):
      ax.plot(w, np.nanmean(vals, 1), "-", color="C0")
    ax.set_xlabel("λ (synergy weight)")
    ax.set_title(q, fontsize=9)
  results.save_figure(fig, path)
  plt.close(fig)


def run_engineer(config: EngineerConfig, run_dir, *, cache_dir, progress: Callable | None = None,
                 log: Callable[[str], None] = print) -> dict:
  """The experiment (module docstring); returns results.json's dict."""
  run_dir, cache_dir = pathlib.Path(run_dir), pathlib.Path(cache_dir)
  mc = default_model_config(**config.model_kwargs())
  t0 = time.time()
  measures, folders, timing, failed = {}, {}, {}, {}
  for w in config.weights:
    for s in config.seeds:
      t = time.time()
      try:
        folder = trained_model(mc, config.train_config(s), config.objective(w),
                               cache_dir / "trained_models", card_examples=0,
                               log=lambda m, w=w, s=s: log(f"[λ={w:g} seed={s}] {m}"))
      except FloatingPointError as e:  # a diverged run is a result, reported, not a crash
        failed[f"{w:g}/{s}"] = str(e)
        measures[(float(w), s)] = None
        log(f"[λ={w:g} seed={s}] failed: {e}")
        continue
      t_train = time.time() - t
      measures[(float(w), s)] = measures_cached(folder, config.measure, cache_dir,
                                                target=config.target, progress=progress)
      folders[f"{w:g}/{s}"] = str(folder)
      timing[f"{w:g}/{s}"] = {"train_and_card_s": t_train, "total_s": time.time() - t}
      log(f"[λ={w:g} seed={s}] J = {measures[(float(w), s)].objective:.4g}, core contrast "
          f"{measures[(float(w), s)].core_contrast:.3g}, accuracy "
          f"{measures[(float(w), s)].accuracy_mean:.3f}")
  res = analyse(measures, config.weights, config.seeds, n_boot=config.n_boot,
                level=config.ci_level, n_perm=config.n_perm, seed=config.train.seed)
  ok = [m for m in measures.values() if m is not None]
  if not ok:
    raise FloatingPointError(f"every training run failed: {failed}")
  n_params = ok[0].n_params
  meta = {"architecture": config.architecture, "n_params": n_params,
          "steps": config.train.steps, "target": config.target}
  out = {"experiment": "engineer", **meta, "weights": list(res.weights),
         "seeds": list(res.seeds), "verdict": res.verdict,
         "values": {q: {f"{w:g}": v for w, v in d.items()} for q, d in res.values.items()},
         "comparisons": {q: {f"{w:g}": c for w, c in d.items()}
                         for q, d in res.comparisons.items()},
         "quantities": {q: what for q, (_, what) in QUANTITIES.items()},
         "models": folders, "failed_runs": failed,
         "measures": {f"{w:g}/{s}": m.to_dict() for (w, s), m in measures.items()
                      if m is not None},
         "timing_s": {"runs": timing, "total": time.time() - t0},
         "config": config.as_dict()}
  results.write_json(run_dir / "results.json", out)
  results.write_csv(run_dir / "runs.csv", [{k: v for k, v in r.items() if k != "verdict"}
                                           for r in res.runs])
  figure(res, run_dir / "engineer.png")
  results.write_text(run_dir / "summary.md", summary_markdown(res, {**meta, "failed": failed}))
  return out
