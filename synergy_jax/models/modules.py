"""The building blocks every family shares, as Flax NNX modules: norms, attention, MLPs, and the
parameter maker that gives each weight its value, shape check and sharding annotation.

A family's Block (llama.Block, gemma.Block, ...) is assembled from these; the decoder
(decoder.py) scans a stack of Blocks. Each module declares its weights through a `ParamMaker`:
`maker.param("q", (D, N, K))` is an `nnx.Param` of shape (*stack, D, N, K), where `stack` is
the leading axes of a layer stack (layers, and experts for per-expert weights), annotated with
the family's model-parallel axis (contract.DENSE_SHARD_AXES, sharding.py). Its value comes from
the params dict the module is built from (strictly: wrong shapes, and leaves no module asks
for, are errors naming the leaf), or is a zero placeholder when building the abstract model
under `nnx.eval_shape`, whose template load/init then fill (convert.fill).

Each module's __call__ runs one layer on unstacked weights; the math is ops.py's.
Axis letters: B batch, S time, D hidden, N query heads, M key/value heads, K head dim,
F feed-forward width.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models import ops, sharding
from synergy_jax.models.config import ModelConfig


class ParamMaker:
  """Makes the nnx.Params of one module: path prefix, stacked leading axes, values source.

  values: the params dict of the whole model (nested, family layout; an nnx.State of
    nnx.Params works too) or None (zero
  placeholders, for nnx.eval_shape). Every leaf taken is recorded in `used` (shared by all
  makers of one model) so that the model can reject leaves nobody asked for.
  """

  def __init__(self, cfg: ModelConfig, dtype, values: Mapping[str, Any] | None,
               prefix: tuple[str, ...] = (), stack: tuple[int, ...] = (), used=None):
    self.cfg, self.dtype, self.values = cfg, dtype, values
    self.prefix, self.stack = prefix, stack
    self.used = set() if used is None else used

  def child(self, name: str, stack: tuple[int, ...] | None = None) -> "ParamMaker":
    """The maker of a sub-module at attribute `name` (optionally with new stacked axes)."""
    return ParamMaker(self.cfg, self.dtype, self.values, self.prefix + (name,),
                      self.stack if stack is None else stack, self.used)

  def param(self, name: str, shape: tuple[int, ...]) -> nnx.Param:
    """The nnx.Param at prefix/name, shape (*stack, *shape)."""
    path = self.prefix + (name,)
    full = tuple(self.stack) + tuple(shape)
    if self.values is None:
      value = jnp.zeros(full, self.dtype)
    else:
      node = self.values
      try:
        for k in path:
          node = node[k]
      except (KeyError, TypeError):
        raise ValueError(f"{self.cfg.family} model: params lack leaf {'/'.join(path)} "
                         f"(shape {full})") from None
      value = node.get_value() if isinstance(node, nnx.Variable) else node  # an nnx.State too
      if tuple(np.shape(value)) != full:
        raise ValueError(f"{self.cfg.family} model: params leaf {'/'.join(path)} has shape "
                         f"{tuple(np.shape(value))}, the model expects {full}")
    self.used.add(path)
    return nnx.Param(value, out_sharding=sharding.annotation("/".join(path), len(full),
                                                             self.cfg),
                     eager_sharding=False)

  def optional(self, name: str, shape: tuple[int, ...], present: bool) -> nnx.Param | None:
    return self.param(name, shape) if present else None


def _add(y, b):
  return y if b is None else y + b.get_value().astype(y.dtype)


def project(spec: str, x, w: nnx.Param, b: nnx.Param | None = None):
  """einsum(spec, x, w) + b, float32 accumulation, in x's dtype."""
  return _add(ops.linear(spec, x, w.get_value()), b)


# ---------------------------------------------------------------------------------------------
# Norms
# ---------------------------------------------------------------------------------------------

class RMSNorm(nnx.Module):
  """x / rms(x) * (offset + weight) over the last axis; weight (dim,). offset=1 is Gemma's
  (1 + w) norm, whose weights are stored as offsets from 1 (see GemmaRMSNorm)."""

  def __init__(self, maker: ParamMaker, dim: int, eps: float, offset: float = 0.0):
    self.weight = maker.param("weight", (dim,))
    self.eps, self.offset = float(eps), float(offset)

  def __call__(self, x):
    return ops.rms_norm(x, self.weight.get_value(), self.eps, offset=self.offset)


class GemmaRMSNorm(RMSNorm):
  """RMSNorm scaling by (1 + weight)."""

  def __init__(self, maker: ParamMaker, dim: int, eps: float):
    super().__init__(maker, dim, eps, offset=1.0)


class LayerNorm(nnx.Module):
  """Standardise over the last axis, then scale by weight (dim,) and shift by bias (dim,)."""

  def __init__(self, maker: ParamMaker, dim: int, eps: float):
    self.weight = maker.param("weight", (dim,))
    self.bias = maker.param("bias", (dim,))
    self.eps = float(eps)

  def __call__(self, x):
    return ops.layer_norm(x, self.weight.get_value(), self.bias.get_value(), self.eps)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------

class Attention(nnx.Module):
  """Self-attention with separate q/k/v projections and per-head output before o.

  q (D, N, K), k/v (D, M, K), o (N, K, D); optional q_bias/k_bias/v_bias (N|M, K), o_bias (D,);
  optional q_norm/k_norm (an RMSNorm or GemmaRMSNorm over K, applied per head before rotary).
  rope: "default" rotates q and k with the default table; "local_global" uses the "local"
  table on sliding-window layers and the default one elsewhere (Gemma 3); None: no rotary.
  scale (default K^-1/2) and softcap (tanh capping of scores) are static.

  __call__(x (B, S, D), attend) -> (B, S, D). The attention core, the key/value cache, the head
  mask, mean ablation and capture are `attend`'s (decoder.Attend): the per-head outputs it
  returns, (B, S, N, K), are what head_norms measures.
  """

  def __init__(self, maker: ParamMaker, cfg: ModelConfig, *, qkv_bias: bool = False,
               o_bias: bool = False, qk_norm: type[RMSNorm] | None = None,
               rope: str | None = "default", scale: float | None = None,
               softcap: float | None = None):
    d, n, m, k = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    if rope not in (None, "default", "local_global"):
      raise ValueError(f"Attention rope={rope!r} (expected None, 'default' or 'local_global')")
    self.q = maker.param("q", (d, n, k))
    self.k = maker.param("k", (d, m, k))
    self.v = maker.param("v", (d, m, k))
    self.o = maker.param("o", (n, k, d))
    self.q_bias = maker.optional("q_bias", (n, k), qkv_bias)
    self.k_bias = maker.optional("k_bias", (m, k), qkv_bias)
    self.v_bias = maker.optional("v_bias", (m, k), qkv_bias)
    self.o_bias = maker.optional("o_bias", (d,), o_bias)
    self.q_norm = None if qk_norm is None else qk_norm(maker.child("q_norm"), k, cfg.norm_eps)
    self.k_norm = None if qk_norm is None else qk_norm(maker.child("k_norm"), k, cfg.norm_eps)
    self.rope = rope
    self.scale = None if scale is None else float(scale)
    self.softcap = None if softcap is None else float(softcap)

  def _rotate(self, x, attend):
    if self.rope is None:
      return x
    if self.rope == "local_global":
      return jnp.where(attend.window > 0, attend.rope(x, "local"), attend.rope(x, "default"))
    return attend.rope(x)

  def __call__(self, x, attend):
    q = project("BSD,DNK->BSNK", x, self.q, self.q_bias)  # (B, S, N, K)
    k = project("BSD,DMK->BSMK", x, self.k, self.k_bias)  # (B, S, M, K)
    v = project("BSD,DMK->BSMK", x, self.v, self.v_bias)  # (B, S, M, K)
    if self.q_norm is not None:
      q, k = self.q_norm(q), self.k_norm(k)
    heads = attend(self._rotate(q, attend), self._rotate(k, attend), v, scale=self.scale,
                   softcap=self.softcap)  # (B, S, N, K)
    return project("BSNK,NKD->BSD", heads, self.o, self.o_bias)


# ---------------------------------------------------------------------------------------------
# MLPs
# ---------------------------------------------------------------------------------------------

class GatedMLP(nnx.Module):
  """down(act(gate(x)) * up(x)): gate/up (D, F), down (F, D); optional biases (F,), (F,), (D,)."""

  def __init__(self, maker: ParamMaker, cfg: ModelConfig, *, bias: bool = False):
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.gate = maker.param("gate", (d, f))
    self.up = maker.param("up", (d, f))
    self.down = maker.param("down", (f, d))
    self.gate_bias = maker.optional("gate_bias", (f,), bias)
    self.up_bias = maker.optional("up_bias", (f,), bias)
    self.down_bias = maker.optional("down_bias", (d,), bias)
    self.act = cfg.hidden_act

  def __call__(self, x):
    g = project("BSD,DF->BSF", x, self.gate, self.gate_bias)  # (B, S, F)
    u = project("BSD,DF->BSF", x, self.up, self.up_bias)  # (B, S, F)
    return project("BSF,FD->BSD", ops.activation(self.act, g) * u, self.down, self.down_bias)


class MLP(nnx.Module):
  """down(act(up(x) + up_bias)) + down_bias: up (D, F), up_bias (F,), down (F, D), down_bias (D,)."""

  def __init__(self, maker: ParamMaker, cfg: ModelConfig):
    d, f = cfg.hidden_size, cfg.intermediate_size
    self.up = maker.param("up", (d, f))
    self.up_bias = maker.param("up_bias", (f,))
    self.down = maker.param("down", (f, d))
    self.down_bias = maker.param("down_bias", (d,))
    self.act = cfg.hidden_act

  def __call__(self, x):
    u = project("BSD,DF->BSF", x, self.up, self.up_bias)  # (B, S, F)
    return project("BSF,FD->BSD", ops.activation(self.act, u), self.down, self.down_bias)


# ---------------------------------------------------------------------------------------------
# Embedding and output head (top-level weights: embed (V, D), lm_head (V, D))
# ---------------------------------------------------------------------------------------------

def lookup(embed: nnx.Param, ids):
  """ids (B, S) int -> (B, S, D) rows of embed (V, D)."""
  return embed.get_value()[ids]


def logits(x, table: nnx.Param):
  """x (B, S, D) -> (B, S, V) float32 against the output table (V, D) (lm_head or the tied
  embedding)."""
  return ops.einsum("BSD,VD->BSV", x, table.get_value(), out_dtype=jnp.float32)


def embed_and_head(cfg: ModelConfig, maker: ParamMaker, final_norm, **extra) -> dict:
  """The weights outside the layer stack of a decoder with one token table: embed (V, D),
  final_norm (an instance of the norm class `final_norm`), lm_head (V, D) unless the embedding
  is tied; `extra` maps further names to shapes (e.g. GPT-2's pos_embed)."""
  d, v = cfg.hidden_size, cfg.vocab_size
  out = {"embed": maker.param("embed", (v, d)),
         **{name: maker.param(name, shape) for name, shape in extra.items()},
         "final_norm": final_norm(maker.child("final_norm"), d, cfg.norm_eps)}
  if not cfg.tie_word_embeddings:
    out["lm_head"] = maker.param("lm_head", (v, d))
  return out


def head_logits(cfg: ModelConfig, model, x):
  """x (B, S, D) -> logits (B, S, V) float32: the final norm, then lm_head or the tied
  embedding (the outer weights of `embed_and_head`)."""
  return logits(model.final_norm(x), model.embed if cfg.tie_word_embeddings else model.lm_head)
