"""The mixture-of-experts feed-forward: router, E routed experts evaluated densely, S shared
experts, their combination, and the per-expert activity (the units of an MoE layer).

Axis letters: B batch, S time, D hidden, E routed experts, H shared experts, U = E + H units
(routed first, in router order, then shared).

  y_e = E_e(x)                     every routed expert at every token (one einsum, experts.py)
  out = sum_e m_e g_e(x) y_e + sum_h m_{E+h} c_h(x) z_h,    z_h the shared expert outputs,
  c_h = sigmoid(x · w_shared_gate) (Qwen2-MoE, one gate for all shared experts) or 1 (DeepSeek),
  g the router's dense gates (router.py; 0 where not selected), m = expert_mask (U,), traced:
  m_u = 0 removes unit u's contribution and leaves routing unchanged.
Activity (B, S, U), float32, after the mask (an ablated unit reads 0, as head_norms do):
  "dense"  a_u = |m_u| ‖y_u‖₂  (z_h for shared units): defined at every token, selected or not;
  "routed" a_u = |m_u g_u| ‖y_u‖₂ (c_h for shared units): exactly 0 where the router did not
           choose u. See docs/moe.md for why "routed" series are often degenerate for ΦID.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from synergy_jax.models import ops
from synergy_jax.models.moe import annotate
from synergy_jax.models.moe.config import MoESpec
from synergy_jax.models.moe.experts import StackedExperts
from synergy_jax.models.moe.router import Router, Routing

ACTIVITY_KINDS = ("dense", "routed")


@dataclasses.dataclass(frozen=True)
class MoEOutput:
  """out (B, S, D) in x's dtype; dense, routed (B, S, U) float32 activity (module docstring);
  routing: the router's decision (router.Routing)."""
  out: Any
  dense: Any
  routed: Any
  routing: Routing

  def activity(self, kind: str):
    if kind not in ACTIVITY_KINDS:
      raise ValueError(f"expert activity kind {kind!r} is not known (known: {ACTIVITY_KINDS})")
    return self.dense if kind == "dense" else self.routed


jax.tree_util.register_dataclass(MoEOutput, data_fields=["out", "dense", "routed", "routing"],
                                 meta_fields=[])


class MoEFeedForward(nnx.Module):
  """router (Router), experts (StackedExperts, E), shared (StackedExperts, H) or None,
  shared_gate (D,) nnx.Param or None (Qwen2-MoE's shared_expert_gate)."""

  def __init__(self, spec: MoESpec, maker=None, *, rngs: nnx.Rngs | None = None,
               dtype=jnp.float32, std: float = 0.02):
    """maker: the modules.ParamMaker of this module inside a model (a family's Block passes
    `maker.child("moe")`; weights get the leading layer axis and come from the params dict).
    Without one, the weights are drawn N(0, std²) from `rngs` (a standalone module)."""
    self.spec = spec
    m = spec.moe
    if maker is None:
      if rngs is None:
        raise ValueError("MoEFeedForward needs a maker (inside a model) or rngs (standalone)")
      maker = annotate.RandomMaker(rngs, dtype, std)
    self.router = Router(spec, maker.child("router"))
    self.experts = StackedExperts(maker.child("experts"), m.num_experts, spec.hidden_size,
                                  m.expert_intermediate_size, spec.hidden_act)
    self.shared = (StackedExperts(maker.child("shared"), m.num_shared_experts, spec.hidden_size,
                                  m.shared_expert_intermediate_size, spec.hidden_act)
                   if m.num_shared_experts else None)
    self.shared_gate = (maker.param("shared_gate", (spec.hidden_size,))
                        if m.shared_expert_gate else None)

  def __call__(self, x, expert_mask=None) -> MoEOutput:
    """x (B, S, D) (the post-attention-normed residual); expert_mask (U,) or None (all 1)."""
    m = self.spec.moe
    n_units = self.spec.num_units
    if expert_mask is None:
      mask = jnp.ones((n_units,), jnp.float32)
    else:
      mask = jnp.asarray(expert_mask, jnp.float32)
      if mask.shape != (n_units,):
        raise ValueError(f"expert_mask must have shape (routed + shared experts,) = "
                         f"({n_units},), got {mask.shape}")
    routing = self.router(x)
    y = self.experts(x)  # (B, S, E, D)
    coef = routing.gates * mask[:m.num_experts]  # (B, S, E)
    out = jnp.einsum("BSE,BSED->BSD", coef.astype(y.dtype), y,
                     precision=ops.precision_for(y.dtype), preferred_element_type=jnp.float32)
    norm = ops.head_norm(y)  # (B, S, E) float32
    dense = [jnp.abs(mask[:m.num_experts]) * norm]
    routed = [jnp.abs(coef) * norm]
    if self.shared is not None:
      z = self.shared(x)  # (B, S, H, D)
      c = jnp.ones(z.shape[:3], jnp.float32)  # (B, S, H)
      if self.shared_gate is not None:
        g = jnp.einsum("BSD,D->BS", x.astype(jnp.float32),
                       self.shared_gate[...].astype(jnp.float32), precision="highest")
        c = c * jax.nn.sigmoid(g)[..., None]
      ms = mask[m.num_experts:]
      out = out + jnp.einsum("BSH,BSHD->BSD", (c * ms).astype(z.dtype), z,
                             precision=ops.precision_for(z.dtype),
                             preferred_element_type=jnp.float32)
      zn = ops.head_norm(z)
      dense.append(jnp.abs(ms) * zn)
      routed.append(jnp.abs(c * ms) * zn)
    return MoEOutput(out.astype(x.dtype), jnp.concatenate(dense, -1),
                     jnp.concatenate(routed, -1), routing)
