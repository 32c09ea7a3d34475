"""Scale experiment, files and the run: train (or reuse) the default recipe at every size, write
each model folder with its card, measure each (cached), and write results.json, sizes.csv,
scale.png and summary.md atomically."""
from __future__ import annotations

import pathlib
import time
from typing import Callable

import numpy as np

from synergy_jax import results
from synergy_jax.pipeline.engineer.config import parse_architecture
from synergy_jax.pipeline.engineer.trained import trained_model
from synergy_jax.pipeline.engineer.write import measures_cached
from synergy_jax.pipeline.scale.analysis import SERIES, ScaleResult, analyse
from synergy_jax.pipeline.scale.config import ScaleConfig
from synergy_jax.pipeline.scale.report import summary_markdown
from synergy_jax.training.default import default_model_config


def figure(result: ScaleResult, path) -> None:
  """Each series against parameter count (log x), one panel per series."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(SERIES), figsize=(3.4 * len(SERIES), 3.2),
                           constrained_layout=True)
  x = np.array([r["n_params"] for r in result.rows], np.float64)
  for ax, (k, (_, label)) in zip(axes, SERIES.items()):
    y = np.array([r[k] for r in result.rows], np.float64)
    ax.plot(x, y, "o-")
    for xi, yi, r in zip(x, y, result.rows):
      if np.isfinite(yi):
        ax.annotate(r["size"], (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if k == "core_contrast":
      base = np.array([r["baseline_core_contrast"] for r in result.rows], np.float64)
      ax.plot(x, base, "s--", color="0.5", ms=4, label="random init")
      ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_title(label, fontsize=9)
  results.save_figure(fig, path)
  plt.close(fig)


def run_scale(config: ScaleConfig, run_dir, *, cache_dir, progress: Callable | None = None,
              log: Callable[[str], None] = print) -> dict:
  """The experiment; returns results.json's dict."""
  run_dir, cache_dir = pathlib.Path(run_dir), pathlib.Path(cache_dir)
  t0 = time.time()
  measures, folders, timing = {}, {}, {}
  for size in config.sizes:
    t = time.time()
    mc = default_model_config(**parse_architecture(size))
    folder = trained_model(mc, config.train, None, cache_dir / "trained_models",
                           card_examples=config.card_examples,
                           card_seed=config.measure.accuracy_seed,
                           log=lambda m, size=size: log(f"[{size}] {m}"))
    t_train = time.time() - t
    measures[size] = measures_cached(folder, config.measure, cache_dir, progress=progress)
    folders[size] = str(folder)
    timing[size] = {"train_and_card_s": t_train, "total_s": time.time() - t}
    m = measures[size]
    log(f"[{size}] {m.n_params:,} parameters: core contrast {m.core_contrast:.3g}, accuracy "
        f"{m.accuracy_mean:.3f}")
  res = analyse(measures)
  meta = {"steps": config.train.steps, "batch_size": config.train.batch_size,
          "seed": config.train.seed}
  out = {"experiment": "scale", **meta, "sizes": res.rows, "trends": res.trends,
         "series": {k: label for k, (_, label) in SERIES.items()}, "models": folders,
         "measures": {s: m.to_dict() for s, m in measures.items()},
         "timing_s": {"sizes": timing, "total": time.time() - t0}, "config": config.as_dict()}
  results.write_json(run_dir / "results.json", out)
  results.write_csv(run_dir / "sizes.csv", [{k: v for k, v in r.items() if k != "verdict"}
                                            for r in res.rows])
  figure(res, run_dir / "scale.png")
  results.write_text(run_dir / "summary.md", summary_markdown(res, meta))
  return out
