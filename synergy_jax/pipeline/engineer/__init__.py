"""The engineer experiment (training with a ΦID term, ``training/synergy.py``), by job:
``config`` (EngineerConfig, MeasureConfig, architectures), ``trained`` (train or reuse a model
folder with its card), ``measure`` (one model's profile, accuracy and ablation; shared with the
scale experiment), ``analysis`` (across-seed comparisons and the verdict), ``report``
(summary.md) and ``write`` (the run: ``run_engineer``)."""
from synergy_jax.pipeline.engineer.analysis import EngineerResult, analyse, compare
from synergy_jax.pipeline.engineer.config import (EngineerConfig, MeasureConfig,
                                                  parse_architecture)
from synergy_jax.pipeline.engineer.measure import ModelMeasures, measure_model
from synergy_jax.pipeline.engineer.trained import parameter_count, trained_model
from synergy_jax.pipeline.engineer.write import measures_cached, run_engineer

__all__ = ["EngineerConfig", "EngineerResult", "MeasureConfig", "ModelMeasures", "analyse",
           "compare", "measure_model", "measures_cached", "parameter_count",
           "parse_architecture", "run_engineer", "trained_model"]
