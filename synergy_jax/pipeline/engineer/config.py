"""Engineer experiment, configuration: one frozen record of everything its numbers depend on
(architecture, training recipe, the λ grid and seeds, the ΦID term, and the settings of the
profile, accuracy and ablation measurements), validated on construction."""
from __future__ import annotations

import dataclasses

from synergy_jax.pipeline.ablation.config import AblationConfig
from synergy_jax.pipeline.profile_config import ProfileConfig
from synergy_jax.training.loop import TrainConfig
from synergy_jax.training import synergy


def parse_architecture(text: str) -> dict:
  """"LxNxD" (layers × heads × width) → ``training.default_model_config`` keywords: head_dim
  D / N, MLP width 3 D (the default model's ratio). ValueError naming the text on a bad form."""
  parts = str(text).lower().split("x")
  try:
    layers, heads, width = (int(p) for p in parts)
  except ValueError:
    raise ValueError(f"architecture {text!r} must be LAYERSxHEADSxWIDTH, e.g. 6x8x64") from None
  if min(layers, heads, width) < 1 or width % heads:
    raise ValueError(f"architecture {text!r}: layers, heads and width must be >= 1 and the "
                     f"width a multiple of the heads")
  return {"num_layers": layers, "num_heads": heads, "hidden_size": width,
          "head_dim": width // heads, "intermediate_size": 3 * width}


@dataclasses.dataclass(frozen=True)
class MeasureConfig:
  """How each trained model is measured: profile (``ProfileConfig``; its baseline is the
  random-init model of the same architecture), the prompt suite (per_category prompts of each
  category; None = all), greedy task accuracy (accuracy_examples per family × level, seed
  accuracy_seed; ``measure.accuracy_of``) and the ablation (``AblationConfig``; None skips
  it)."""
  profile: ProfileConfig
  per_category: int | None = None
  accuracy_examples: int = 50
  accuracy_seed: int = 2024
  ablation: AblationConfig | None = None

  def __post_init__(self):
    if self.accuracy_examples < 1:
      raise ValueError(f"accuracy_examples must be >= 1, got {self.accuracy_examples}")
    if self.per_category is not None and self.per_category < 1:
      raise ValueError(f"per_category must be >= 1 or None, got {self.per_category}")


@dataclasses.dataclass(frozen=True)
class EngineerConfig:
  """weights: the λ grid (must contain 0, the plain run every other λ is compared with);
  seeds: training seeds (each λ × seed is one run); architecture: "LxNxD"; train: the recipe
  (its seed is replaced per run); target, series_len, rows: the ΦID term
  (``training.synergy.SynergyObjective``); measure: ``MeasureConfig``; n_boot / ci_level:
  across-seed effect-size intervals; n_perm: permutation test relabellings."""
  weights: tuple = (-1.0, 0.0, 1.0)
  seeds: tuple = (0, 1, 2)
  architecture: str = "6x8x64"
  train: TrainConfig = TrainConfig()
  target: str = synergy.CORE
  series_len: int = 64
  rows: int = 0
  measure: MeasureConfig = MeasureConfig(ProfileConfig())
  n_boot: int = 2000
  ci_level: float = 0.95
  n_perm: int = 10000

  def __post_init__(self):
    arch = parse_architecture(self.architecture)
    if 0.0 not in [float(w) for w in self.weights]:
      raise ValueError(f"weights {list(self.weights)} must contain 0 (the plain run)")
    if len(set(map(float, self.weights))) != len(self.weights):
      raise ValueError(f"weights {list(self.weights)} repeat a value")
    if not self.seeds or len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds {list(self.seeds)} must be non-empty and distinct")
    synergy.parse_target(self.target, arch["num_layers"])
    for w in self.weights:
      self.objective(w)  # validates the term's settings
    if self.series_len > self.train.seq_len:
      raise ValueError(f"series_len={self.series_len} exceeds the rows' seq_len="
                       f"{self.train.seq_len}")

  def model_kwargs(self) -> dict:
    return parse_architecture(self.architecture)

  def objective(self, weight: float) -> "synergy.SynergyObjective | None":
    """The run's ΦID term (None for λ = 0: the plain loop)."""
    if float(weight) == 0.0:
      return None
    return synergy.SynergyObjective(weight=float(weight), target=self.target,
                                    series_len=self.series_len, rows=self.rows)

  def train_config(self, seed: int) -> TrainConfig:
    return dataclasses.replace(self.train, seed=int(seed))

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)
