"""Order parameters of the synergy–redundancy organisation, for the difficulty phase sweep.

Each maps one (U, U, 16) atoms array (one difficulty level, or one bootstrap/prompt subset) to a
scalar; higher = more synergy-dominated:

  balance            mean over all off-diagonal pairs of sts / (sts + rtr)  (ranking.pair_balance)
  core_contrast      middle-layer minus periphery mean of the per-unit balance, unscaled
                     (profile.core_contrast with scale=False, over any unit table). Not the
                     rank score and no min–max scaling: both are relative within one level, so
                     they could not show the whole network becoming more synergistic; the
                     balance lies in [0, 1] on an absolute scale, and so the contrast in [-1, 1].
  syn_gt_red         fraction of units whose synergy (mean sts) exceeds their redundancy (mean rtr)
"""
from __future__ import annotations

import numpy as np

from synergy_jax.analysis import profile, ranking
from synergy_jax.analysis.units import as_units

NAMES = ("balance", "core_contrast", "syn_gt_red")


def order_parameters(atoms: np.ndarray, units, num_heads: int | None = None, *,
                     band: tuple[float, float] = (1 / 3, 2 / 3),
                     negative: str = "clip") -> dict[str, float]:
  """{"balance", "core_contrast", "syn_gt_red"} for one (U, U, 16) atoms array (see module
  docstring); ``units``: the unit table (``analysis.units.Units``) or num_layers with
  ``num_heads`` for the head grid.

  ``core_contrast`` is NaN for models with fewer than 3 layers (no middle and periphery).
  """
  units = as_units(units, num_heads)
  a = ranking.check_atoms(atoms)
  if a.shape[0] != units.size:
    raise ValueError(f"atoms has {a.shape[0]} units but the unit table has {units.size} "
                     f"({units.layout()})")
  pb = ranking.pair_balance(a, negative=negative)
  hb = ranking.partner_mean(pb)
  syn = ranking.partner_mean(ranking.atom_matrix(a, "sts"))
  red = ranking.partner_mean(ranking.atom_matrix(a, "rtr"))
  ok = np.isfinite(syn) & np.isfinite(red)
  mid = profile.middle_layers(units.num_layers, band)
  contrast = (profile.core_contrast(hb, units, band=band, scale=False)
              if mid.any() and not mid.all() else float("nan"))
  return {
      "balance": float(np.nanmean(pb)) if np.isfinite(pb).any() else float("nan"),
      "core_contrast": contrast,
      "syn_gt_red": float(np.mean(syn[ok] > red[ok])) if ok.any() else float("nan"),
  }

