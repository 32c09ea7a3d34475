"""Phase sweep, configuration: the settings (a frozen dataclass validated on construction) and
the prompts they select — task examples per family and difficulty rank, or a user's JSONL file.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from synergy_jax.phiid.checks import check_length
from synergy_jax.phiid.config import PhiidConfig, resolve_phiid
from synergy_jax import tasks
from synergy_jax.analysis import order as order_lib
from synergy_jax.pipeline import profile

ORDER_PARAMETERS = order_lib.NAMES  # ("balance", "core_contrast", "syn_gt_red")


@dataclasses.dataclass(frozen=True)
class PhaseSweepConfig:
  """Everything the sweep's numbers depend on besides the model and the prompts.

  families: task families pooled at every level; levels: difficulty ranks r (1 = each family's
  easiest level; None: every rank all ``families`` have); n_per_family: prompts per family per level; seed: task sampling,
  bootstraps, permutations. order_parameter: the one whose transition decides the verdict (all
  three are analysed and reported). n_boot: bootstrap replicates of the level order parameters
  and accuracies; n_transition_boot / n_perm: replicates of the threshold CI / shuffled-label
  null. max_new_tokens, batch_size: generation. phiid: the estimator (``phiid.PhiidConfig``;
  pool is always "mean" here: every prompt is its own estimate); tau, redundancy: shorthands for
  building it (after construction they mirror ``phiid``). units, expert_activity: which units
  (heads, experts or heads+experts of a mixture-of-experts model) and how experts' activity is
  recorded (``profile.ProfileConfig``); the order parameters are taken over these units.
  """
  families: tuple = tasks.FAMILIES
  levels: tuple | None = None
  n_per_family: int = 32
  max_new_tokens: int = 100
  batch_size: int = 32
  phiid: "PhiidConfig | None" = None
  tau: int | None = None
  redundancy: str | None = None
  order_parameter: str = "balance"
  n_boot: int = 500
  n_transition_boot: int = 1000
  n_perm: int = 1000
  ci_level: float = 0.95
  seed: int = 0
  units: str = "heads"
  expert_activity: str = "dense"

  def __post_init__(self):
    estimator = resolve_phiid(self.phiid, tau=self.tau, redundancy=self.redundancy)
    if estimator.pool != "mean":
      raise ValueError(f"phase sweep estimates every prompt alone: phiid.pool must be 'mean', "
                       f"got {estimator.pool!r}")
    for k, v in (("phiid", estimator), ("tau", estimator.tau),
                 ("redundancy", estimator.redundancy)):
      object.__setattr__(self, k, v)
    if self.order_parameter not in ORDER_PARAMETERS:
      raise ValueError(f"order_parameter must be one of {ORDER_PARAMETERS}, "
                       f"got {self.order_parameter!r}")
    for f in self.families:
      tasks.levels(f)  # raises naming an unknown family
    if not self.families:
      raise ValueError("families must name at least one task family")
    for name in ("n_per_family", "max_new_tokens", "batch_size", "n_boot"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    check_length(self.max_new_tokens, self.phiid)
    self.profile_config()  # checks units and expert_activity

  def profile_config(self) -> "profile.ProfileConfig":
    """The generation settings in the form the shared activity cache keys on."""
    return profile.ProfileConfig(phiid=self.phiid, n_surrogates=0,
                                 seed=self.seed, max_new_tokens=self.max_new_tokens,
                                 batch_size=self.batch_size, greedy=True, units=self.units,
                                 expert_activity=self.expert_activity)


@dataclasses.dataclass(frozen=True)
class SweepItem:
  """One prompt of the sweep: its text, difficulty, group (family or JSONL category) and, for the
  task families, the Example whose answer ``tasks.check`` compares (None for JSONL prompts)."""
  text: str
  level: float
  group: str
  example: "tasks.Example | None" = None


def sweep_levels(families: Sequence[str], levels: Sequence[int] | None = None) -> tuple:
  """The difficulty ranks to sweep: ``levels`` or 1 … (fewest levels among ``families``).

  Raises ValueError for a non-integer rank or one that some family lacks (naming the family and
  its number of levels).
  """
  n_levels = {f: len(tasks.levels(f)) for f in families}
  if levels is None:
    return tuple(range(1, min(n_levels.values()) + 1))
  bad = [k for k in levels if float(k) != int(float(k))]
  if bad:
    raise ValueError(f"difficulty ranks are integers, got {bad}")
  chosen = sorted({int(float(k)) for k in levels})
  for f, n in n_levels.items():
    missing = [r for r in chosen if not 1 <= r <= n]
    if missing:
      raise ValueError(f"task family {f!r} has no difficulty rank(s) {missing}: it has {n} levels "
                       f"{list(tasks.levels(f))}, ranks 1..{n}")
  return tuple(chosen)


def level_values(families: Sequence[str], ranks: Sequence[int]) -> dict:
  """{family: [its level k at each rank]}."""
  return {f: [tasks.levels(f)[r - 1] for r in ranks] for f in families}


def task_items(config: PhaseSweepConfig) -> list[SweepItem]:
  """``n_per_family`` examples of every family at every rank, rank by rank."""
  out = []
  for r in sweep_levels(config.families, config.levels):
    for f in config.families:
      k = tasks.levels(f)[r - 1]
      out += [SweepItem(e.prompt, float(r), f, e)
              for e in tasks.sample(f, k, config.n_per_family, config.seed)]
  return out


def jsonl_items(path) -> list[SweepItem]:
  """The prompts of a JSONL file (``tasks.load_prompts``); every one needs a ``difficulty``.

  Raises ValueError naming the file and the (0-based) prompt index without a difficulty.
  """
  prompts = tasks.load_prompts(path)
  items = []
  for i, p in enumerate(prompts):
    if p.difficulty is None:
      raise ValueError(f"{path}: prompt {i} ({p.text[:40]!r}) has no 'difficulty'; the phase "
                       "sweep needs a difficulty label on every prompt")
    items.append(SweepItem(p.text, float(p.difficulty), p.category or "all"))
  return sorted(items, key=lambda it: it.level)


def select_items(config: PhaseSweepConfig, prompts_path: str | None = None) -> list[SweepItem]:
  """The sweep's prompts: the task families (``task_items``) or, with ``prompts_path``, the JSONL
  file's prompts, keeping only the difficulty labels ``config.levels`` when given.

  Raises ValueError naming the file and any requested label no prompt has.
  """
  if not prompts_path:
    return task_items(config)
  items = jsonl_items(prompts_path)
  if config.levels is None:
    return items
  have = {it.level for it in items}
  missing = [k for k in config.levels if float(k) not in have]
  if missing:
    raise ValueError(f"{prompts_path}: no prompt has difficulty {missing} (labels present: "
                     f"{sorted(have)})")
  keep = {float(k) for k in config.levels}
  return [it for it in items if it.level in keep]
