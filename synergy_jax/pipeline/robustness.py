"""Does the inverted U survive a change of estimator? One capture, then the profile under every
estimator kind × preprocessing, each read on every score (rank difference, balance, excess).

Every variant reuses the cached activity, and its atoms, per-prompt values and surrogate moments
are cached by the variant's ``PhiidConfig.cache_key`` (``profile.profile_cached``), so the panel
costs the estimators and nothing more, and a re-run costs almost nothing. A variant the estimator
does not implement yet is recorded as such (with the estimator's message), never dropped.
"""
from __future__ import annotations

import dataclasses
import itertools
import pathlib
from typing import Callable

import numpy as np

from synergy_jax import analysis, plots, results
from synergy_jax.analysis import uncertainty
from synergy_jax.pipeline import profile, specs
from synergy_jax.pipeline.profile_report import SCORE_LABELS, inverted_u_supported
from synergy_jax.pipeline.text import fmt

KINDS = ("gaussian", "copula", "discrete")
PREPROCESS = ("none", "detrend", "diff")


@dataclasses.dataclass(frozen=True)
class RobustnessConfig:
  """profile: the base ProfileConfig (its phiid gives tau, redundancy, pool, bias correction);
  kinds, preprocess: the grid; scores: the per-head scores read in every variant."""
  profile: profile.ProfileConfig
  kinds: tuple = KINDS
  preprocess: tuple = PREPROCESS
  scores: tuple = uncertainty.SCORES

  def __post_init__(self):
    for name, allowed in (("kinds", KINDS), ("preprocess", PREPROCESS),
                          ("scores", uncertainty.SCORES)):
      bad = [v for v in getattr(self, name) if v not in allowed]
      if bad or not getattr(self, name):
        raise ValueError(f"RobustnessConfig.{name}={getattr(self, name)!r}: choose a non-empty "
                         f"subset of {allowed}")
    if "excess" in self.scores and self.profile.n_surrogates < 2:
      raise ValueError("the excess score needs the surrogate null: n_surrogates >= 2")

  def variant(self, kind: str, preprocess: str) -> profile.ProfileConfig:
    """The ProfileConfig of one grid cell (bias correction only for the Gaussian kinds)."""
    pc = self.profile.phiid.replace(
        kind=kind, preprocess=preprocess,
        bias_correction=self.profile.phiid.bias_correction and kind != "discrete")
    return dataclasses.replace(self.profile, phiid=pc, ranking="rank_difference", tau=None,
                               redundancy=None, pool=None)


def _variant_rows(res: "profile.ProfileResult", kind: str, preprocess: str, scores) -> list:
  s = res.summary
  rows = []
  for score in scores:
    ci = (s.get("layer_profile_ci") or {}).get(score) or {}
    rows.append({"kind": kind, "preprocess": preprocess, "score": score, "status": "ok",
                 "layer_profile": res.ci[score].estimate if score in res.ci else
                 analysis.layer_profile(res.all_scores[score], res.units).mean,
                 "ci_low": ci.get("ci_low"), "ci_high": ci.get("ci_high"),
                 "depth_trend": (s.get("depth_trend") or {}).get(score),
                 "curvature_ci_prompts": ci.get("curvature_ci"),
                 "reliability": (s.get("reliability") or {}).get(score),
                 "inverted_u": inverted_u_supported(s, score),
                 "syn_red_spearman": s["syn_red_spearman"]["rho"],
                 "autocorr_syn_spearman": s.get("autocorr_syn_spearman", {}).get("rho")})
  return rows


def run_variants(acts: np.ndarray, units: "analysis.units.Units", config: RobustnessConfig,
                 cache_dir, progress: Callable | None = None) -> list[dict]:
  """One row per kind × preprocess × score of the (P, U, T) activity of ``units``: settings,
  layer profile (one value per layer of the model) with intervals, depth trend, reliability and
  the inverted-U decision. An estimator error is raised, naming the variant."""
  rows = []
  for kind, prep in itertools.product(config.kinds, config.preprocess):
    cfg = config.variant(kind, prep)
    try:
      res = profile.profile_cached(acts, units, cfg, pathlib.Path(cache_dir),
                                   specs.labelled(progress, f"variant {kind}/{prep}"))
    except ValueError as e:
      raise ValueError(f"robustness variant kind={kind}, preprocess={prep}: {e}") from e
    rows += _variant_rows(res, kind, prep, config.scores)
  return rows


def summary_markdown(rows: list[dict], meta: dict) -> str:
  """summary.md: the count of variants with a significant inverted U first, then the table."""
  done = [r for r in rows if r["status"] == "ok"]
  sig = [r for r in done if r["inverted_u"]]
  lines = ["# Robustness of the inverted U", "",
           f"**Significant inverted U in {len(sig)} of {len(done)} variants** (estimator kind × "
           f"preprocessing × score; significant = permutation p < 0.05, negative curvature, "
           f"interior peak and a prompt-bootstrap curvature interval below 0)."]
  lines += ["", "| kind | preprocess | score | layer profile | curvature [prompt CI] | p | "
            "reliability | inverted U |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    tr = r["depth_trend"] or {}
    pci = r["curvature_ci_prompts"] or [None, None]
    rel = (r["reliability"] or {}).get("spearman_brown")
    lines.append(f"| {r['kind']} | {r['preprocess']} | {r['score']} | "
                 f"{' '.join(fmt(v, 2, 'f') for v in r['layer_profile'])} | "
                 f"{fmt(tr.get('curvature'), 2, 'f')} [{fmt(pci[0], 2, 'f')}, {fmt(pci[1], 2, 'f')}] | "
                 f"{fmt(tr.get('p_value'), 3, 'f')} | {fmt(rel, 2, 'f')} | "
                 f"{'yes' if r['inverted_u'] else 'no'} |")
  lines += ["", "Scores: " + "; ".join(f"{k}: {v}" for k, v in SCORE_LABELS.items()), ""]
  lines += ["Settings:", ""] + [f"- {k}: `{v}`" for k, v in meta.items()]
  return "\n".join(lines) + "\n"


def write_robustness(run_dir, rows: list[dict], num_layers: int, meta: dict) -> dict:
  """results.json (``variants``), robustness.csv, robustness.png and summary.md."""
  run_dir = pathlib.Path(run_dir)
  out = {"config": meta, "variants": rows,
         "n_variants": sum(r["status"] == "ok" for r in rows),
         "n_inverted_u": sum(bool(r.get("inverted_u")) for r in rows)}
  results.write_json(run_dir / "results.json", out)
  results.write_csv(run_dir / "robustness.csv",
                    [{"kind": r["kind"], "preprocess": r["preprocess"], "score": r["score"],
                      "status": r["status"],
                      "curvature": (r.get("depth_trend") or {}).get("curvature"),
                      "p_value": (r.get("depth_trend") or {}).get("p_value"),
                      "inverted_u": r.get("inverted_u")} for r in rows])
  plots.robustness_panel(rows, analysis.profile.depth(num_layers), title=meta.get("source", ""),
                         save=run_dir / "robustness.png")
  results.write_text(run_dir / "summary.md", summary_markdown(rows, meta))
  return out


def run_robustness(model: str | None, prompts, config: RobustnessConfig, run_dir, *, cache_dir,
                   acts_path=None, dtype: str = "float32",
                   progress: Callable | None = None) -> dict:
  """The robustness experiment on a model's activity (one cached capture) or a recorded file."""
  cache_dir = pathlib.Path(cache_dir)
  if acts_path is not None:
    from synergy_jax.pipeline import acts_file
    rec = acts_file.load_acts(acts_path)
    acts, units, source = rec.acts, rec.units, f"acts:{rec.path}"
  else:
    spec = specs.resolve_model(model, dtype=dtype, seed=config.profile.seed)
    units = profile.model_units(spec, config.profile)
    act = profile.activity_cached(spec, prompts, config.profile, cache_dir,
                                  specs.labelled(progress, spec.label))
    acts, source = np.asarray(act["acts"]), spec.label
  rows = run_variants(acts, units, config, cache_dir, progress)
  meta = {"source": source, "prompts": int(acts.shape[0]), "unit_table": units.describe(),
          "kinds": list(config.kinds),
          "preprocess": list(config.preprocess), "scores": list(config.scores),
          "compute_dtype": profile.compute_dtype(), **config.profile.as_dict()}
  return write_robustness(run_dir, rows, units.num_layers, meta)
