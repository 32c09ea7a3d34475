"""The difficulty phase sweep, by job: ``config`` (settings and prompt selection), ``analysis``
(ΦID per prompt → order parameters, bootstraps, transition tests → SweepResult, whose typed
SweepSummary is results.json; ``read_sweep`` reads one back), ``report``
(summary.md) and ``write`` (the run directory's files; ``run_phase_sweep``)."""
from synergy_jax.pipeline.phase_sweep.analysis import (LevelResult, OrderParameterSeries,
                                                       SweepAccuracy, SweepResult, SweepSummary,
                                                       analyse_level, analyse_sweep, level_data,
                                                       order_values, per_prompt_sts_rtr,
                                                       pooled_mean, read_sweep,
                                                       transition_analyses)
from synergy_jax.pipeline.phase_sweep.config import (ORDER_PARAMETERS, PhaseSweepConfig,
                                                     SweepItem, jsonl_items, level_values,
                                                     select_items, sweep_levels, task_items)
from synergy_jax.pipeline.phase_sweep.report import claim_sentence, summary_markdown
from synergy_jax.pipeline.phase_sweep.write import run_phase_sweep, write_sweep

__all__ = ["LevelResult", "ORDER_PARAMETERS", "OrderParameterSeries", "PhaseSweepConfig",
           "SweepAccuracy", "SweepItem", "SweepResult", "SweepSummary", "analyse_level", "analyse_sweep", "claim_sentence", "jsonl_items", "level_data",
           "level_values", "order_values", "per_prompt_sts_rtr", "pooled_mean",
           "read_sweep", "run_phase_sweep", "select_items", "summary_markdown", "sweep_levels", "task_items",
           "transition_analyses", "write_sweep"]
