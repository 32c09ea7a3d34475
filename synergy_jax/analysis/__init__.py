"""Analysis of pairwise ΦID atoms: per-head ranks, layer profiles, diagnostics, nulls, graphs,
phase-transition fits and resampling statistics.

Submodules (each one idea): ``ranking``, ``profile``, ``diagnostics``, ``surrogates``, ``graph``,
``transition``, ``stats``, ``order`` (order parameters of the phase sweep) and ``report`` (one
call to the profile experiment's results). The most used names are re-exported here.
"""
from synergy_jax.analysis.diagnostics import lag1_autocorrelation, spearman
from synergy_jax.analysis.graph import compare_graphs, global_efficiency, graph_metrics, modularity
from synergy_jax.analysis.profile import (core_contrast, layer_head_to_unit, layer_profile,
                                          minmax_scale, unit_to_layer_head)
from synergy_jax.analysis.order import order_parameters
from synergy_jax.analysis.ranking import (ATOMS, HeadScores, head_scores, random_orders,
                                          rank_difference, redundant_order, synergistic_order)
from synergy_jax.analysis.report import head_table, profile_report
from synergy_jax.analysis.stats import benjamini_hochberg, bootstrap_ci, rankdata
from synergy_jax.analysis.surrogates import SurrogateResult, surrogate_test
from synergy_jax.analysis.transition import TransitionAnalysis, analyze_transition, fit_logistic
