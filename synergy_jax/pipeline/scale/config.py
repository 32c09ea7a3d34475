"""Scale experiment, configuration: the sizes ("LxNxD" architectures), the training recipe they
share, how each model is measured, and the model cards written with them."""
from __future__ import annotations

import dataclasses

from synergy_jax.pipeline.engineer.config import MeasureConfig, parse_architecture
from synergy_jax.pipeline.profile_config import ProfileConfig
from synergy_jax.training.loop import TrainConfig

DEFAULT_SIZES = ("2x4x64", "4x4x64", "6x8x64", "8x8x128", "12x16x256")


@dataclasses.dataclass(frozen=True)
class ScaleConfig:
  """sizes: architectures "LAYERSxHEADSxWIDTH" (distinct); train: the default recipe every size
  gets (same seed, data and schedule); measure: ``engineer.MeasureConfig``; card_examples:
  examples per family × level of each model card's generation-based accuracy (0: no card)."""
  sizes: tuple = DEFAULT_SIZES
  train: TrainConfig = TrainConfig()
  measure: MeasureConfig = MeasureConfig(ProfileConfig())
  card_examples: int = 20

  def __post_init__(self):
    if not self.sizes:
      raise ValueError("sizes must name at least one architecture")
    norm = [tuple(parse_architecture(s).values()) for s in self.sizes]
    if len(set(norm)) != len(norm):
      raise ValueError(f"sizes {list(self.sizes)} repeat an architecture")
    if self.card_examples < 0:
      raise ValueError(f"card_examples must be >= 0, got {self.card_examples}")

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)
