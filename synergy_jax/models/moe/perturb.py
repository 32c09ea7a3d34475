"""Gaussian perturbation of all of one expert's parameters (the unit analogue of perturbing a
head's q rows and o columns), traced so that a new unit or sigma does not recompile.

A unit u in 0 .. U-1 (U = E routed + H shared, routed first) owns, in the module layout of
block.MoEFeedForward: routed u = e: experts.gate[e], experts.up[e], experts.down[e]; shared
u = E + h: shared.gate[h], shared.up[h], shared.down[h]. The router column w[:, e] and Qwen2-MoE's
shared_expert_gate belong to the router, not to an expert, and are never perturbed (so routing
is unchanged, as with expert_mask).

Noise: every entry of the unit's weights gets sigma * rms_u * N(0, 1), rms_u the root mean square
over all of that unit's weight entries (relative noise; sigma is dimensionless).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_EXPERT_LEAVES = ("gate", "up", "down")


def _owner_masks(weights, unit, num_experts: int):
  """{group: (n,) float32 one-hot of `unit` within that stacked group} for experts/shared."""
  n_shared = weights["shared"]["gate"].shape[0] if "shared" in weights else 0
  onehot = jax.nn.one_hot(unit, num_experts + n_shared, dtype=jnp.float32)
  masks = {"experts": onehot[:num_experts]}
  if n_shared:
    masks["shared"] = onehot[num_experts:]
  return masks


def unit_weight_rms(weights, unit, num_experts: int):
  """Root mean square (float32 scalar) of all weight entries of `unit` (traced int ok).
  weights: the module-layout dict, e.g. nnx.to_pure_dict(nnx.state(moe, nnx.Param))."""
  total = count = jnp.float32(0)
  for group, sel in _owner_masks(weights, unit, num_experts).items():
    for leaf in _EXPERT_LEAVES:
      w = weights[group][leaf].astype(jnp.float32)  # (n, a, b)
      per = jnp.sum(w * w, axis=(1, 2))  # (n,)
      total = total + jnp.sum(sel * per)
      count = count + jnp.sum(sel) * (w.shape[1] * w.shape[2])
  return jnp.sqrt(total / count)


def perturb_unit_weights(weights, unit, sigma, key, num_experts: int):
  """A copy of `weights` with relative Gaussian noise on every parameter of `unit` only."""
  rms = unit_weight_rms(weights, unit, num_experts)
  masks = _owner_masks(weights, unit, num_experts)
  leaves = [(g, leaf) for g in masks for leaf in _EXPERT_LEAVES]
  sizes = [weights[g][leaf].size for g, leaf in leaves]
  # One flat draw sliced per leaf: XLA on CPU compiles a few multi-dimensional threefry draws
  # ~20x slower than one flat draw of the same total size.
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32) * (sigma * rms)
  out = dict(weights)
  start = 0
  for (group, leaf), size in zip(leaves, sizes):
    w = weights[group][leaf]
    noise = flat[start:start + size].reshape(w.shape) * masks[group][:, None, None]
    start += size
    out[group] = {**out[group], leaf: (w + noise).astype(w.dtype)}
  return out


def perturb_expert(moe: nnx.Module, unit, sigma, key) -> nnx.Module:
  """A new MoEFeedForward whose unit `unit` has noised weights (the input is not changed)."""
  graphdef, params, rest = nnx.split(moe, nnx.Param, ...)
  pure = nnx.to_pure_dict(params)
  noised = perturb_unit_weights(pure, unit, sigma, key, moe.spec.moe.num_experts)
  nnx.replace_by_pure_dict(params, noised)
  return nnx.merge(graphdef, params, rest)
