"""The MoE router: softmax scores over the E routed experts, top-k selection (greedy or
DeepSeek-V2's group-limited greedy), optional renormalisation, routed scaling factor.

Axis letters: B batch, S time, D hidden, E routed experts, K chosen experts per token (top-k),
G expert groups, J experts per group (E = G * J).

Formulas (as the installed transformers computes them, all in float32):
  p = softmax(x W_r)                                   (B, S, E) router probabilities
  greedy:  the K largest p_e;
  group_limited_greedy: group score m_g = max_{e in g} p_e; keep the topk_group groups with the
    largest m_g, set p_e = 0 outside them, then the K largest;
  w_k = p_{e_k} / sum_k p_{e_k} if norm_topk_prob else p_{e_k};   w_k *= routed_scaling_factor.
The dense gate matrix g (B, S, E) holds w_k at e_k and exactly 0 at unselected experts.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from synergy_jax.models.moe.config import MoESpec


@dataclasses.dataclass(frozen=True)
class Routing:
  """logits (B, S, E) float32; gates (B, S, E) float32 dense (0 where not selected);
  indices (B, S, K) int32 chosen experts (descending score); weights (B, S, K) float32."""
  logits: Any
  gates: Any
  indices: Any
  weights: Any


jax.tree_util.register_dataclass(Routing, data_fields=["logits", "gates", "indices", "weights"],
                                 meta_fields=[])


def route(logits, spec: MoESpec) -> Routing:
  """Top-k routing of router logits (B, S, E) (any float dtype; computed in float32)."""
  m = spec.moe
  logits = logits.astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)  # (B, S, E)
  scores = probs
  if m.topk_method == "group_limited_greedy":
    b, s, e = probs.shape
    grouped = probs.reshape(b, s, m.n_group, e // m.n_group)  # (B, S, G, J)
    _, top_groups = jax.lax.top_k(jnp.max(grouped, axis=-1), m.topk_group)  # (B, S, topk_group)
    keep = jnp.sum(jax.nn.one_hot(top_groups, m.n_group, dtype=jnp.float32), axis=-2) > 0
    scores = jnp.where(keep[..., None], grouped, 0.0).reshape(b, s, e)
  weights, indices = jax.lax.top_k(scores, m.experts_per_token)  # (B, S, K)
  if m.norm_topk_prob:
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
  weights = weights * jnp.float32(m.routed_scaling_factor)
  onehot = jax.nn.one_hot(indices, m.num_experts, dtype=jnp.float32)  # (B, S, K, E)
  gates = jnp.einsum("BSK,BSKE->BSE", weights, onehot, precision="highest")
  return Routing(logits, gates, indices.astype(jnp.int32), weights)


class Router(nnx.Module):
  """Router weight w (D, E) (HF `gate.weight` is its transpose, (E, D))."""

  def __init__(self, spec: MoESpec, maker):
    """maker: a modules.ParamMaker (inside a model) or annotate.RandomMaker (standalone)."""
    self.spec = spec
    self.w = maker.param("w", (spec.hidden_size, spec.moe.num_experts))

  def __call__(self, x) -> Routing:
    """x (B, S, D) -> Routing; the logits are computed in float32 (transformers keeps the
    DeepSeek router weight in float32 and casts; Mixtral/Qwen softmax in float32)."""
    logits = jnp.einsum("BSD,DE->BSE", x.astype(jnp.float32), self.w[...].astype(jnp.float32),
                        precision="highest")
    return route(logits, self.spec)
