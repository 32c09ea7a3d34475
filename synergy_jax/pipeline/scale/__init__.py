"""The scale experiment: the default recipe at several sizes, each saved with its model card and
profiled (``pipeline.engineer.measure``), plotted against parameter count. Modules: ``config``
(ScaleConfig), ``analysis`` (ScaleResult), ``report`` (summary.md), ``write`` (``run_scale``)."""
from synergy_jax.pipeline.scale.analysis import SERIES, ScaleResult, analyse
from synergy_jax.pipeline.scale.config import DEFAULT_SIZES, ScaleConfig
from synergy_jax.pipeline.scale.write import run_scale

__all__ = ["DEFAULT_SIZES", "SERIES", "ScaleConfig", "ScaleResult", "analyse", "run_scale"]
