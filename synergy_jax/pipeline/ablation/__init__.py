"""The ablation experiment, by job: ``config`` (settings, evaluation examples), ``divergence``
(head ranking, zero-ablation curves, AUC ratios), ``perturbation`` (accuracy under head noise),
``analysis`` (the whole analysis → AblationResult), ``report`` (summary.md) and ``write`` (the run
directory's files; ``run_ablation``)."""
from synergy_jax.pipeline.ablation.analysis import AblationResult, analyse_ablation
from synergy_jax.pipeline.ablation.config import CONDITIONS, AblationConfig, perturbation_examples
from synergy_jax.pipeline.ablation.divergence import (backend_compiles, divergence, head_ranking,
                                                      summarise_divergence)
from synergy_jax.pipeline.ablation.perturbation import (perturbation_accuracy,
                                                        summarise_perturbation, weight_rms)
from synergy_jax.pipeline.ablation.report import summary_markdown
from synergy_jax.pipeline.ablation.write import run_ablation, write_ablation

__all__ = ["AblationConfig", "AblationResult", "CONDITIONS", "analyse_ablation",
           "backend_compiles", "divergence", "head_ranking",
           "perturbation_accuracy", "perturbation_examples", "run_ablation",
           "summarise_divergence", "summarise_perturbation", "summary_markdown", "weight_rms",
           "write_ablation"]
