"""Parameter interventions on chosen units, through the family's unit description.

Heads are given either as unit indices (unit = layer * num_heads + head) or as (layer, head)
pairs, or as an (L, H) boolean mask; `head_selection` turns any of these into the mask. Which
parameter entries a unit owns is the family's business (Family.units, contract.UnitParam):
nothing here names a leaf.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models.config import FAMILIES, ModelConfig
from synergy_jax.models.contract import ATTENTION_HEADS, UnitParam


def head_selection(heads, num_layers: int, num_heads: int) -> np.ndarray:
  """(L, H) bool mask from unit indices, (layer, head) pairs, or an (L, H) mask.

  Raises ValueError naming any out-of-range unit (with its layer/head) or pair.
  """
  sel = np.zeros((num_layers, num_heads), bool)
  arr = np.asarray(heads)
  if arr.dtype == bool:
    if arr.shape != sel.shape:
      raise ValueError(f"head mask must have shape (layers, heads) = {sel.shape}, got {arr.shape}")
    return arr.copy()
  if arr.size == 0:
    return sel
  if arr.ndim == 1:
    for u in arr.tolist():
      if not 0 <= u < num_layers * num_heads:
        raise ValueError(f"unit {u} (layer {u // num_heads}, head {u % num_heads}) is out of "
                         f"range for {num_layers} layers x {num_heads} heads")
      sel[u // num_heads, u % num_heads] = True
    return sel
  if arr.ndim == 2 and arr.shape[1] == 2:
    for l, h in arr.tolist():
      if not (0 <= l < num_layers and 0 <= h < num_heads):
        raise ValueError(f"(layer {l}, head {h}) is out of range for {num_layers} layers x "
                         f"{num_heads} heads")
      sel[l, h] = True
    return sel
  raise ValueError(f"heads must be unit indices (n,), (layer, head) pairs (n, 2) or an (L, H) "
                   f"bool mask; got an array of shape {arr.shape}")


def unit_params(params, config: ModelConfig | None = None):
  """(params dict, the family's unit-parameter description restricted to leaves present).

  params: a params dict or a Model (whose config is then used). config: the model's config;
  without one (a bare dict), the attention-head description shared by the dense families
  (contract.attention_heads) is used, keeping only the leaves the dict has. Raises ValueError if
  a weight leaf of the description is missing.
  """
  if hasattr(params, "config") and hasattr(params, "params"):
    config, params = params.config, params.params
  desc = FAMILIES[config.family].units(config) if config is not None else ATTENTION_HEADS
  have = []
  for up in desc:
    try:
      _leaf(params, up.path)
    except (KeyError, TypeError):
      if up.kind == "weight":
        raise ValueError(f"params lack {'/'.join(up.path)}, a weight of every unit") from None
      continue
    have.append(up)
  return params, tuple(have)


def _leaf(params, path):
  for k in path:
    params = params[k]
  return params


def units_shape(params, *, config: ModelConfig | None = None) -> tuple[int, int]:
  """(layers, units per layer) of a params dict or Model, read from its unit weights."""
  params, desc = unit_params(params, config)
  return _units_shape(params, desc)


def _one_segment(desc) -> list[UnitParam]:
  """The weight entries of desc; raises if they lie in several layer segments (their layer axes
  would then count different layers; e.g. deepseek_v2: dense layers, then MoE layers)."""
  weights = [u for u in desc if u.kind == "weight"]
  segments = sorted({u.path[0] for u in weights})
  if len(segments) > 1:
    raise ValueError(f"unit weights span the layer segments {segments}: per-unit "
                     "interventions across several segments are not implemented")
  return weights


def _units_shape(params, desc) -> tuple[int, int]:
  """(layers, units per layer) from the first weight leaf of the description."""
  weights = _one_segment(desc)
  shape = np.shape(_leaf(params, weights[0].path))
  return int(shape[weights[0].layer_axis]), int(shape[weights[0].unit_axis])


def _spread(sel, ndim: int, up: UnitParam):
  """sel (L, U) placed on the leaf's layer and unit axes, size 1 elsewhere (broadcastable)."""
  lead, other = (up.layer_axis, up.unit_axis) if up.layer_axis < up.unit_axis else (
      up.unit_axis, up.layer_axis)
  x = sel if up.layer_axis < up.unit_axis else sel.T
  shape = [1] * ndim
  shape[lead], shape[other] = x.shape
  return x.reshape(shape)


def _set(params, path, value):
  """A shallow copy of params with the leaf at path replaced."""
  if len(path) == 1:
    return {**params, path[0]: value}
  return {**params, path[0]: _set(params[path[0]], path[1:], value)}


@functools.partial(jax.jit, static_argnames=("config",))
def perturb_selected(params, selected, sigma, rng, *, config: ModelConfig | None = None):
  """Adds N(0, sigma²) noise to the weights of the selected units (the family's unit
  description, e.g. a head's query-projection rows and output-projection columns).

  selected (L, H) bool/float; sigma scalar (absolute standard deviation, in weight units);
  rng a PRNG key. For the dense families, head h of layer l gets noise in
  params["layers"]["attn"]["q"][l, :, h, :] (the HF q_proj rows h*K .. h*K+K-1) and
  params["layers"]["attn"]["o"][l, h, :, :] (the HF o_proj columns h*K .. h*K+K-1). Other parameters are
  returned unchanged. One key per weight leaf, split from rng in description order.
  """
  params, desc = unit_params(params, config)
  weights = _one_segment(desc)
  keys = jax.random.split(rng, len(weights))
  sel = jnp.asarray(selected, jnp.float32)
  out = params
  for key, up in zip(keys, weights):
    w = _leaf(params, up.path)
    noise = jax.random.normal(key, w.shape, jnp.float32) * _spread(sel, w.ndim, up)
    out = _set(out, up.path, (w.astype(jnp.float32) + sigma * noise).astype(w.dtype))
  return out


def perturb_heads(params, heads, sigma: float, rng, *, config: ModelConfig | None = None):
  """The paper's perturbation: Gaussian noise (std `sigma`) into the query-projection rows and
  output-projection columns of the chosen heads; returns new params.

  heads: unit indices (unit = layer * H + head), (layer, head) pairs, or an (L, H) bool mask;
  the numbers of layers and heads are read from the unit weights (params["layers"]["attn"]["q"]
  (L, D, H, K) for the dense families). rng: a jax PRNG key or an int seed. params may be a
  Model (its family's unit description is used) or a dict (with `config=`, or the dense one).
  """
  params, desc = unit_params(params, config)
  sel = head_selection(heads, *_units_shape(params, desc))
  key = jax.random.PRNGKey(rng) if isinstance(rng, (int, np.integer)) else rng
  return perturb_selected(params, sel, jnp.float32(sigma), key, config=config)


def head_parameter_mask(params, heads, *, config: ModelConfig | None = None):
  """Which parameter entries belong to the chosen heads: a pytree like ``params`` whose leaves
  are bool arrays of each leaf's shape.

  The family's unit description says what a head owns; for the dense families, its
  query-projection rows (and their bias) and its output-projection columns:
  ``layers.attn.q[l, :, h, :]``, ``layers.attn.q_bias[l, h, :]``, ``layers.attn.o[l, h, :, :]``. Keys, values
  (shared by query groups under GQA), norms, MLPs, embeddings and the output bias belong to no
  head and are False everywhere.
  heads: unit indices, (layer, head) pairs or an (L, H) bool mask, as in ``head_selection``.
  """
  params, desc = unit_params(params, config)
  sel = head_selection(heads, *_units_shape(params, desc))
  owned = {up.path: up for up in desc}

  def leaf_mask(path, leaf):
    names = tuple(getattr(k, "key", None) for k in path)
    if names in owned:
      return np.broadcast_to(_spread(sel, np.ndim(leaf), owned[names]), np.shape(leaf)).copy()
    return np.zeros(np.shape(leaf), bool)
  return jax.tree_util.tree_map_with_path(leaf_mask, params)


def unit_weight_rms(params, *, config: ModelConfig | None = None) -> float:
  """Root mean square (float64) over every unit weight entry (for heads: all q and o entries);
  the scale of relative perturbation noise."""
  params, desc = unit_params(params, config)
  total, count = 0.0, 0
  for up in desc:
    if up.kind == "weight":
      w = np.asarray(_leaf(params, up.path), np.float64)
      total, count = total + float(np.sum(w * w)), count + w.size
  return float(np.sqrt(total / count))
