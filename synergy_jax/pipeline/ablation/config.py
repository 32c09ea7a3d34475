"""Ablation, configuration: the settings (a frozen dataclass validated on construction) and the
task examples they select for the perturbation accuracy."""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis.units import check_which
from synergy_jax.phiid.checks import check_length
from synergy_jax.phiid.config import PhiidConfig, resolve_phiid
from synergy_jax import tasks
from synergy_jax.pipeline import profile
from synergy_jax.pipeline.profile_config import EXPERT_ACTIVITY

CONDITIONS = ("synergistic", "redundant", "random")
_NOUNS = {"heads": ("head", "heads"), "experts": ("expert", "experts"),
          "heads+experts": ("unit", "units (heads and experts)")}


def unit_noun(units: str) -> tuple[str, str]:
  """(singular, plural) words for the units of ``--units`` in reports: ("head", "heads")..."""
  return _NOUNS[check_which(units)]


@dataclasses.dataclass(frozen=True)
class AblationConfig:
  """Settings of the ablation experiment.

  Units: units ("heads", "experts" or "heads+experts"; ``analysis.units``: experts need a
  mixture-of-experts model), expert_activity ("dense" | "routed": the expert units' activity
  that the ranking's ΦID profile reads; ``models.generate``).
  Ranking: ranking ("rank_difference" | "balance"), per_category (built-in suite prompts per
  category; None = all), max_new_tokens / batch_size (generation), tau, redundancy (ΦID).
  Divergence: fractions (strictly increasing in [0, 1]) of the units, n_random orders,
  divergence_batch (prompts per scoring batch, 0 = all at once; each batch compiles once),
  mask_chunk (masks per ``lax.map`` step; bounds memory to mask_chunk × B × T × V log-probs).
  Perturbation: sigmas (noise std; if sigma_scale="relative", relative to the RMS of the unit
  weights of each unit's own kind: heads' q/o projections, experts' gate/up/down matrices),
  perturb_fraction of the units, n_seeds, families, levels (difficulty ranks, 1 = each family's
  easiest level in ``tasks.levels``; None: all of each family's levels), n_examples per family ×
  level, eval_seed (task sampling).
  Statistics: n_boot, ci_level; seed: random orders, random head sets, noise.
  """
  ranking: str = "rank_difference"
  per_category: int | None = None
  max_new_tokens: int = 100
  batch_size: int = 8
  phiid: "PhiidConfig | None" = None
  tau: int | None = None
  redundancy: str | None = None
  fractions: tuple = tuple(np.round(np.linspace(0.0, 1.0, 11), 6).tolist())
  n_random: int = 5
  divergence_batch: int = 0
  mask_chunk: int = 8
  sigmas: tuple = (0.0, 0.25, 0.5, 1.0, 2.0)
  sigma_scale: str = "relative"
  perturb_fraction: float = 0.25
  n_seeds: int = 5
  families: tuple = tasks.FAMILIES
  levels: tuple | None = None
  n_examples: int = 32
  eval_seed: int = 2025
  n_boot: int = 1000
  ci_level: float = 0.95
  seed: int = 0
  units: str = "heads"
  expert_activity: str = "dense"

  def __post_init__(self):
    estimator = resolve_phiid(self.phiid, tau=self.tau, redundancy=self.redundancy)
    for k, v in (("phiid", estimator), ("tau", estimator.tau),
                 ("redundancy", estimator.redundancy)):
      object.__setattr__(self, k, v)
    check_length(self.max_new_tokens, self.phiid)
    check_which(self.units)
    if self.expert_activity not in EXPERT_ACTIVITY:
      raise ValueError(f"expert_activity must be one of {EXPERT_ACTIVITY}, got "
                       f"{self.expert_activity!r}")
    if self.ranking not in profile.RANKINGS:
      raise ValueError(f"ranking must be one of {profile.RANKINGS}, got {self.ranking!r}")
    fr = np.asarray(self.fractions, np.float64)
    if fr.ndim != 1 or fr.size < 2 or np.any(np.diff(fr) <= 0) or fr[0] < 0 or fr[-1] > 1:
      raise ValueError(f"fractions must be >= 2 strictly increasing values in [0, 1], "
                       f"got {list(self.fractions)}")
    if self.n_random < 2:
      raise ValueError(f"n_random must be >= 2 (the AUC ratio's CI needs them), got "
                       f"{self.n_random}")
    if self.n_seeds < 1:
      raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
    if self.sigma_scale not in ("relative", "absolute"):
      raise ValueError(f"sigma_scale must be 'relative' or 'absolute', got {self.sigma_scale!r}")
    if any(s < 0 for s in self.sigmas) or not self.sigmas:
      raise ValueError(f"sigmas must be non-negative and non-empty, got {list(self.sigmas)}")
    if not 0 < self.perturb_fraction <= 1:
      raise ValueError(f"perturb_fraction must be in (0, 1], got {self.perturb_fraction}")
    if not self.families:
      raise ValueError("families must name at least one task family")
    for f in self.families:
      family_ranks(f, self.levels)  # raises naming an unknown family or a rank it lacks
    if self.n_examples < 1:
      raise ValueError(f"n_examples must be >= 1, got {self.n_examples}")

  def profile_config(self) -> "profile.ProfileConfig":
    return profile.ProfileConfig(phiid=self.phiid, n_surrogates=0,
                                 ranking=self.ranking, seed=self.seed,
                                 max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                 greedy=True, units=self.units,
                                 expert_activity=self.expert_activity)


def family_ranks(family: str, levels) -> list[int]:
  """The difficulty ranks of ``family`` that ``levels`` selects (1 = easiest; None: all).

  Raises ValueError naming an unknown family, or the family and the ranks it lacks.
  """
  have = tasks.levels(family)
  ranks = range(1, len(have) + 1) if levels is None else levels
  bad = [r for r in ranks if not (float(r) == int(r) and 1 <= int(r) <= len(have))]
  if bad:
    raise ValueError(f"task family {family!r} has no difficulty rank(s) {bad}: it has "
                     f"{len(have)} levels {list(have)}, ranks 1..{len(have)}")
  return [int(r) for r in ranks]


def perturbation_examples(config: AblationConfig) -> list:
  """n_examples per family × level: all of each family's levels, or those at the difficulty ranks
  ``config.levels`` (``family_ranks``)."""
  out = []
  for f in config.families:
    have = tasks.levels(f)
    for r in family_ranks(f, config.levels):
      out += tasks.sample(f, have[r - 1], config.n_examples, config.eval_seed)
  return out
