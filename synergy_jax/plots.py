"""Figures of the study (matplotlib, Agg canvas only: no display, no pyplot global state).

Every function returns a ``matplotlib.figure.Figure`` and, given ``save=PATH``, also writes it
atomically (``results.save_figure``). Inputs are plain arrays so the functions work on results
loaded back from a run directory.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib import cm, colors

from synergy_jax import results

COLORS = {"synergistic": "#c0392b", "redundant": "#2471a3", "random": "#7f8c8d",
          "trained": "#c0392b", "random_init": "#7f8c8d"}


def _figure(ncols: int = 1, nrows: int = 1, size=(5.0, 4.0)):
  fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  axes = fig.subplots(nrows, ncols, squeeze=False)
  return fig, axes


def _finish(fig, save):
  if save is not None:
    results.save_figure(fig, save)
  return fig


def _unit_layers(layers, n: int) -> np.ndarray:
  """(n,) layer of each unit: from a (U,) array, or num_heads (int) for the head grid."""
  if np.ndim(layers) == 0:
    h = int(layers)
    if h < 1 or n % h:
      raise ValueError(f"need U a multiple of num_heads={h}, got U = {n}")
    return np.arange(n) // h
  layers = np.asarray(layers, np.int64).reshape(-1)
  if layers.size != n:
    raise ValueError(f"unit layers has {layers.size} entries for {n} units")
  return layers


def _layer_lines(ax, layers: np.ndarray):
  """White lines where the unit's layer changes; one tick (the layer) per run of units."""
  starts = np.flatnonzero(np.r_[True, layers[1:] != layers[:-1]])
  ends = np.r_[starts[1:], layers.size]
  for pos in starts[1:] - 0.5:
    ax.axhline(pos, color="white", lw=0.6)
    ax.axvline(pos, color="white", lw=0.6)
  ticks = (starts + ends - 1) / 2
  names = [str(int(layers[i])) for i in starts]
  ax.set_xticks(ticks, names)
  ax.set_yticks(ticks, names)
  ax.set_xlabel("source y: layer (its units side by side)")
  ax.set_ylabel("source x: layer (its units side by side)")


def pair_heatmaps(matrices: Mapping[str, np.ndarray], layers, *, save=None,
                  cmap: str | None = None, title: str | None = None) -> Figure:
  """Unit × unit heatmaps, e.g. {"synergy (sts)": (U, U), "redundancy (rtr)": (U, U)} in nats,
  with white lines between layers. Diagonal (NaN) is left blank.

  layers: (U,) the layer of each unit (``Units.layer``; heads then experts draw the layers
  twice), or num_heads (int) for the head grid (unit = layer · num_heads + head).
  cmap: default "viridis" for a non-negative matrix and, for one with negative entries (CCS
  atoms can be negative), the diverging "RdBu_r" centred at 0 so that sign reads as colour.
  title: a figure title above the panels (e.g. which model).
  """
  fig, axes = _figure(len(matrices), 1, (4.6, 4.0))
  for ax, (name, m) in zip(axes[0], matrices.items()):
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
      raise ValueError(f"heatmap {name!r}: need a square (U, U) matrix, got {m.shape}")
    try:
      unit_layer = _unit_layers(layers, m.shape[0])
    except ValueError as e:
      raise ValueError(f"heatmap {name!r}: {e}") from e
    finite = m[np.isfinite(m)]
    signed = finite.size > 0 and finite.min() < 0
    if signed:
      lim = float(np.abs(finite).max())
      im = ax.imshow(m, cmap=cmap or "RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    else:
      im = ax.imshow(m, cmap=cmap or "viridis", interpolation="nearest")
    _layer_lines(ax, unit_layer)
    ax.set_title(name)
    fig.colorbar(im, ax=ax, shrink=0.8, label="nats (0 = white)" if signed else "nats")
  if title:
    fig.suptitle(title)
  return _finish(fig, save)


def head_rank_heatmap(scores: np.ndarray, num_layers: int, num_heads: int, *,
                      title: str = "rank(synergy) − rank(redundancy)", save=None) -> Figure:
  """Layer × head heatmap of per-head scores (U,) with a diverging colour map centred at 0."""
  s = np.asarray(scores, dtype=np.float64)
  if s.shape != (num_layers * num_heads,):
    raise ValueError(f"scores must be ({num_layers * num_heads},), got {s.shape}")
  grid = s.reshape(num_layers, num_heads)
  fig, axes = _figure(1, 1, (max(3.0, 0.35 * num_heads + 2), max(3.0, 0.3 * num_layers + 1.5)))
  ax = axes[0, 0]
  lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
  im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
  ax.set_xlabel("head")
  ax.set_ylabel("layer")
  ax.set_title(title)
  fig.colorbar(im, ax=ax, label="synergistic ← → (red = synergistic)")
  return _finish(fig, save)


# (marker, legend) per group of units: heads, routed experts, shared experts.
UNIT_MARKERS = {"head": ("o", "head"), "expert": ("s", "routed expert"),
                "shared": ("D", "shared expert")}


def unit_scores_by_layer(scores: np.ndarray, layers: np.ndarray, kinds: np.ndarray,
                         shared: np.ndarray, num_layers: int, *, title: str = "unit scores",
                         ylabel: str = "score", save=None) -> Figure:
  """Per-unit scores (U,) over the model's layers for any unit table (ragged, experts, heads and
  experts): one column of points per layer, units side by side within it, marker and colour by
  kind (head, routed expert, shared expert); NaN scores (excluded units) are drawn as crosses at
  the bottom. layers, kinds, shared: (U,) as ``Units.layer``, ``Units.kind``, ``Units.shared``.
  """
  s = np.asarray(scores, np.float64)
  layers = np.asarray(layers, np.int64)
  kinds = np.asarray(kinds, str)
  shared = np.asarray(shared, bool)
  if not (s.shape == layers.shape == kinds.shape == shared.shape) or s.ndim != 1:
    raise ValueError(f"scores, layers, kinds and shared must all be (U,), got {s.shape}, "
                     f"{layers.shape}, {kinds.shape}, {shared.shape}")
  fig, axes = _figure(1, 1, (max(5.0, 0.5 * num_layers + 2), 4.0))
  ax = axes[0, 0]
  x = layers.astype(np.float64)
  for l in np.unique(layers):
    at = np.flatnonzero(layers == l)
    x[at] += (np.arange(at.size) - (at.size - 1) / 2) * min(0.8 / max(at.size, 1), 0.15)
  finite = np.isfinite(s)
  floor = np.nanmin(s) if finite.any() else 0.0
  for i, (key, (marker, label)) in enumerate(UNIT_MARKERS.items()):
    sel = (shared if key == "shared" else (kinds == key) & ~shared)
    if not sel.any():
      continue
    ax.scatter(x[sel & finite], s[sel & finite], marker=marker, s=18, color=f"C{i}",
               label=label)
    if (sel & ~finite).any():
      ax.scatter(x[sel & ~finite], np.full(int((sel & ~finite).sum()), floor), marker="x",
                 color=f"C{i}", alpha=0.6)
  ax.axhline(0.0, color="grey", lw=0.5)
  ax.set_xticks(np.arange(num_layers))
  ax.set_xlim(-0.6, num_layers - 0.4)
  ax.set_xlabel("layer (units side by side; × = excluded, no score)")
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.legend(fontsize="small")
  return _finish(fig, save)


def layer_profiles(profiles: Mapping[str, object], *, title: str = "layer profile",
                   ylabel: str = "min–max scaled score", save=None) -> Figure:
  """Layer profiles (e.g. {"trained": LayerProfile, "random init": LayerProfile}) over depth.

  Each value is a LayerProfile or a dict with "depth", "mean" and optionally "ci_low" and
  "ci_high" (the band is that interval, e.g. a prompt bootstrap) or else "sd" (band mean ± sd
  across the layer's heads).
  """
  fig, axes = _figure(1, 1, (5.5, 4.0))
  ax = axes[0, 0]
  for i, (label, p) in enumerate(profiles.items()):
    d = p if isinstance(p, Mapping) else p.to_dict()
    x, m = np.asarray(d["depth"]), np.asarray(d["mean"])
    color = COLORS.get(label.replace(" ", "_"), f"C{i}")
    ax.plot(x, m, "o-", color=color, label=label)
    if d.get("ci_low") is not None and d.get("ci_high") is not None:
      ax.fill_between(x, np.asarray(d["ci_low"], float), np.asarray(d["ci_high"], float),
                      color=color, alpha=0.2, lw=0)
    elif d.get("sd") is not None:
      sd = np.asarray(d["sd"])
      ax.fill_between(x, m - sd, m + sd, color=color, alpha=0.2, lw=0)
  ax.set_xlabel("normalised depth")
  ax.set_ylabel(ylabel)
  ax.set_xlim(-0.02, 1.02)
  ax.set_title(title)
  ax.legend()
  return _finish(fig, save)


def _step_norm(steps: np.ndarray):
  """Colour scale of training steps: logarithmic (0 kept, linear below 1) when steps span more
  than two decades, as Pythia's 0, 1, 2, 4, …, 143000 do; else linear."""
  lo, hi = float(steps.min()), float(max(steps.max(), steps.min() + 1))
  if lo >= 0 and hi > 100 * max(lo, 1):
    return colors.SymLogNorm(linthresh=1.0, vmin=lo, vmax=hi, base=10)
  return colors.Normalize(vmin=lo, vmax=hi)


def emergence_profiles(steps: Sequence[int], means: Sequence[np.ndarray], depth: np.ndarray, *,
                       save=None, ylabel: str = "scaled rank score (0..1)",
                       title: str = "", max_curves: int = 12) -> Figure:
  """Layer profiles across training: curves coloured by step (at most ``max_curves`` of them,
  evenly spread over the checkpoints) and, beside them, every checkpoint as a layer × checkpoint
  heatmap."""
  steps = np.asarray(steps)
  if len(means) != steps.size:
    raise ValueError(f"{len(means)} profiles for {steps.size} steps")
  fig, axes = _figure(2, 1, (5.0, 3.8))
  ax, hx = axes[0, 0], axes[0, 1]
  norm = _step_norm(steps)
  cmap = matplotlib.colormaps["viridis"]
  shown = np.unique(np.linspace(0, steps.size - 1, min(max_curves, steps.size)).round().astype(int))
  for k in shown:
    ax.plot(depth, means[k], "-", color=cmap(norm(steps[k])), lw=1.5, alpha=0.85)
  fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="training step")
  ax.set_xlabel("normalised depth (0 = first layer, 1 = last)")
  ax.set_ylabel(ylabel)
  ax.set_title(f"{len(shown)} of {steps.size} checkpoints", fontsize=9)
  grid = np.stack([np.asarray(m, np.float64) for m in means], axis=1)  # (L, S)
  im = hx.imshow(grid, aspect="auto", origin="lower", cmap="magma", interpolation="nearest")
  fig.colorbar(im, ax=hx, label=ylabel)
  # every checkpoint labelled while the rotated labels fit; else about 12, evenly spread
  ticks = (np.arange(steps.size) if steps.size <= 16 else
           np.unique(np.linspace(0, steps.size - 1, 12).round().astype(int)))
  hx.set_xticks(ticks, [str(int(steps[k])) for k in ticks], rotation=45, ha="right", fontsize=7)
  hx.set_xlabel("checkpoint (training step)")
  hx.set_ylabel("layer (0 = input side)")
  hx.set_title("all checkpoints", fontsize=9)
  fig.suptitle(f"layer profile during training{' — ' + title if title else ''}", fontsize=10)
  return _finish(fig, save)


def emergence_trend(steps: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
                    labels: Sequence[str] | None = None, title: str = "", save=None) -> Figure:
  """Statistics of each checkpoint's profile against training step, one panel each.

  steps: (S,) training steps (log axis, step 0 drawn on its linear part), or positions
  0..S-1 when ``labels`` names checkpoints that have no step number (categorical axis).
  series: {name: (S,) values}; None or NaN values are gaps.
  """
  x = np.asarray(steps, np.float64)
  fig, axes = _figure(len(series), 1, (4.4, 3.4))
  for ax, (name, values) in zip(axes[0], series.items()):
    y = np.array([np.nan if v is None else v for v in values], np.float64)
    ax.plot(x, y, "o-", ms=3, lw=1.2, color=COLORS["trained"])
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--", label="0 (no effect)")
    if labels is None:
      log = isinstance(_step_norm(x), colors.SymLogNorm)
      if log:
        ax.set_xscale("symlog", linthresh=1.0)
        # room beyond the last checkpoint, so its marker is not cut by the frame
        ax.set_xlim(left=-0.3 if x.min() == 0 else None, right=np.nanmax(x) * 1.5)
      ax.set_xlabel("training step" + (" (log scale; 0 = initialisation)" if log else ""))
    else:
      ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
      ax.set_xlabel("checkpoint")
    ax.set_ylabel(name)
    ax.set_title(name, fontsize=10)
    ax.legend(fontsize=7, loc="best")
  if title:
    fig.suptitle(f"profile statistics during training — {title}", fontsize=10)
  return _finish(fig, save)


def diagnostics_scatter(synergy, redundancy, autocorr=None, *, rho_syn_red: float | None = None,
                        rho_ac_syn: float | None = None, title: str | None = None,
                        save=None) -> Figure:
  """Per-head synergy vs redundancy (and lag-1 autocorrelation vs synergy), Spearman ρ in titles."""
  n = 1 if autocorr is None else 2
  fig, axes = _figure(n, 1, (4.2, 3.8))
  ax = axes[0, 0]
  ax.scatter(redundancy, synergy, s=12, alpha=0.7)
  ax.set_xlabel("redundancy (mean rtr, nats)")
  ax.set_ylabel("synergy (mean sts, nats)")
  ax.set_title("synergy vs redundancy" + (f" (ρ = {rho_syn_red:.2f})" if rho_syn_red is not None
                                          else ""))
  if autocorr is not None:
    ax = axes[0, 1]
    ax.scatter(autocorr, synergy, s=12, alpha=0.7, color="C1")
    ax.set_xlabel("lag-1 autocorrelation")
    ax.set_ylabel("synergy (mean sts, nats)")
    ax.set_title("autocorrelation vs synergy" + (f" (ρ = {rho_ac_syn:.2f})"
                                                  if rho_ac_syn is not None else ""))
  if title:
    fig.suptitle(title)
  return _finish(fig, save)


def graph_metrics_bar(metrics: Mapping[str, Mapping[str, float]], *,
                      keys: Sequence[str] = ("efficiency", "modularity"),
                      edge_fraction: float | None = None, save=None) -> Figure:
  """Grouped bars: one group per metric, one bar per graph (e.g. "trained synergy", "random
  redundancy"). Synergy graphs are red, redundancy graphs blue; graphs whose name starts with
  "random" (the random-init baseline) are hatched. edge_fraction: the share of strongest pair
  edges kept, named in the title."""
  names = list(metrics)
  fig, axes = _figure(1, 1, (5.0, 3.8))
  ax = axes[0, 0]
  width = 0.8 / max(len(names), 1)
  for i, name in enumerate(names):
    vals = [float(metrics[name][k]) for k in keys]
    kind = "synergistic" if "synergy" in name else "redundant" if "redundancy" in name else None
    baseline = name.startswith("random")
    ax.bar(np.arange(len(keys)) + i * width, vals, width, label=name,
           color=COLORS[kind] if kind else f"C{i}", alpha=0.45 if baseline else 1.0,
           hatch="//" if baseline else None, edgecolor="black" if baseline else None, lw=0.5)
  ax.set_xticks(np.arange(len(keys)) + width * (len(names) - 1) / 2, list(keys))
  ax.set_ylabel("metric value (unitless, 0–1)")
  kept = "the strongest pair edges" if edge_fraction is None else (
      f"the strongest {edge_fraction:.0%} of pair edges")
  ax.set_title(f"graph of {kept}" + ("\n(hatched: random-init baseline)"
                                     if any(n.startswith("random") for n in names) else ""))
  ax.legend(fontsize="small")
  return _finish(fig, save)


def _with_ci(ax, x, mean, low=None, high=None, **kw):
  line, = ax.plot(x, mean, "o-", **kw)
  if low is not None and high is not None:
    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, lw=0)
  return line


def _scale_note(ax, values) -> str:
  """The y-axis span relative to the data's mean, for a panel title: a zoomed axis must not make a
  1 % change look like a jump."""
  lo, hi = ax.get_ylim()
  v = np.asarray(values, np.float64)
  mean = float(np.nanmean(np.abs(v))) if np.isfinite(v).any() else 0.0
  rel = f" ({100 * (hi - lo) / mean:.1f}% of the mean)" if mean > 0 else ""
  return f"y axis spans {hi - lo:.3g}{rel}"


def phase_sweep(levels, order_parameter: Mapping[str, np.ndarray], susceptibility,
                accuracy: Mapping[str, np.ndarray] | None = None, *,
                order_name: str = "order parameter", fit_curve=None, threshold=None,
                threshold_ci=None, title: str = "", ci_level: float = 0.95, save=None) -> Figure:
  """Order parameter (mean, ci_low, ci_high) with CIs, susceptibility and accuracy vs difficulty.

  Args:
    levels: (K,) difficulty levels.
    order_parameter: {"mean": (K,), "ci_low": (K,), "ci_high": (K,)}.
    susceptibility: (K,) variance across prompts per level.
    accuracy: optional {"mean", "ci_low", "ci_high"} per level, in [0, 1].
    fit_curve: optional (x (M,), y (M,)) fitted logistic drawn over the order parameter.
    threshold, threshold_ci: drawn as a vertical line and band when a transition is supported.
    title: the figure's title (e.g. which model); ci_level: coverage of the bands.
  """
  lv = np.asarray(levels, dtype=np.float64)
  n = 3 if accuracy is not None else 2
  fig, axes = _figure(n, 1, (4.2, 3.6))
  ax = axes[0, 0]
  band = f"{ci_level:.0%} bootstrap CI over prompts (band)"
  _with_ci(ax, lv, order_parameter["mean"], order_parameter.get("ci_low"),
           order_parameter.get("ci_high"), color="C3", label=f"mean over prompts; {band}")
  if fit_curve is not None:
    ax.plot(fit_curve[0], fit_curve[1], "k--", lw=1, label="logistic fit")
  for a in axes[0]:
    if threshold is not None:
      a.axvline(threshold, color="k", lw=0.8)
      if threshold_ci is not None:
        a.axvspan(threshold_ci[0], threshold_ci[1], color="k", alpha=0.08)
  if threshold is not None:
    ax.plot([], [], color="k", lw=0.8, label="threshold (grey: its CI)")
  ax.set_xlabel("difficulty")
  ax.set_ylabel(order_name)
  ax.legend(fontsize=7, loc="best")
  ax.set_title(f"{order_name}\n{_scale_note(ax, order_parameter['mean'])}", fontsize=8)
  ax = axes[0, 1]
  ax.plot(lv, susceptibility, "s-", color="C0")
  ax.set_xlabel("difficulty")
  ax.set_ylabel("variance across prompts")
  ax.set_title("susceptibility", fontsize=9)
  if accuracy is not None:
    ax = axes[0, 2]
    _with_ci(ax, lv, accuracy["mean"], accuracy.get("ci_low"), accuracy.get("ci_high"), color="C2",
             label=f"{ci_level:.0%} bootstrap CI (band)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("difficulty")
    ax.set_ylabel("exact-match accuracy")
    ax.set_title("task accuracy (greedy)", fontsize=9)
    ax.legend(fontsize=7)
  for a in axes[0]:
    a.set_xticks(lv)
  if title:
    fig.suptitle(title, fontsize=10)
  return _finish(fig, save)


def divergence_curves(fractions, synergistic, redundant, random, *, save=None,
                      ylabel: str = "KL(original ‖ ablated), nats", title: str = "",
                      units: str = "heads") -> Figure:
  """Behaviour divergence vs ablated fraction; random orders as mean ± sd band (random (R, F)).
  units: what was ablated, for the x label ("heads", "experts", "heads and experts")."""
  fr = np.asarray(fractions)
  rnd = np.atleast_2d(np.asarray(random, dtype=np.float64))
  fig, axes = _figure(1, 1, (5.0, 3.8))
  ax = axes[0, 0]
  ax.plot(fr, synergistic, "o-", color=COLORS["synergistic"], label="most synergistic first")
  ax.plot(fr, redundant, "o-", color=COLORS["redundant"], label="most redundant first")
  m, sd = rnd.mean(0), (rnd.std(0, ddof=1) if rnd.shape[0] > 1 else np.zeros(rnd.shape[1]))
  ax.plot(fr, m, "-", color=COLORS["random"], label=f"random ({rnd.shape[0]} orders, ±sd)")
  ax.fill_between(fr, m - sd, m + sd, color=COLORS["random"], alpha=0.25, lw=0)
  ax.set_xlabel(f"fraction of {units} ablated")
  ax.set_ylabel(ylabel)
  ax.set_title(title or "behaviour divergence under zero ablation", fontsize=9)
  ax.legend(fontsize=8)
  return _finish(fig, save)


def perturbation_accuracy(sigmas, levels, accuracy: Mapping[str, np.ndarray], *,
                          ci: Mapping[str, tuple] | None = None, save=None, title: str = "",
                          sigma_label: str = "noise σ", level_label: str = "level",
                          ci_text: str = "CI") -> Figure:
  """Accuracy vs noise σ, one panel per difficulty level, one line per condition.

  Args:
    sigmas: (S,) noise scales; levels: (K,) difficulty levels.
    accuracy: {condition: (S, K) mean accuracy}, e.g. synergistic / redundant / random.
    ci: optional {condition: ((S, K) low, (S, K) high)}, drawn as bands (``ci_text`` says which).
    title: the figure title (e.g. task family and model); sigma_label: the x axis (e.g. "σ,
    relative to the q/o weight RMS"); level_label: panel titles ("difficulty rank", "level k").
  """
  sg, lv = np.asarray(sigmas), list(levels)
  ncols = min(len(lv), 4)
  nrows = -(-len(lv) // ncols)
  fig, axes = _figure(ncols, nrows, (3.2, 3.0))
  flat = axes.ravel()
  for ax in flat[len(lv):]:
    ax.set_visible(False)
  for k, ax in enumerate(flat[:len(lv)]):
    for i, (cond, acc) in enumerate(accuracy.items()):
      acc = np.asarray(acc)
      if acc.shape != (sg.size, len(lv)):
        raise ValueError(f"accuracy[{cond!r}] must be (S, K) = ({sg.size}, {len(lv)}), got {acc.shape}")
      lo_hi = ci.get(cond) if ci else None
      _with_ci(ax, sg, acc[:, k], None if lo_hi is None else np.asarray(lo_hi[0])[:, k],
               None if lo_hi is None else np.asarray(lo_hi[1])[:, k],
               color=COLORS.get(cond, f"C{i}"), label=cond)
    ax.set_title(f"{level_label} {lv[k]}", fontsize=9)
    ax.set_xlabel(sigma_label, fontsize=7)
    ax.set_xticks(sg)
    ax.set_ylim(-0.02, 1.02)
  for ax in axes[:, 0]:
    ax.set_ylabel("exact-match accuracy")
  # One legend beside the panels (inside one, it covered curves and tick labels).
  last = flat[len(lv) - 1]
  if ci:
    last.plot([], [], " ", label=f"bands: {ci_text}")
  handles, names = last.get_legend_handles_labels()
  fig.legend(handles, names, loc="outside lower center", ncols=len(handles), fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  return _finish(fig, save)


def robustness_panel(variants, depth, *, title: str = "", save=None) -> Figure:
  """Small multiples of the robustness panel: one axes per (kind, preprocess), one line per score
  with its 95% prompt-bootstrap band; "*" in a legend entry marks a significant inverted U.

  variants: rows of ``pipeline.robustness.run_variants`` (kind, preprocess, score, status,
  layer_profile, ci_low, ci_high, inverted_u); depth: (L,) normalised depth; title: which model
  or activity (in the figure title).
  """
  kinds = list(dict.fromkeys(v["kind"] for v in variants))
  preps = list(dict.fromkeys(v["preprocess"] for v in variants))
  fig, axes = _figure(len(preps), len(kinds), (3.2, 2.6))
  scores = list(dict.fromkeys(v["score"] for v in variants))
  for r, kind in enumerate(kinds):
    for c, prep in enumerate(preps):
      ax = axes[r, c]
      rows = [v for v in variants if v["kind"] == kind and v["preprocess"] == prep]
      ax.set_title(f"{kind} / {prep}", fontsize=9)
      ax.set_xlim(-0.02, 1.02)
      if not rows:
        ax.set_visible(False)
        continue
      for v in rows:
        low = None if v.get("ci_low") is None else np.asarray(v["ci_low"], float)
        high = None if v.get("ci_high") is None else np.asarray(v["ci_high"], float)
        _with_ci(ax, depth, np.asarray(v["layer_profile"], float), low, high,
                 color=f"C{scores.index(v['score'])}", ms=3,
                 label=v["score"] + (" *" if v["inverted_u"] else ""))
      ax.set_ylim(-0.05, 1.05)
      ax.legend(fontsize=6, loc="best")
      if r == len(kinds) - 1:
        ax.set_xlabel("normalised depth", fontsize=8)
      if c == 0:
        ax.set_ylabel("scaled score", fontsize=8)
  fig.suptitle(f"layer profiles across estimators{' — ' + title if title else ''} (band: 95% "
               "prompt-bootstrap CI; * significant inverted U)", fontsize=9)
  return _finish(fig, save)


def local_atoms(sts: np.ndarray, rtr: np.ndarray, labels: Sequence[str], *,
                tokens: Sequence[str] | None = None, title: str = "", save=None) -> Figure:
  """Per-token sts and rtr of a few heads in one prompt: (H, S) each, one line per head.

  labels: (H,) legend entries (e.g. "L2 H5 (synergistic)"); tokens: optional (S,) text of the
  token each step arrives at, written under the x axis (every token when S is small)."""
  sts, rtr = np.asarray(sts, float), np.asarray(rtr, float)
  fig, axes = _figure(1, 2, (max(6.0, 0.09 * sts.shape[1] + 2.0), 2.6))
  steps = np.arange(sts.shape[1])
  for ax, vals, name in ((axes[0, 0], sts, "local sts (nats)"), (axes[1, 0], rtr,
                                                                 "local rtr (nats)")):
    for h, lab in enumerate(labels):
      ax.plot(steps, vals[h], lw=0.9, label=lab,
              ls="-" if "synergistic" in lab else "--")
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_ylabel(name)
  axes[0, 0].set_title(title, fontsize=9)
  axes[0, 0].legend(fontsize=7, ncol=2, loc="upper right")
  axes[1, 0].set_xlabel("generated token (step s → s + τ)")
  if tokens is not None:
    every = max(1, len(tokens) // 60)
    axes[1, 0].set_xticks(steps[::every])
    axes[1, 0].set_xticklabels([repr(t)[1:-1] or "·" for t in list(tokens)[::every]],
                               fontsize=6, rotation=90)
  return _finish(fig, save)
