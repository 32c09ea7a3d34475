"""Ablation, perturbation: greedy exact-match accuracy with Gaussian noise in the top synergistic,
top redundant and random heads over a range of σ and seeds, with two-way bootstrap CIs (seeds ×
examples). σ is relative to the RMS of all heads' query/output weights by default."""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from synergy_jax import models, tasks
from synergy_jax.analysis.stats import two_way_bootstrap
from synergy_jax.pipeline import typed
from synergy_jax.pipeline.ablation.config import CONDITIONS, AblationConfig


def weight_rms(params) -> float:
  """RMS of all heads' query- and output-projection weights (the scale of relative σ)."""
  return models.unit_weight_rms(params)


def _correct(model, tokenizer, examples) -> np.ndarray:
  texts = tasks.generate_answers(model, tokenizer, examples)
  return np.array([tasks.check(e, t) for e, t in zip(examples, texts)])


def perturbation_accuracy(model: "models.Model", tokenizer, examples: list, head_sets: dict,
                          sigmas_abs: Sequence[float], *, n_seeds: int, seed: int = 0,
                          progress: Callable | None = None) -> np.ndarray:
  """(C, S, R, E) bool exact matches: condition (``CONDITIONS``) × σ × seed × example.

  head_sets: ``interventions.perturbation_head_sets`` output (needs >= n_seeds random sets).
  Noise of seed r at σ index s uses the same PRNG key in every condition (common random numbers).
  σ = 0 leaves the parameters unchanged and is evaluated once.
  """
  sig = np.asarray(sigmas_abs, np.float64)
  if len(head_sets["random"]) < n_seeds:
    raise ValueError(f"head_sets has {len(head_sets['random'])} random sets for {n_seeds} seeds")
  out = np.zeros((len(CONDITIONS), sig.size, n_seeds, len(examples)), bool)
  base = None
  jobs = [(s, r) for s in range(sig.size) for r in range(n_seeds)]
  bar = progress(jobs, desc="perturbation (σ × seed)", unit="run") if progress else jobs
  for s, r in bar:
    if sig[s] == 0:
      if base is None:
        base = _correct(model, tokenizer, examples)
      out[:, s, r] = base
      continue
    key = jax.random.fold_in(jax.random.PRNGKey(seed), s * 100_003 + r)
    for c, cond in enumerate(CONDITIONS):
      heads = head_sets[cond] if cond != "random" else head_sets["random"][r]
      params = models.perturb_heads(model.params, heads, float(sig[s]), key)
      out[c, s, r] = _correct(model.replace(params=params), tokenizer, examples)
  return out


@dataclasses.dataclass(frozen=True)
class PerturbationSummary:
  """results.json → perturbation (field names are its keys), for C = ``CONDITIONS``, S σ values
  and K difficulty ranks.

  sigmas (S,) as configured (relative or absolute, ``sigma_scale``), sigmas_abs (S,) the noise
  SDs used; accuracy {condition: {"mean", "ci_low", "ci_high": (S, K)}} with families pooled at
  each rank (``levels``); by_family {family: {"levels": its k values, condition: {...} (S, k)}};
  seed_accuracy {condition: (S, seeds)}; ci: how the CIs were made. Set after the evaluation:
  weight_rms (the scale of relative σ, None for absolute), compilations (XLA compilations during
  it), generate_calls, head_sets {"synergistic", "redundant": units, "random": [units] per seed}.
  """
  sigmas: list
  sigmas_abs: list
  sigma_scale: str
  conditions: list
  levels: list
  level_kind: str
  families: list
  n_seeds: int
  n_examples_per_family_level: int
  ci: str
  accuracy: dict
  by_family: dict
  seed_accuracy: dict
  weight_rms: float | None = None
  compilations: int | None = None
  generate_calls: int | None = None
  head_sets: dict | None = None

  @classmethod
  def from_dict(cls, data, where: str) -> "PerturbationSummary":
    return cls(**typed.field_values(cls, data, where))


def summarise_perturbation(correct: np.ndarray, examples: list, sigmas: Sequence[float],
                           sigmas_abs: Sequence[float],
                           config: AblationConfig) -> PerturbationSummary:
  """results.json's ``perturbation`` (without the fields set after the evaluation): accuracy per
  condition × σ × difficulty rank (families pooled at each rank; ``levels`` holds the ranks) and
  per family × level k (``by_family``), each with a two-way bootstrap CI."""
  fam = np.array([e.family for e in examples])
  lev = np.array([e.level for e in examples])
  rank = np.array([tasks.levels(e.family).index(e.level) + 1 for e in examples])
  levels = sorted(set(rank.tolist()))
  families = list(dict.fromkeys(fam.tolist()))
  seed_ctr = [config.seed + 17]

  def stats(sel):
    out = {"mean": [], "ci_low": [], "ci_high": []}
    for c in range(len(CONDITIONS)):
      rows = {"mean": [], "ci_low": [], "ci_high": []}
      for s in range(len(sigmas)):
        per_k = [two_way_bootstrap(correct[c, s][:, m], n_boot=config.n_boot,
                                   level=config.ci_level, seed=seed_ctr[0] + 31 * s + c)
                 for m in sel]
        for i, key in enumerate(("mean", "ci_low", "ci_high")):
          rows[key].append([p[i] for p in per_k])
      for key in rows:
        out[key].append(rows[key])
    return {cond: {key: out[key][c] for key in out} for c, cond in enumerate(CONDITIONS)}

  pooled = stats([rank == r for r in levels])
  by_family = {}
  for f in families:
    fl = sorted(set(lev[fam == f].tolist()))
    by_family[f] = {"levels": fl, **stats([(fam == f) & (lev == k) for k in fl])}
  per_seed = correct.reshape(correct.shape[:3] + (-1,)).astype(np.float64)
  return PerturbationSummary(
      sigmas=list(map(float, sigmas)), sigmas_abs=list(map(float, sigmas_abs)),
      sigma_scale=config.sigma_scale, conditions=list(CONDITIONS),
      levels=levels, level_kind="difficulty rank (1 = each family's easiest level)",
      families=families, n_seeds=int(correct.shape[2]),
      n_examples_per_family_level=config.n_examples,
      ci=(f"{config.ci_level:.0%} percentile bootstrap resampling noise seeds (and, for "
          "'random', head sets) and examples independently"),
      accuracy=pooled,
      by_family=by_family,
      seed_accuracy={cond: per_seed[c].mean(-1) for c, cond in enumerate(CONDITIONS)},
  )
