"""One trained model's measurements, shared by the engineer and scale experiments: the profile
against its random-init baseline (matched inputs, surrogate null, depth trend, reliability; all
``pipeline.profile``), the core contrast and the training objective J on the profile's activity,
greedy task accuracy per family × level (the training loop's teacher-forced exact match) and,
optionally, the ablation damage of synergistic vs random heads (``pipeline.ablation``)."""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from synergy_jax import analysis, phiid, tasks
from synergy_jax.pipeline import profile, specs
from synergy_jax.pipeline.engineer.config import MeasureConfig
from synergy_jax.training import synergy


@dataclasses.dataclass(frozen=True)
class ModelMeasures:
  """Scalars and small arrays of one model (all JSON-able through ``to_dict``).

  core_contrast: ``analysis.core_contrast`` of the ranking score (min–max scaled; middle third
  minus outer layers), NaN below 3 layers; objective: the training term J (nats) evaluated on
  the profile's generated activity (all ordered pairs, prompts averaged); depth_trend: the
  ranking score's (and, with the null, the excess score's) depth-trend test; reliability:
  split-half Spearman ρ of the ranking score; baseline: the same four for the random-init model;
  accuracy: {"family/k": exact match}, accuracy_by_rank: (R,) means over families at each
  difficulty rank, accuracy_mean; ablation: AUC ratios and perturbed accuracy, or None.
  """
  n_params: int
  num_layers: int
  num_heads: int
  core_contrast: float
  objective: float
  depth_trend: dict
  reliability: float | None
  verdict: str
  baseline: dict
  accuracy: dict
  accuracy_by_rank: list
  accuracy_mean: float
  ablation: dict | None
  layer_balance: list

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def objective_of_atoms(atoms: np.ndarray, num_layers: int, num_heads: int,
                       target: str = synergy.CORE) -> tuple[float, np.ndarray]:
  """J and the (L,) layer balance from all-pairs atoms (U, U, 16): partner means over v ≠ u of
  sts and rtr (NaN pairs left out), as the training term defines them."""
  a = np.asarray(atoms, np.float64)
  off = ~np.eye(a.shape[0], dtype=bool)
  syn = np.array([np.nanmean(a[u, off[u], phiid.ATOMS.index("sts")]) for u in range(a.shape[0])])
  red = np.array([np.nanmean(a[u, off[u], phiid.ATOMS.index("rtr")]) for u in range(a.shape[0])])
  beta = np.asarray(synergy.layer_balance(syn, red, num_layers, num_heads))
  if target == synergy.CORE and num_layers < 3:
    return float("nan"), beta
  return float(synergy.objective_value(beta, synergy.parse_target(target, num_layers))), beta


def _core(res: "profile.ProfileResult", ranking: str) -> float:
  if res.num_layers < 3:
    return float("nan")
  return analysis.core_contrast(res.all_scores[ranking], res.num_layers, res.num_heads)


def _reliability(res: "profile.ProfileResult", ranking: str) -> float | None:
  rel = (res.summary.get("reliability") or {}).get(ranking) or {}
  return rel.get("rho")


def _trend(res: "profile.ProfileResult") -> dict:
  out = {}
  for k, v in (res.summary.get("depth_trend") or {}).items():
    out[k] = {f: v.get(f) for f in ("curvature", "ci", "p_value", "peak_depth", "inverted_u",
                                    "unavailable") if f in v}
  return out


def accuracy_of(model, n: int, seed: int) -> tuple[dict, list, float]:
  """Greedy exact match per family × level (``n`` examples each; the training loop's
  teacher-forced check, equivalent to greedy decoding: ``loop.exact_match``, one compiled
  forward pass), per-difficulty-rank means over families, and the overall mean."""
  from synergy_jax.training import loop
  eval_set = loop.make_eval_set(n, seed)
  correct = np.asarray(loop.exact_match(model, eval_set.ids, eval_set.answer_mask))
  table = loop.accuracy_table(correct, eval_set.keys)
  acc = {f"{f}/{k}": table[f"acc_{f}_{k}"] for f in tasks.FAMILIES for k in tasks.levels(f)}
  by_rank = [float(np.mean([acc[f"{f}/{tasks.levels(f)[r]}"] for f in tasks.FAMILIES
                            if r < len(tasks.levels(f))]))
             for r in range(max(len(tasks.levels(f)) for f in tasks.FAMILIES))]
  return acc, by_rank, float(np.mean(list(acc.values())))


def _ablation(model_dir, prompts, config: MeasureConfig, cache_dir, progress) -> dict:
  from synergy_jax.pipeline import ablation
  spec = specs.resolve_model(str(model_dir), seed=config.ablation.seed)
  res = ablation.analyse_ablation(spec, prompts, config.ablation, cache_dir, progress=progress)
  s = res.summary
  pert = s.perturbation
  top = {c: float(np.mean(np.asarray(pert.seed_accuracy[c])[-1])) for c in pert.conditions}
  return {"auc_ratio_synergistic": s.auc_ratio["ratio"],
          "auc_ratio_synergistic_ci": [s.auc_ratio["ci_low"], s.auc_ratio["ci_high"]],
          "auc_ratio_redundant": s.auc_ratio_redundant["ratio"],
          "perturbed_accuracy": top, "sigma": float(pert.sigmas[-1]),
          "definition": "AUC of the divergence curve when ablating most-synergistic-first over "
                        "the mean AUC of random orders (> 1: synergistic heads do more damage); "
                        "perturbed_accuracy: greedy exact match with noise of the largest sigma "
                        "in the top synergistic / redundant / random heads"}


def measure_model(model_dir, config: MeasureConfig, cache_dir, *, target: str = synergy.CORE,
                  progress: Callable | None = None) -> ModelMeasures:
  """Profiles (cached), reads the card's accuracy and (optionally) runs the ablation."""
  prompts = profile.profile_prompts(per_category=config.per_category)
  pc = config.profile
  profiles, spec = profile.profile_pair(str(model_dir), prompts, pc, cache_dir=cache_dir,
                                        baseline=True, progress=progress)
  tr, rnd = profiles["trained"], profiles["random"]
  L, H = tr.num_layers, tr.num_heads
  j, beta = objective_of_atoms(tr.atoms, L, H, target)
  j_rnd, _ = objective_of_atoms(rnd.atoms, L, H, target)
  acc, by_rank, mean = accuracy_of(spec.model, config.accuracy_examples, config.accuracy_seed)
  abl = _ablation(model_dir, prompts, config, cache_dir, progress) if config.ablation else None
  from synergy_jax.pipeline.engineer.trained import parameter_count
  return ModelMeasures(
      n_params=parameter_count(spec.model), num_layers=L, num_heads=H,
      core_contrast=_core(tr, pc.ranking), objective=j, depth_trend=_trend(tr),
      reliability=_reliability(tr, pc.ranking), verdict=tr.summary["verdict"],
      baseline={"core_contrast": _core(rnd, pc.ranking), "objective": j_rnd,
                "depth_trend": _trend(rnd), "reliability": _reliability(rnd, pc.ranking)},
      accuracy=acc, accuracy_by_rank=by_rank, accuracy_mean=mean, ablation=abl,
      layer_balance=beta.tolist())
