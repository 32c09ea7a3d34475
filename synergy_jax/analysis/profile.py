"""Where units sit in depth: unit ↔ (layer, head) mapping, layer profiles, core contrast.

Units are described by a unit table (``analysis.units.Units``: heads, experts or both, grouped
by their decoder layer); the profile functions also take the head grid as (num_layers,
num_heads), unit = layer * num_heads + head. Normalised depth of layer l of L is l / (L − 1)
(0 = first layer, 1 = last; a single-layer model sits at depth 0).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis.units import Units, as_units


def _check_shape(num_layers: int, num_heads: int) -> None:
  if int(num_layers) < 1 or int(num_heads) < 1:
    raise ValueError(f"num_layers and num_heads must be >= 1, got {num_layers}, {num_heads}")


def unit_to_layer_head(unit, num_heads: int, num_layers: int | None = None):
  """(layer, head) of unit index/indices; raises ValueError naming any out-of-range unit."""
  u = np.asarray(unit)
  if u.dtype.kind not in "iu":
    raise ValueError(f"unit indices must be integers, got dtype {u.dtype}")
  if num_heads < 1:
    raise ValueError(f"num_heads must be >= 1, got {num_heads}")
  limit = None if num_layers is None else num_layers * num_heads
  bad = (u < 0) if limit is None else ((u < 0) | (u >= limit))
  if np.any(bad):
    first = int(np.asarray(u)[bad].ravel()[0])
    raise ValueError(f"unit {first} is out of range for {num_layers} layers × {num_heads} heads "
                     f"(valid units 0..{'∞' if limit is None else limit - 1})")
  layer, head = np.divmod(u, num_heads)
  if np.ndim(unit) == 0:
    return int(layer), int(head)
  return layer, head


def layer_head_to_unit(layer, head, num_layers: int, num_heads: int):
  """unit = layer * num_heads + head; raises ValueError naming an out-of-range layer or head."""
  _check_shape(num_layers, num_heads)
  l, h = np.asarray(layer), np.asarray(head)
  if np.any((l < 0) | (l >= num_layers)):
    raise ValueError(f"layer {np.asarray(l)[(l < 0) | (l >= num_layers)].ravel()[0]} out of range "
                     f"0..{num_layers - 1}")
  if np.any((h < 0) | (h >= num_heads)):
    raise ValueError(f"head {np.asarray(h)[(h < 0) | (h >= num_heads)].ravel()[0]} out of range "
                     f"0..{num_heads - 1}")
  u = l * num_heads + h
  return int(u) if np.ndim(u) == 0 else u



def depth(num_layers: int) -> np.ndarray:
  """(L,) normalised depth l / (L − 1) in [0, 1] (zeros for L = 1)."""
  _check_shape(num_layers, 1)
  if num_layers == 1:
    return np.zeros(1)
  return np.arange(num_layers) / (num_layers - 1)


def _per_layer(scores: np.ndarray, units: Units) -> np.ndarray:
  """(L, W) scores by layer, NaN-padded (``Units.by_layer``)."""
  s = np.asarray(scores, dtype=np.float64)
  if s.shape != (units.size,):
    raise ValueError(f"scores must have shape ({units.size},) for {units.layout()}, got {s.shape}")
  return units.by_layer(s)


def minmax_scale(scores: np.ndarray) -> np.ndarray:
  """Scales finite scores to [0, 1] by (s − min) / (max − min); NaN stays NaN.

  If all finite scores are equal the scale is undefined and every entry is NaN (a flat profile
  carries no ordering, and a made-up 0.5 would look like data).
  """
  s = np.asarray(scores, dtype=np.float64)
  if not np.any(np.isfinite(s)):
    return np.full(s.shape, np.nan)
  lo, hi = np.nanmin(s), np.nanmax(s)
  if hi == lo:
    return np.full(s.shape, np.nan)
  return (s - lo) / (hi - lo)


@dataclasses.dataclass(frozen=True)
class LayerProfile:
  """Per-layer summary of min–max scaled unit scores; all arrays (L,), one per decoder layer.

  depth: normalised depth; mean, sd (ddof=0), min, max over the layer's units of the scaled
  scores; n_valid: units with a finite score (0, with NaN statistics, for a layer without units).
  """
  depth: np.ndarray
  mean: np.ndarray
  sd: np.ndarray
  min: np.ndarray
  max: np.ndarray
  n_valid: np.ndarray

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def layer_profile(scores: np.ndarray, units: "Units | int", num_heads: int | None = None, *,
                  scale: bool = True) -> LayerProfile:
  """Layer profile of per-unit scores (e.g. rank score) over normalised depth.

  Args:
    scores: (U,) per-unit scores.
    units: the unit table (``Units``), or num_layers with ``num_heads`` for the head grid.
    scale: min–max scale over all units first (so profiles of different models are comparable).
  Returns:
    LayerProfile with one entry per layer. Layers with no finite unit get NaN statistics.
  """
  units = as_units(units, num_heads)
  s = minmax_scale(scores) if scale else np.asarray(scores, dtype=np.float64)
  m = _per_layer(s, units)  # (L, W)
  n = np.sum(np.isfinite(m), axis=1)
  with np.errstate(invalid="ignore"):
    safe = np.where(np.isfinite(m), m, 0.0)
    mean = np.where(n > 0, safe.sum(1) / np.maximum(n, 1), np.nan)
    var = np.where(n > 0, (np.where(np.isfinite(m), (m - mean[:, None]) ** 2, 0.0)).sum(1)
                   / np.maximum(n, 1), np.nan)
    mn = np.where(n > 0, np.where(np.isfinite(m), m, np.inf).min(1), np.nan)
    mx = np.where(n > 0, np.where(np.isfinite(m), m, -np.inf).max(1), np.nan)
  return LayerProfile(depth(units.num_layers), mean, np.sqrt(var), mn, mx, n)


def middle_layers(num_layers: int, band: tuple[float, float] = (1 / 3, 2 / 3)) -> np.ndarray:
  """(L,) bool: layers whose normalised depth lies in the closed band [lo, hi]."""
  lo, hi = band
  if not 0.0 <= lo < hi <= 1.0:
    raise ValueError(f"middle band must satisfy 0 <= lo < hi <= 1, got {band}")
  d = depth(num_layers)
  eps = 1e-12  # depth l/(L-1) of e.g. 1/3 must count as inside the band
  return (d >= lo - eps) & (d <= hi + eps)


def core_contrast(scores: np.ndarray, units: "Units | int", num_heads: int | None = None, *,
                  band: tuple[float, float] = (1 / 3, 2 / 3), scale: bool = True) -> float:
  """Synergistic-core contrast: mean score of middle-layer units minus mean of periphery units.

  Middle = layers with normalised depth (of the model's full depth) in the closed ``band``
  (default [1/3, 2/3]); periphery = all other layers. ``units``: a ``Units`` table, or
  num_layers with ``num_heads`` for the head grid. Scores are min–max scaled over all units first
  when ``scale`` (then the contrast lies in [-1, 1]). Positive → the middle is more synergistic.
  NaN when the middle or the periphery has no unit with a finite score.

  Raises:
    ValueError: when the band leaves the middle or the periphery empty (e.g. fewer than 3 layers).
  """
  units = as_units(units, num_heads)
  s = minmax_scale(scores) if scale else np.asarray(scores, dtype=np.float64)
  m = _per_layer(s, units)
  mid = middle_layers(units.num_layers, band)
  if not mid.any() or mid.all():
    raise ValueError(f"core_contrast: depth band {band} gives {int(mid.sum())} middle layers of "
                     f"{units.num_layers}; need at least one middle and one peripheral layer")
  a, b = m[mid], m[~mid]
  if not np.isfinite(a).any() or not np.isfinite(b).any():
    return float("nan")
  return float(np.nanmean(a) - np.nanmean(b))

