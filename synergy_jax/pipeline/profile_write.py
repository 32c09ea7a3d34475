"""The profile's files: results.json, head_scores*.csv, layer_profile.csv, atoms*.npz, figures and
summary.md, all written atomically (``synergy_jax.results``)."""
from __future__ import annotations

import pathlib

import numpy as np

from synergy_jax import analysis, phiid, plots, results
from synergy_jax.analysis.report import unit_columns
from synergy_jax.pipeline.profile_report import SCORE_LABELS, summary_markdown

# Keys of the main model's summary repeated at the top level of results.json.
TOP_LEVEL = ("units", "layer_profile", "syn_red_spearman", "graph", "surrogates", "null", "excess",
             "depth_trend", "layer_profile_ci", "reliability", "degenerate_units", "verdict")


def _profile_with_ci(res, score: str) -> dict:
  """{"depth", "mean", "ci_low", "ci_high"} of one score for ``plots.layer_profiles``."""
  ci = res.ci.get(score)
  mean = analysis.layer_profile(res.all_scores[score], res.units).mean
  out = {"depth": analysis.profile.depth(res.num_layers), "mean": mean}
  if ci is not None:
    out.update(ci_low=ci.low, ci_high=ci.high)
  return out


def write_profile(run_dir: pathlib.Path, profiles: dict, tokenizer=None,
                  meta: dict | None = None) -> dict:
  """Writes results.json, head_scores*.csv, layer_profile.csv, atoms*.npz, figures, summary.md.

  head_scores*.csv have the unit columns (unit, layer, head for heads-only runs, name, kind,
  index, shared); atoms*.npz and local_atoms*.npz carry the unit table (``Units.to_arrays``
  keys; local_atoms the chosen units' columns); layer_profile.csv has every layer of the model
  (NaN where a layer has no units; n_units per layer); the figure of per-unit scores is the
  layer × head heatmap head_ranks.png for the head grid, else unit_scores.png.

  ``profiles`` maps a label ("trained", "random", "recorded") to its ProfileResult; the first is
  the main one. Returns the results dict written.
  """
  run_dir = pathlib.Path(run_dir)
  main_name = next(iter(profiles))
  main = profiles[main_name]
  out = {"config": meta or {}}
  for name, res in profiles.items():
    summ = dict(res.summary)
    tokens = summ.pop("tokens", None)
    suffix = "" if name == main_name else f"_{name}"
    results.write_csv(run_dir / f"head_scores{suffix}.csv", res.table)
    results.write_npz(run_dir / f"atoms{suffix}.npz", atoms=res.atoms,
                      atom_names=np.array(phiid.ATOMS), acts=res.acts, score=res.score,
                      **res.units.to_arrays())
    if tokens is not None and tokenizer is not None:
      texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
      results.write_json(run_dir / f"generations{suffix}.json", texts)
    if res.local is not None:
      loc = res.local
      chosen = {k: v[loc.heads] for k, v in unit_columns(res.units).items() if k != "unit"}
      results.write_npz(run_dir / f"local_atoms{suffix}.npz", heads=loc.heads, **chosen,
                        role=loc.role, sts=loc.sts, rtr=loc.rtr)
      if name == main_name:
        _local_figure(run_dir, res, tokens, tokenizer, _who(name, res))
    out[name] = summ
  for key in TOP_LEVEL:
    if key in out[main_name]:
      out[key] = out[main_name][key]
  if "random" in profiles:
    out["baseline_inputs"] = profiles["random"].summary.get("baseline_inputs")
  cols = {"layer": np.arange(main.num_layers), "depth": analysis.profile.depth(main.num_layers),
          "n_units": np.bincount(main.units.layer, minlength=main.num_layers)}
  for n, r in profiles.items():
    for score in r.all_scores:
      p = _profile_with_ci(r, score)
      cols[f"{n}_{score}_mean"] = p["mean"]
      if "ci_low" in p:
        cols[f"{n}_{score}_ci_low"], cols[f"{n}_{score}_ci_high"] = p["ci_low"], p["ci_high"]
  results.write_csv(run_dir / "layer_profile.csv", cols)
  results.write_json(run_dir / "results.json", out)
  _figures(run_dir, profiles)
  results.write_text(run_dir / "summary.md", summary_markdown(profiles, meta or {}))
  return out


def _figures(run_dir: pathlib.Path, profiles: dict) -> None:
  main_name = next(iter(profiles))
  main = profiles[main_name]
  who = _who(main_name, main)
  s = analysis.ranking.atom_matrix(main.atoms, "sts")
  r = analysis.ranking.atom_matrix(main.atoms, "rtr")
  plots.pair_heatmaps({"synergy (sts, nats)": s, "redundancy (rtr, nats)": r}, main.units.layer,
                      title=f"pairwise ΦID atoms, {who}", save=run_dir / "heatmaps.png")
  score = main.summary.get("score_name", "rank_difference")
  label = SCORE_LABELS.get(score, score)
  grid = main.units.grid_shape
  if grid is not None:
    plots.head_rank_heatmap(main.score, *grid, title=f"{label}\nper head, {who}",
                            save=run_dir / "head_ranks.png")
  else:
    u = main.units
    plots.unit_scores_by_layer(main.score, u.layer, u.kind, u.shared, u.num_layers,
                               title=f"{label}\nper unit ({u.describe()}), {who}", ylabel=label,
                               save=run_dir / "unit_scores.png")
  band = "95% prompt-bootstrap CI" if main.ci else "no interval (n_boot = 0)"
  plots.layer_profiles({n: _profile_with_ci(p, score) for n, p in profiles.items()},
                       title=f"{SCORE_LABELS.get(score, score)} by depth, {who}\n(band: {band})",
                       save=run_dir / "layer_profile.png")
  if "excess" in main.all_scores and score != "excess":
    plots.layer_profiles({n: _profile_with_ci(p, "excess") for n, p in profiles.items()},
                         title=f"{SCORE_LABELS['excess']} by depth, {who}\n(band: {band})",
                         save=run_dir / "excess_profile.png")
  diag = main.summary
  plots.diagnostics_scatter(main.scores.synergy, main.scores.redundancy,
                            main.table.get("autocorr_lag1"),
                            rho_syn_red=diag["syn_red_spearman"]["rho"],
                            rho_ac_syn=diag.get("autocorr_syn_spearman", {}).get("rho"),
                            title=f"per-head confounds, {who}", save=run_dir / "diagnostics.png")
  plots.graph_metrics_bar({f"{n} {k}": v for n, p in profiles.items()
                           for k, v in p.summary["graph"].items()},
                          edge_fraction=main.summary["graph"]["synergy"].get("edge_fraction"),
                          save=run_dir / "graph_metrics.png")


def _who(name: str, res) -> str:
  """'trained model default', 'random model random:default', 'recorded activity'."""
  label = res.summary.get("model")
  if name == "recorded":
    return "recorded activity"
  return f"{name} model" + (f" {label}" if label else "")


def _local_figure(run_dir: pathlib.Path, res, tokens, tokenizer, who: str) -> None:
  """local_atoms.png: per-token sts/rtr of the top heads in prompt 0, under its generated text."""
  loc = res.local
  labels = [f"{res.units.name(u)} ({r})" for u, r in zip(loc.heads, loc.role)]
  steps = loc.sts.shape[-1]
  text = None
  if tokens is not None and tokenizer is not None:
    gen = np.asarray(tokens)[0, -res.acts.shape[-1]:]  # the generated tokens of prompt 0
    text = [tokenizer.decode([int(t)]) for t in gen[-steps:]]  # the token each step arrives at
  plots.local_atoms(loc.sts[0], loc.rtr[0], labels, tokens=text,
                    title="per-token synergy and redundancy of the most synergistic and most "
                          f"redundant heads, prompt 0 ({who})",
                    save=run_dir / "local_atoms.png")
