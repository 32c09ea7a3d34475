"""Where units sit in a model's traced masks: ablation masks and perturbation selections over a
unit table (``analysis.units.Units``).

A model takes its units as two traced inputs, ``head_mask`` (L, H) and ``expert_mask``
(L_moe, E + S) (1 = keep, 0 = ablate; zeroing an expert removes its contribution and leaves
routing unchanged). ``MaskLayout`` says where each unit of a table sits in them; ``UnitGrids``
holds one such pair for M masks at once (float keep-masks for ablation, bool selections for
perturbation). ``head_masks`` / ``units_mask`` are the head-grid case.

Axis letters: L layers, H heads per layer, L_moe MoE layers, E + S routed + shared experts per MoE
layer, F ablation fractions, M masks, U units of a unit table.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from synergy_jax.analysis.ranking import n_selected
from synergy_jax.analysis.units import Units

@dataclasses.dataclass(frozen=True)
class UnitGrids:
  """Per-unit values laid out as the model's traced unit inputs: heads (..., L, H) (``head_mask``)
  and experts (..., L_moe, E + S) (``expert_mask``; routed experts first, then shared), or None
  for a model without experts. Float keep masks (1 = keep, 0 = ablate) for ablation; bool
  selections (True = chosen) for perturbation. The leading axes (e.g. M masks) are shared."""
  heads: np.ndarray
  experts: np.ndarray | None = None

  def __post_init__(self):
    h = np.asarray(self.heads)
    if h.ndim < 2:
      raise ValueError(f"UnitGrids.heads must be (..., L, H), got shape {h.shape}")
    if self.experts is not None and np.shape(self.experts)[:-2] != h.shape[:-2]:
      raise ValueError(f"UnitGrids: heads {h.shape} and experts {np.shape(self.experts)} differ "
                       "in their leading axes")

  def as_keep_mask(self) -> "UnitGrids":
    """Float32 keep masks from a bool selection: chosen units 0, every other unit 1."""
    return UnitGrids((~np.asarray(self.heads, bool)).astype(np.float32),
                     None if self.experts is None
                     else (~np.asarray(self.experts, bool)).astype(np.float32))


def concat_grids(parts: Sequence[UnitGrids]) -> UnitGrids:
  """The masks of several UnitGrids (leading axis M) in order."""
  if not parts:
    raise ValueError("concat_grids needs at least one UnitGrids")
  experts = [p.experts for p in parts]
  if any(e is None for e in experts) and not all(e is None for e in experts):
    raise ValueError("concat_grids: some UnitGrids have expert grids and some do not")
  return UnitGrids(np.concatenate([p.heads for p in parts]),
                   None if experts[0] is None else np.concatenate(experts))


@dataclasses.dataclass(frozen=True)
class MaskLayout:
  """Where a model's units sit in its traced unit inputs: the (L, H) head grid, and for MoE
  models the (L_moe, E + S) expert grid whose row m is decoder layer ``moe_layers[m]``
  (``models.score(..., head_mask=, expert_mask=)``). Dense models: moe_layers = ()."""
  num_layers: int
  num_heads: int
  moe_layers: tuple = ()
  experts_per_layer: int = 0

  @classmethod
  def of_config(cls, cfg) -> "MaskLayout":
    """The layout of a model config (``models.ModelConfig``, or any object with num_layers,
    num_heads and an optional moe)."""
    moe = getattr(cfg, "moe", None)
    if moe is None:
      return cls(int(cfg.num_layers), int(cfg.num_heads))
    return cls(int(cfg.num_layers), int(cfg.num_heads), tuple(int(l) for l in moe.moe_layers),
               int(moe.num_experts) + int(moe.num_shared_experts))

  @property
  def has_experts(self) -> bool:
    return bool(self.moe_layers)

  def cells(self, units: Units) -> tuple[np.ndarray, np.ndarray]:
    """(is_head (U,) bool, cell (U,) int): unit u is ``heads.flat[cell[u]]`` (layer · H + head)
    or ``experts.flat[cell[u]]`` (m · (E + S) + expert). ValueError naming a unit ("L3 E5")
    that this model does not have."""
    is_head = units.kind == "head"
    cell = np.empty(units.size, np.int64)
    moe_row = {l: m for m, l in enumerate(self.moe_layers)}
    for u in range(units.size):
      layer, index = int(units.layer[u]), int(units.index[u])
      if is_head[u]:
        ok = layer < self.num_layers and index < self.num_heads
        cell[u] = layer * self.num_heads + index
      else:
        ok = layer in moe_row and index < self.experts_per_layer
        cell[u] = moe_row.get(layer, 0) * self.experts_per_layer + index
      if not ok:
        have = (f"{self.num_layers} layers × {self.num_heads} heads" if is_head[u] else
                f"{self.experts_per_layer} experts in each of the MoE layers "
                f"{list(self.moe_layers)}" if self.has_experts else "no experts")
        raise ValueError(f"unit {u} ({units.name(u)}) is not a unit of this model ({have})")
    return is_head, cell

  def scatter(self, units: Units, values, fill) -> UnitGrids:
    """values (..., U) placed on the grids; cells of units not in ``units`` get ``fill``."""
    v = np.asarray(values)
    if v.shape[-1:] != (units.size,):
      raise ValueError(f"values must be (..., {units.size}) for {units.describe()}, got {v.shape}")
    lead = v.shape[:-1]
    is_head, cell = self.cells(units)
    heads = np.full(lead + (self.num_layers * self.num_heads,), fill, v.dtype)
    heads[..., cell[is_head]] = v[..., is_head]
    experts = None
    if self.has_experts:
      experts = np.full(lead + (len(self.moe_layers) * self.experts_per_layer,), fill, v.dtype)
      experts[..., cell[~is_head]] = v[..., ~is_head]
      experts = experts.reshape(lead + (len(self.moe_layers), self.experts_per_layer))
    return UnitGrids(heads.reshape(lead + (self.num_layers, self.num_heads)), experts)


def check_order(order, n_units: int) -> np.ndarray:
  """Returns ``order`` as an int array after checking it is a permutation of range(n_units)."""
  o = np.asarray(order)
  if o.shape != (n_units,) or o.dtype.kind not in "iu":
    raise ValueError(f"order must be an integer array of shape ({n_units},), got {o.dtype} {o.shape}")
  if not np.array_equal(np.sort(o), np.arange(n_units)):
    missing = np.setdiff1d(np.arange(n_units), o)[:5].tolist()
    raise ValueError(f"order is not a permutation of the {n_units} units (missing e.g. {missing})")
  return o


def unit_masks(order, fractions: Sequence[float], units: Units, layout: MaskLayout) -> UnitGrids:
  """F float32 keep masks; mask f ablates (sets 0) the first round(f·U) units of ``order``, a
  permutation of the U units of the table ``units`` (round halves up, ``ranking.n_selected``).
  Grid cells of the model's units outside the table stay 1."""
  n = units.size
  o = check_order(order, n)
  pos = np.empty(n, dtype=np.int64)
  pos[o] = np.arange(n)  # position of each unit in the order
  k = np.array([n_selected(float(f), n) for f in fractions])  # (F,)
  keep = pos[None, :] >= k[:, None]  # (F, U)
  return layout.scatter(units, keep.astype(np.float32), 1.0)


def unit_selection(chosen, units: Units, layout: MaskLayout) -> UnitGrids:
  """Bool grids selecting exactly the units at positions ``chosen`` of the table ``units``
  (what ``models.perturb_selected`` takes, per kind: heads with units="heads", experts with
  units="experts")."""
  u = np.asarray(chosen, dtype=np.int64).ravel()
  bad = u[(u < 0) | (u >= units.size)]
  if bad.size:
    raise ValueError(f"unit {int(bad[0])} is out of range for {units.size} units "
                     f"({units.describe()})")
  sel = np.zeros(units.size, bool)
  sel[u] = True
  return layout.scatter(units, sel, False)


def head_masks(order, fractions: Sequence[float], num_layers: int, num_heads: int) -> np.ndarray:
  """(F, L, H) float32 masks of the head grid (unit = layer · H + head); ``unit_masks``."""
  return unit_masks(order, fractions, Units.grid(num_layers, num_heads),
                    MaskLayout(num_layers, num_heads)).heads


def units_mask(units, num_layers: int, num_heads: int) -> np.ndarray:
  """(L, H) float32 mask ablating exactly the head-grid ``units`` (1 elsewhere)."""
  return unit_selection(units, Units.grid(num_layers, num_heads),
                        MaskLayout(num_layers, num_heads)).as_keep_mask().heads


def model_layout(model, num_layers: int | None = None,
                 num_heads: int | None = None) -> MaskLayout:
  """The MaskLayout of ``model.config`` (with the experts of an MoE model); num_layers /
  num_heads give the head grid of a model without a config."""
  cfg = getattr(model, "config", None)
  if getattr(cfg, "moe", None) is not None:
    return MaskLayout.of_config(cfg)
  num_layers = num_layers if num_layers is not None else getattr(cfg, "num_layers", None)
  num_heads = num_heads if num_heads is not None else getattr(cfg, "num_heads", None)
  if num_layers is None or num_heads is None:
    raise ValueError("num_layers/num_heads not given and model.config lacks them")
  return MaskLayout(int(num_layers), int(num_heads))
