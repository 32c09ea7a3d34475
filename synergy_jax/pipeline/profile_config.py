"""Configuration of the synergistic-core profile: one frozen record of everything its numbers
depend on besides the model, the prompts (or the recorded activity) and the compute dtype."""
from __future__ import annotations

import dataclasses

from synergy_jax.analysis import nulls
from synergy_jax.analysis.units import check_which
from synergy_jax.phiid.config import PhiidConfig

# Per-head scores that order heads from synergistic to redundant (``analysis.uncertainty``).
RANKINGS = ("rank_difference", "balance", "excess")
BASELINE_INPUTS = ("matched", "own")
EXPERT_ACTIVITY = ("dense", "routed")  # as models.decoder.EXPERT_ACTIVITY (no model import here)


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
  """Everything the profile's numbers depend on besides the model and prompts.

  phiid: the estimator (``phiid.PhiidConfig``). tau, redundancy, pool: shorthands for building
  ``phiid`` (kept for the pipelines that pass them; after construction they mirror ``phiid``).
  n_surrogates: surrogates of the null (0 disables it and the excess atoms); null: its design
  (``analysis.nulls.NULLS``; default trial shuffling). graph_fraction: fraction of strongest edges
  kept in the graph view. ranking: the per-head score ordering heads ("rank_difference" =
  rank(syn) − rank(red), "balance", or "excess" = rank difference of null-corrected atoms).
  seed: surrogates, bootstraps and sampling. n_boot: prompt-bootstrap replicates of the layer
  profile intervals (0 disables intervals and reliability); n_splits: split halves of the
  reliability; n_perm: permutations of the depth-trend test. baseline_inputs: the random-init
  baseline is teacher-forced on the trained model's tokens ("matched") or generates its own
  ("own"). max_new_tokens, batch_size, greedy: generation. shard: split the pair grid over local
  devices. local_heads: per-token sts/rtr are written for this many most synergistic and most
  redundant heads (0: none). units: "heads", "experts" or "heads+experts" (mixture-of-experts
  models; ``analysis.units``); expert_activity: "dense" or "routed" activity of expert units
  (``models.generate``).
  """
  phiid: PhiidConfig | None = None
  tau: int | None = None
  redundancy: str | None = None
  pool: str | None = None
  n_surrogates: int = 100
  null: str = nulls.DEFAULT_NULL
  graph_fraction: float = 0.1
  ranking: str = "rank_difference"
  seed: int = 0
  n_boot: int = 1000
  n_splits: int = 20
  n_perm: int = 1000
  local_heads: int = 3
  baseline_inputs: str = "matched"
  max_new_tokens: int = 100
  batch_size: int = 8
  greedy: bool = True
  shard: bool = False
  units: str = "heads"
  expert_activity: str = "dense"

  def __post_init__(self):
    given = {k: getattr(self, k) for k in ("tau", "redundancy", "pool")
             if getattr(self, k) is not None}
    if self.phiid is None:
      object.__setattr__(self, "phiid", PhiidConfig(**given))
    elif not isinstance(self.phiid, PhiidConfig):
      raise ValueError(f"ProfileConfig.phiid must be a phiid.PhiidConfig, got "
                       f"{type(self.phiid).__name__}")
    else:
      clash = {k: v for k, v in given.items() if getattr(self.phiid, k) != v}
      if clash:
        raise ValueError(f"ProfileConfig: {clash} contradict phiid={self.phiid}; give them once")
    for k in ("tau", "redundancy", "pool"):
      object.__setattr__(self, k, getattr(self.phiid, k))
    if self.ranking not in RANKINGS:
      raise ValueError(f"ranking must be one of {RANKINGS}, got {self.ranking!r}")
    if self.n_surrogates < 0:
      raise ValueError(f"n_surrogates must be >= 0, got {self.n_surrogates}")
    if self.n_surrogates == 1:
      raise ValueError("n_surrogates must be 0 (no null) or >= 2 (a null needs a spread)")
    if self.ranking == "excess" and self.n_surrogates < 2:
      raise ValueError("ranking='excess' needs the surrogate null: set n_surrogates >= 2")
    if self.null not in nulls.NULLS:
      raise ValueError(f"null must be one of {nulls.NULLS}, got {self.null!r}")
    if self.baseline_inputs not in BASELINE_INPUTS:
      raise ValueError(f"baseline_inputs must be one of {BASELINE_INPUTS}, got "
                       f"{self.baseline_inputs!r}")
    check_which(self.units)
    if self.expert_activity not in EXPERT_ACTIVITY:
      raise ValueError(f"expert_activity must be one of {EXPERT_ACTIVITY}, got "
                       f"{self.expert_activity!r}")
    for name in ("n_boot", "n_splits", "n_perm", "local_heads"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

  def estimator_kwargs(self) -> dict:
    """Keyword arguments of ``phiid.all_pairs`` for this profile."""
    return {"config": self.phiid, "mesh": "auto" if self.shard else None}

  def as_dict(self) -> dict:
    """JSON-able record for results.json (the estimator as a nested dict)."""
    out = dataclasses.asdict(self)
    for k in ("tau", "redundancy", "pool"):
      out.pop(k)
    return out
