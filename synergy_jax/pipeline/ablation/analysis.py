"""Ablation, analysis (ranking → divergence → perturbation → AblationResult): do synergistic units
matter more for behaviour and accuracy than redundant or random ones?

Units are ``config.units``: attention heads, the experts of a mixture-of-experts model (routed
and shared), or both (``analysis.units.Units``; results name them "L3 H2", "L3 E5", "L3 S0").

1. Ranking: the synergy–redundancy profile of the chosen units on the built-in prompt suite
   (activity → all-pairs ΦID → ``analysis.head_scores``), units ordered by rank difference or
   balance.
2. Behaviour divergence: for ablated fractions 0 … 1 of the units, units zero-ablated most
   synergistic first, most redundant first, and in random orders (a head through ``head_mask``,
   an expert through ``expert_mask``: its contribution removed, routing unchanged); the ablated
   model scores the original model's own generated continuation (teacher forcing), D = mean
   over prompts of the mean over tokens of KL(p_original ‖ p_ablated) in nats
   (``interventions.divergence_curves``: every mask of a prompt batch in one compiled call; the
   number of compilations is counted and reported).
3. Perturbation: Gaussian noise (``models.perturb_selected``, per kind) into the top 25 %
   synergistic, top 25 % redundant and random 25 % of the units, over a range of σ, each with
   several seeds (noise draws; for "random" also a new unit set per seed); greedy exact-match
   accuracy per task family × level. CIs: percentile bootstrap resampling seeds and examples
   independently (two-way).

σ is given relative to the RMS of the unit weights of each unit's own kind by default
(``sigma_scale="relative"``: heads' query- and output-projection weights, experts' gate, up and
down weights), so the same σ values mean the same damage across models; the RMS values and the
absolute SDs used are reported per kind.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable, Sequence

import numpy as np

from synergy_jax import interventions
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import capture, specs, typed
from synergy_jax.pipeline.ablation.config import CONDITIONS, AblationConfig, perturbation_examples
from synergy_jax.pipeline.ablation.divergence import (DivergenceSummary, auc_ratios,
                                                      backend_compiles, divergence, head_ranking,
                                                      summarise_divergence)
from synergy_jax.pipeline.ablation.perturbation import (PerturbationSummary, noise_scales,
                                                        perturbation_accuracy,
                                                        summarise_perturbation)
from synergy_jax.tasks import batching


def units_record(table: Units, which: str) -> dict:
  """results.json → units: {"which" (``--units``), "description" ("6 heads + 10 experts (2
  shared)"), "num_layers", and per unit (U,): "names" ("L3 E5"), "kind", "layer", "index",
  "shared"} (the table's order: index u of every (U,) array and unit set)."""
  return {"which": which, "description": table.describe(), "num_layers": table.num_layers,
          "names": table.names, "kind": table.kind.tolist(), "layer": table.layer.tolist(),
          "index": table.index.tolist(), "shared": table.shared.tolist()}


def _units_of(data: dict, where: str) -> dict:
  """The "units" record of a results dict; files of earlier versions name the head grid by
  "num_layers" and "num_heads" instead."""
  if "units" in data:
    return data["units"]
  if "num_layers" in data and "num_heads" in data:
    return units_record(Units.grid(int(data["num_layers"]), int(data["num_heads"])), "heads")
  raise ValueError(f"{where}: missing key 'units' (AblationSummary)")


@dataclasses.dataclass(frozen=True)
class AblationSummary:
  """results.json of the ablation experiment (field names are its keys, in its order).

  units: ``units_record`` (which units, their names and table); head_scores {"score" (U,)
  higher = more synergistic, "synergy", "redundancy", "rank_score",
  "balance" (U,), "excluded": units}; divergence: DivergenceSummary; auc_ratio,
  auc_ratio_redundant: ``interventions.auc_ratio`` records {"ratio", "ci_low", "ci_high",
  "ci_level", "n_random", ...}; perturbation: PerturbationSummary; timing_s {"ranking",
  "divergence", "perturbation"} seconds; config: the AblationConfig as a dict; wall_s: the whole
  run's seconds (set by ``run_ablation``; absent from the JSON while None).
  """
  experiment: str
  model: str
  fingerprint: str
  units: dict
  ranking: str
  n_profile_prompts: int
  head_scores: dict
  divergence: DivergenceSummary
  auc_ratio: dict
  auc_ratio_redundant: dict
  perturbation: PerturbationSummary
  timing_s: dict
  config: dict
  wall_s: float | None = None

  def to_dict(self) -> dict:
    return typed.to_dict_unset_absent(self, "wall_s")

  @property
  def unit_table(self) -> Units:
    """The Units table of ``units`` (what index u of every (U,) array is)."""
    u = self.units
    return Units(u["layer"], u["index"], u["kind"], u["shared"], u["num_layers"])

  @classmethod
  def from_dict(cls, data, where: str = "ablation results") -> "AblationSummary":
    """The summary of a results.json dict (``read_ablation``); ValueError naming a missing key.
    Files of earlier versions (heads only, "num_layers" and "num_heads") read as units=heads."""
    if isinstance(data, dict):
      data = {**data, "units": _units_of(data, where)}
    kw = typed.field_values(cls, data, where)
    kw["divergence"] = DivergenceSummary.from_dict(kw["divergence"], f"{where} → divergence")
    kw["perturbation"] = PerturbationSummary.from_dict(kw["perturbation"],
                                                       f"{where} → perturbation")
    return cls(**kw)


def read_ablation(path) -> AblationSummary:
  """An ablation run's results.json (a file or its run directory) as an AblationSummary (files
  of earlier versions, heads only, read too). FileNotFoundError / ValueError naming the file."""
  path, data = typed.read_results(path, "ablation")
  return AblationSummary.from_dict(data, str(path))


@dataclasses.dataclass(frozen=True)
class AblationResult:
  """A finished ablation experiment. summary: results.json's content; correct: (C, S, R, E) bool
  exact matches, condition (``CONDITIONS``) × σ × seed × example."""
  summary: AblationSummary
  correct: np.ndarray


def analyse_ablation(spec: "specs.ModelSpec", prompts: Sequence[str], config: AblationConfig,
                     cache_dir, *, progress: Callable | None = None) -> AblationResult:
  """Ranking → divergence → perturbation of the units ``config.units``.

  Raises ValueError naming the model type when experts are asked of a dense model (before any
  generation)."""
  cache_dir = pathlib.Path(cache_dir)
  cfg = spec.model.config
  table = Units.of_config(cfg, config.units)
  layout = interventions.MaskLayout.of_config(cfg)
  t0 = time.time()
  rk = head_ranking(spec, prompts, config, cache_dir, progress)
  t_rank = time.time() - t0
  score = rk["score"]
  orders = interventions.ablation_orders(score, n_random=config.n_random, seed=config.seed)
  tokens, plen = batching.with_continuations(capture.encode_prompts(spec.tokenizer, prompts),
                                             rk["tokens"], cfg)
  t0 = time.time()
  div = divergence(spec.model, tokens, plen, orders, config.fractions,
                   divergence_batch=config.divergence_batch, mask_chunk=config.mask_chunk,
                   progress=progress, units=table)
  t_div = time.time() - t0
  d = summarise_divergence(div, orders)
  ratios = auc_ratios(d, n_boot=config.n_boot, ci_level=config.ci_level, seed=config.seed)

  t0 = time.time()
  n_random_sets = max(config.n_seeds, 1)
  sets = interventions.perturbation_unit_sets(score, fraction=config.perturb_fraction,
                                              n_random=n_random_sets, seed=config.seed + 1)
  select = lambda chosen: interventions.unit_selection(chosen, table, layout)
  selections = {"synergistic": select(sets["synergistic"]),
                "redundant": select(sets["redundant"]),
                "random": [select(u) for u in sets["random"]]}
  scales = noise_scales(spec.model, table, config.sigma_scale)
  noise = {k: {"weight_rms": rms, "sigmas_abs": [s * (1.0 if rms is None else rms)
                                                  for s in config.sigmas]}
           for k, rms in scales.items()}
  one_kind = next(iter(noise.values())) if len(noise) == 1 else None
  examples = perturbation_examples(config)
  compiles0 = backend_compiles()
  correct = perturbation_accuracy(spec.model, spec.tokenizer, examples, selections,
                                  {k: v["sigmas_abs"] for k, v in noise.items()},
                                  n_seeds=config.n_seeds, seed=config.seed, progress=progress)
  pert = dataclasses.replace(
      summarise_perturbation(correct, examples, config.sigmas,
                             one_kind["sigmas_abs"] if one_kind else None, config),
      weight_rms=one_kind["weight_rms"] if one_kind else None,
      # Noisy parameters are traced arguments of generate: σ, seeds and conditions reuse one
      # program.
      compilations=backend_compiles() - compiles0,
      generate_calls=1 + len(CONDITIONS) * config.n_seeds * sum(1 for s in config.sigmas if s > 0),
      head_sets=sets, noise_by_kind=noise)
  t_pert = time.time() - t0
  s = rk["scores"]
  summary = AblationSummary(
      experiment="ablation", model=spec.label,
      fingerprint=specs.model_fingerprint(spec.model),
      units=units_record(table, config.units), ranking=config.ranking,
      n_profile_prompts=len(prompts),
      head_scores={"score": score, "synergy": s.synergy, "redundancy": s.redundancy,
                   "rank_score": s.rank_score, "balance": s.balance,
                   "excluded": list(s.excluded)},
      divergence=d, auc_ratio=ratios["synergistic"], auc_ratio_redundant=ratios["redundant"],
      perturbation=pert,
      timing_s={"ranking": t_rank, "divergence": t_div, "perturbation": t_pert},
      config=dataclasses.asdict(config),
  )
  return AblationResult(summary, correct)
