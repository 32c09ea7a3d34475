"""The ablation experiment over the chosen units (heads, experts or both; ``--units``), by job:
``config`` (settings, evaluation examples), ``divergence`` (unit ranking, zero-ablation curves,
AUC ratios), ``perturbation`` (accuracy under unit noise), ``analysis`` (the whole analysis →
AblationResult, whose typed AblationSummary is results.json; ``read_ablation`` reads one back),
``report`` (summary.md) and ``write`` (the run directory's files; ``run_ablation``)."""
from synergy_jax.pipeline.ablation.analysis import (AblationResult, AblationSummary,
                                                    analyse_ablation, read_ablation,
                                                    units_record)
from synergy_jax.pipeline.ablation.config import (CONDITIONS, AblationConfig,
                                                  perturbation_examples, unit_noun)
from synergy_jax.pipeline.ablation.divergence import (DivergenceSummary, auc_ratios,
                                                      backend_compiles, divergence, head_ranking,
                                                      summarise_divergence)
from synergy_jax.pipeline.ablation.perturbation import (PerturbationSummary, noise_scales,
                                                        perturb_units, perturbation_accuracy,
                                                        summarise_perturbation, unit_kinds,
                                                        weight_rms)
from synergy_jax.pipeline.ablation.report import summary_markdown
from synergy_jax.pipeline.ablation.write import run_ablation, write_ablation

__all__ = ["AblationConfig", "AblationResult", "AblationSummary", "CONDITIONS",
           "DivergenceSummary", "PerturbationSummary", "analyse_ablation", "auc_ratios",
           "backend_compiles", "divergence", "head_ranking", "noise_scales", "perturb_units",
           "perturbation_accuracy", "perturbation_examples", "read_ablation", "run_ablation",
           "summarise_divergence", "summarise_perturbation", "summary_markdown", "unit_kinds",
           "unit_noun", "units_record", "weight_rms", "write_ablation"]
