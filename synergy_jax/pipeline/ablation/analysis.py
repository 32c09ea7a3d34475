"""Ablation, analysis (ranking → divergence → perturbation → AblationResult): do synergistic heads matter more for behaviour and accuracy than redundant
or random ones?

1. Ranking: the synergy–redundancy profile on the built-in prompt suite (activity → all-pairs ΦID
   → ``analysis.head_scores``), heads ordered by rank difference or balance.
2. Behaviour divergence: for ablated fractions 0 … 1, heads zero-ablated most synergistic first,
   most redundant first, and in random orders; the ablated model scores the original model's own
   generated continuation (teacher forcing), D = mean over prompts of the mean over tokens of
   KL(p_original ‖ p_ablated) in nats (``interventions.divergence_curves``: every mask of a prompt
   batch in one compiled call; the number of compilations is counted and reported).
3. Perturbation: Gaussian noise (``models.perturb_heads``) into the top 25 % synergistic, top 25 %
   redundant and random 25 % of heads, over a range of σ, each with several seeds (noise draws;
   for "random" also a new head set per seed); greedy exact-match accuracy per task family ×
   level. CIs: percentile bootstrap resampling seeds and examples independently (two-way).

σ is given relative to the RMS of all heads' query- and output-projection weights by default
(``sigma_scale="relative"``), so the same σ values mean the same damage across models; the
absolute values used are reported.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable, Sequence

import numpy as np

from synergy_jax import interventions
from synergy_jax.pipeline import capture, specs, typed
from synergy_jax.pipeline.ablation.config import CONDITIONS, AblationConfig, perturbation_examples
from synergy_jax.pipeline.ablation.divergence import (DivergenceSummary, auc_ratios,
                                                      backend_compiles, divergence, head_ranking,
                                                      summarise_divergence)
from synergy_jax.pipeline.ablation.perturbation import (PerturbationSummary,
                                                        perturbation_accuracy,
                                                        summarise_perturbation, weight_rms)
from synergy_jax.tasks import batching


@dataclasses.dataclass(frozen=True)
class AblationSummary:
  """results.json of the ablation experiment (field names are its keys, in its order).

  head_scores {"score" (U,) higher = more synergistic, "synergy", "redundancy", "rank_score",
  "balance" (U,), "excluded": units}; divergence: DivergenceSummary; auc_ratio,
  auc_ratio_redundant: ``interventions.auc_ratio`` records {"ratio", "ci_low", "ci_high",
  "ci_level", "n_random", ...}; perturbation: PerturbationSummary; timing_s {"ranking",
  "divergence", "perturbation"} seconds; config: the AblationConfig as a dict; wall_s: the whole
  run's seconds (set by ``run_ablation``; absent from the JSON while None).
  """
  experiment: str
  model: str
  fingerprint: str
  num_layers: int
  num_heads: int
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

  @classmethod
  def from_dict(cls, data, where: str = "ablation results") -> "AblationSummary":
    """The summary of a results.json dict (``read_ablation``); ValueError naming a missing key."""
    kw = typed.field_values(cls, data, where)
    kw["divergence"] = DivergenceSummary.from_dict(kw["divergence"], f"{where} → divergence")
    kw["perturbation"] = PerturbationSummary.from_dict(kw["perturbation"],
                                                       f"{where} → perturbation")
    return cls(**kw)


def read_ablation(path) -> AblationSummary:
  """An ablation run's results.json (a file or its run directory) as an AblationSummary (files
  of earlier versions have the same keys). FileNotFoundError / ValueError naming the file."""
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
  """Ranking → divergence → perturbation."""
  cache_dir = pathlib.Path(cache_dir)
  cfg = spec.model.config
  L, H = cfg.num_layers, cfg.num_heads
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
                   progress=progress)
  t_div = time.time() - t0
  d = summarise_divergence(div, orders)
  ratios = auc_ratios(d, n_boot=config.n_boot, ci_level=config.ci_level, seed=config.seed)

  t0 = time.time()
  n_random_sets = max(config.n_seeds, 1)
  sets = interventions.perturbation_head_sets(score, L, H, fraction=config.perturb_fraction,
                                              n_random=n_random_sets, seed=config.seed + 1)
  scale = weight_rms(spec.model.params) if config.sigma_scale == "relative" else 1.0
  sig_abs = [s * scale for s in config.sigmas]
  examples = perturbation_examples(config)
  compiles0 = backend_compiles()
  correct = perturbation_accuracy(spec.model, spec.tokenizer, examples, sets, sig_abs,
                                  n_seeds=config.n_seeds, seed=config.seed, progress=progress)
  pert = dataclasses.replace(
      summarise_perturbation(correct, examples, config.sigmas, sig_abs, config),
      weight_rms=scale if config.sigma_scale == "relative" else None,
      # Noisy parameters are traced arguments of generate: σ, seeds and conditions reuse one
      # program.
      compilations=backend_compiles() - compiles0,
      generate_calls=1 + len(CONDITIONS) * config.n_seeds * sum(1 for s in config.sigmas if s > 0),
      head_sets={"synergistic": sets["synergistic_units"], "redundant": sets["redundant_units"],
                 "random": sets["random_units"]})
  t_pert = time.time() - t0
  s = rk["scores"]
  summary = AblationSummary(
      experiment="ablation", model=spec.label,
      fingerprint=specs.model_fingerprint(spec.model),
      num_layers=L, num_heads=H, ranking=config.ranking,
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
