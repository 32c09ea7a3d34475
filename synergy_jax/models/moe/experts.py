"""Expert MLPs stacked on an expert axis, evaluated for every expert at once (one einsum per
projection; no Python loop over experts).

Axis letters: B batch, S time, D hidden, E experts on the stacked axis (routed experts, or the
shared experts), F one expert's intermediate width.

One expert: E_e(x) = (act(x W_gate[e]) * (x W_up[e])) W_down[e]   with W_gate, W_up (E, D, F) and
W_down (E, F, D) (HF per-expert `gate_proj`/`up_proj` are (F, D) and `down_proj` (D, F), i.e. the
transposes; Mixtral calls them w1, w3, w2).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from synergy_jax.models import ops

def _einsum(spec, a, b):
  """Full precision for float32 inputs (parity path). Lower-precision inputs give their own
  dtype out: XLA:CPU has no batched bf16 x bf16 -> f32 dot ("Unsupported element type for
  DotThunk"), which the per-expert down projection is; GPU/TPU accumulate in f32 regardless."""
  out_type = jnp.float32 if a.dtype == jnp.float32 else None
  return jnp.einsum(spec, a, b, precision=ops.precision_for(a.dtype),
                    preferred_element_type=out_type).astype(a.dtype)


def expert_outputs(x, gate, up, down, act: str):
  """Every expert's output at every token: x (B, S, D), gate/up (E, D, F), down (E, F, D)
  -> (B, S, E, D) in x's dtype."""
  h = ops.activation(act, _einsum("BSD,EDF->BSEF", x, gate)) * _einsum("BSD,EDF->BSEF", x, up)
  return _einsum("BSEF,EFD->BSED", h, down)


class StackedExperts(nnx.Module):
  """E gated MLPs of width F stacked on axis 0: gate, up (E, D, F), down (E, F, D)."""

  def __init__(self, maker, num_experts: int, hidden_size: int, width: int, act: str):
    """maker: a modules.ParamMaker (inside a model; leading layer axis) or an
    annotate.RandomMaker (standalone) at this module's path ("experts" or "shared")."""
    self.act = act
    e, d, f = num_experts, hidden_size, width
    self.gate = maker.param("gate", (e, d, f))
    self.up = maker.param("up", (e, d, f))
    self.down = maker.param("down", (e, f, d))

  @property
  def num_experts(self) -> int:
    return self.gate.shape[0]

  def __call__(self, x):
    """x (B, S, D) -> every expert's output (B, S, E, D)."""
    return expert_outputs(x, self.gate[...], self.up[...], self.down[...], self.act)

