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
  """A copy of `weights` with relative Gaussian noise on every parameter of `unit` only.

  Noise is drawn for one expert's worth of entries and added at the unit's slot of its group
  (a traced index), so the cost does not grow with the number of experts.
  """
  n_shared = weights["shared"]["gate"].shape[0] if "shared" in weights else 0
  if isinstance(unit, int) and not 0 <= unit < num_experts + n_shared:
    raise ValueError(f"expert unit {unit} is out of range for {num_experts} routed + "
                     f"{n_shared} shared experts")
  rms = unit_weight_rms(weights, unit, num_experts)
  unit = jnp.asarray(unit, jnp.int32)
  # (group, slot within the group, 1.0 if the unit is in this group else 0.0)
  groups = [("experts", unit, (unit < num_experts).astype(jnp.float32))]
  if n_shared:
    groups.append(("shared", unit - num_experts, (unit >= num_experts).astype(jnp.float32)))
  leaves = [(g, slot, on, leaf) for g, slot, on in groups for leaf in _EXPERT_LEAVES]
  sizes = [weights[g][leaf][0].size for g, _, _, leaf in leaves]
  # One flat draw sliced per leaf: XLA on CPU compiles a few multi-dimensional threefry draws
  # ~20x slower than one flat draw of the same total size.
  flat = jax.random.normal(key, (sum(sizes),), jnp.float32) * (sigma * rms)
  out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in weights.items()}
  start = 0
  for (group, slot, on, leaf), size in zip(leaves, sizes):
    w = weights[group][leaf]
    noise = flat[start:start + size].reshape(w.shape[1:]) * on
    start += size
    slot = jnp.clip(slot, 0, w.shape[0] - 1)
    out[group][leaf] = w.at[slot].add(noise.astype(w.dtype))
  return out


def perturb_expert(moe: nnx.Module, unit, sigma, key) -> nnx.Module:
  """A new MoEFeedForward whose unit `unit` has noised weights (the input is not changed)."""
  graphdef, params, rest = nnx.split(moe, nnx.Param, ...)
  pure = nnx.to_pure_dict(params)
  noised = perturb_unit_weights(pure, unit, sigma, key, moe.spec.moe.num_experts)
  nnx.replace_by_pure_dict(params, noised)
  return nnx.merge(graphdef, params, rest)
