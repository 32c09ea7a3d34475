"""One call from atoms (and activations) to the profile experiment's results and head table.

``profile_report`` gathers ranking, layer profile, core contrast, diagnostics, graph metrics and
(optionally) the surrogate summary into a JSON-able dict, and ``head_table`` gives the per-unit
columns of ``head_scores.csv``. Experiments only need to write them (``synergy_jax.results``).
"""
from __future__ import annotations

import numpy as np

from synergy_jax.analysis import diagnostics, graph, profile, ranking
from synergy_jax.analysis.surrogates import SurrogateResult
from synergy_jax.analysis.units import Units, as_units


def _table_units(units: "Units | int", n: int) -> Units:
  """The unit table of head_table: a Units, or num_heads for the head grid of n units."""
  if isinstance(units, Units):
    if units.size != n:
      raise ValueError(f"scores have {n} units but the unit table has {units.size} "
                       f"({units.layout()})")
    return units
  if int(units) < 1 or n % int(units):
    raise ValueError(f"{n} units do not form a head grid of {units} heads per layer")
  return Units.grid(n // int(units), int(units))


def unit_columns(units: Units) -> dict[str, np.ndarray]:
  """The unit columns of per-unit tables: unit, layer, head (only when every unit is a head),
  name ("L3 H2", "L3 E5", "L3 S0"), kind, index, shared."""
  c = units.columns()
  cols = {"unit": c["unit"], "layer": c["layer"]}
  if np.all(units.kind == "head"):
    cols["head"] = c["index"]
  cols.update(name=c["name"], kind=c["kind"], index=c["index"], shared=c["shared"].astype(int))
  return cols


def head_table(scores: ranking.HeadScores, units: "Units | int", *,
               surrogate: SurrogateResult | None = None,
               autocorr: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Columns (each (U,)) of the per-unit table: the unit columns (``unit_columns``), synergy,
  redundancy (nats), synergy_rank, redundancy_rank, rank_score, balance, then for each tested
  atom a of the surrogate test ``<a>_z``, ``<a>_p``, ``<a>_q`` (BH-adjusted),
  ``<a>_significant``, and ``autocorr_lag1`` if given. ``units``: the unit table, or num_heads
  for the head grid."""
  n = scores.synergy.shape[0]
  cols = {**unit_columns(_table_units(units, n)), "synergy": scores.synergy,
          "redundancy": scores.redundancy, "synergy_rank": scores.synergy_rank,
          "redundancy_rank": scores.redundancy_rank, "rank_score": scores.rank_score,
          "balance": scores.balance}
  if surrogate is not None:
    if surrogate.head_z.shape[0] != n:
      raise ValueError(f"surrogate result has {surrogate.head_z.shape[0]} units, scores have {n}")
    for a, name in enumerate(surrogate.atoms):
      cols[f"{name}_z"] = surrogate.head_z[:, a]
      cols[f"{name}_p"] = surrogate.head_p[:, a]
      cols[f"{name}_q"] = surrogate.head_q[:, a]
      cols[f"{name}_significant"] = surrogate.head_significant[:, a].astype(int)
  if autocorr is not None:
    cols["autocorr_lag1"] = np.asarray(autocorr)
  return cols


def profile_report(atoms: np.ndarray, units: "Units | int", num_heads: int | None = None, *,
                   acts: np.ndarray | None = None, surrogate: SurrogateResult | None = None,
                   graph_fraction: float = 0.1, n_perm: int = 1000, seed: int = 0,
                   band: tuple[float, float] = (1 / 3, 2 / 3)):
  """Results of the profile experiment.

  Args:
    atoms: (U, U, 16) from ``phiid.all_pairs``.
    units: the unit table (``analysis.units.Units``), or num_layers with ``num_heads`` for the
      head grid.
    acts: (P, U, T) activations, for the autocorrelation diagnostic (optional).
    surrogate: a ``surrogate_test`` result (optional).
  Returns:
    (results dict, head table columns, HeadScores). results has "units" (``Units.summary`` and
    the excluded units), "layer_profile" (mean min–max scaled rank score per layer, one value
    per layer of the model, NaN for a layer without units), "layer_profile_detail",
    "core_contrast", "syn_red_spearman", "autocorr_syn_spearman" (if acts), "graph",
    "surrogates" (if given).
  """
  units = as_units(units, num_heads)
  a = ranking.check_atoms(atoms)
  if a.shape[0] != units.size:
    raise ValueError(f"atoms has {a.shape[0]} units, expected {units.layout()} = {units.size}")
  hs = ranking.head_scores(a)
  prof = {k: profile.layer_profile(getattr(hs, k), units).to_dict()
          for k in ("rank_score", "balance")}
  mid = profile.middle_layers(units.num_layers, band)
  contrast = {k: (profile.core_contrast(getattr(hs, k), units, band=band)
                  if mid.any() and not mid.all() else None) for k in ("rank_score", "balance")}
  diag = diagnostics.diagnostics(hs.synergy, hs.redundancy, acts, n_perm=n_perm, seed=seed)
  graphs = graph.compare_graphs(a, fraction=graph_fraction)
  out = {
      "units": {**units.summary(), "excluded": [units.record(u) for u in hs.excluded]},
      "layer_profile": prof["rank_score"]["mean"],
      "layer_profile_detail": prof,
      "core_contrast": {"band": list(band), **contrast},
      "syn_red_spearman": diag["syn_red_spearman"],
      "graph": graphs,
  }
  if acts is not None:
    out["autocorr_syn_spearman"] = diag["autocorr_syn_spearman"]
  if surrogate is not None:
    out["surrogates"] = surrogate.summary()
  table = head_table(hs, units, surrogate=surrogate,
                     autocorr=diag.get("autocorr_lag1"))
  return out, table, hs
