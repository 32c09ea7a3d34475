"""DeepSeek-V2 multi-head latent attention (MLA) as a flax.nnx module: full-sequence causal
forward returning per-head outputs before o_proj (the unit activity head_norms measures) and the
per-token latent cache entries.

Axis letters: B batch, S query time, T key time, D hidden, N heads, Q q_lora_rank, C kv_lora_rank
(latent), P qk_nope_head_dim, R qk_rope_head_dim, V v_head_dim, H = P + R (query/key head dim),
W = P + V (kv_b output per head).

  q      = x W_q                       or  RMSNorm(x W_qa (+b)) W_qb          (B, S, N, H)
  [c|kr] = x W_kva (+b)                c (B, S, C) latent, kr (B, S, R) rope key shared by heads
  ĉ      = RMSNorm(c)   (eps 1e-6, see mla_config.LATENT_NORM_EPS)
  [kn|v] = ĉ W_kvb                     kn (B, S, N, P), v (B, S, N, V)
  q_R, k_R = rope(q[..., P:]), rope(kr)   (interleaved pairs (2i, 2i+1), scaled by YaRN's
                                       attention factor; only the rope parts rotate)
  score  = (q[..., :P] · kn + q_R · k_R) * softmax_scale, causal (+ padding) mask
  head_n = softmax(score) v            (B, S, N, V)   per-head output, masked by head_mask
  out    = sum_n head_n W_o[n] (+b)    (B, S, D)

Rotary layout: transformers' DeepseekV2 rotates interleaved pairs in place (view_as_complex),
and so do we. The installed transformers documents (deepseek_v3 apply_rotary_pos_emb_interleave)
that DeepSeek's original code instead de-interleaves the pairs and applies rotate-half, which
lays the rotated dims out as [evens | odds]: the attention scores are identical (q and k are
permuted alike), only the stored layout of the rotated key differs.

Cache: the deepseek_v2 family (models/deepseek_v2.py) caches, per token, the normed latent ĉ (C,)
and the rotated shared rope key k_R (R,), i.e. C + R numbers per token per layer instead of
2 N K for full K/V (what transformers 5 caches too), and either recomputes k_nope and v from the
cached latents through kv_b (`LatentWeights.expand`, the "expanded" form) or folds kv_b into the
query and the output (`absorb_query`, `values_from_latent`: the "absorbed" form of decoding
steps); `MLAOutput.latent` and `.rope_key` are those entries. `LatentWeights` holds the
projections both paths share.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models import ops
from synergy_jax.models.moe import annotate, yarn
from synergy_jax.models.moe.mla_config import MLAConfig


@dataclasses.dataclass(frozen=True)
class MLAOutput:
  """out (B, S, D); heads (B, S, N, V) per-head outputs before o_proj (after head_mask);
  latent (B, S, C) normed latent ĉ and rope_key (B, S, R) rotated k_R: the cache entries."""
  out: Any
  heads: Any
  latent: Any
  rope_key: Any


jax.tree_util.register_dataclass(MLAOutput, data_fields=["out", "heads", "latent", "rope_key"],
                                 meta_fields=[])


def rope_tables(cfg: MLAConfig) -> tuple[np.ndarray, float]:
  """(inverse frequencies (R/2,) float32, attention factor) of the rope parts."""
  r = cfg.qk_rope_head_dim
  if cfg.rope_type == "yarn":
    return (yarn.yarn_inv_freq(r, cfg.rope_theta, cfg.rope, cfg.max_position_embeddings),
            yarn.yarn_attention_factor(cfg.rope, cfg.max_position_embeddings))
  exponents = np.arange(0, r, 2, dtype=np.float32) / np.float32(r)
  return (1.0 / (np.float32(cfg.rope_theta) ** exponents)).astype(np.float32), 1.0


def rope_interleaved(x, cos, sin):
  """Rotates pairs (x[2i], x[2i+1]) of x (B, S, ..., R) by angles with cos, sin (B, S, R/2)
  (already scaled by the attention factor); computed in float32, returned in x's dtype."""
  xf = x.astype(jnp.float32)
  extra = (None,) * (x.ndim - 3)
  c, s = cos[(slice(None), slice(None)) + extra], sin[(slice(None), slice(None)) + extra]
  x1, x2 = xf[..., 0::2], xf[..., 1::2]
  out = jnp.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
  return out.reshape(x.shape).astype(x.dtype)


def _einsum(spec, a, b):
  return jnp.einsum(spec, a, b, precision=ops.precision_for(a.dtype),
                    preferred_element_type=jnp.float32).astype(a.dtype)


def _normal(rngs, shape, dtype, std, path):
  return annotate.param(std * jax.random.normal(rngs.params(), shape, dtype), path)


def rope_angles(cfg: MLAConfig, positions):
  """cos, sin (B, S, R/2) float32 of the rope parts at integer positions (B, S), already
  multiplied by YaRN's attention factor (1 for the default rope)."""
  inv_freq, factor = rope_tables(cfg)
  ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # (B, S, R/2)
  return jnp.cos(ang) * factor, jnp.sin(ang) * factor


def declare(module: nnx.Module, cfg: MLAConfig, make) -> None:
  """Sets the MLA weights on `module` (layout of LatentWeights) with make(name, shape, init) ->
  nnx.Param, init one of "normal", "ones", "zeros" (the HF initialisation of the tensor)."""
  module.cfg = cfg
  d, n, h = cfg.hidden_size, cfg.num_heads, cfg.qk_head_dim
  c, r, p, v = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
  if cfg.q_lora_rank is None:
    module.q = make("q", (d, n, h), "normal")
  else:
    module.q_a = make("q_a", (d, cfg.q_lora_rank), "normal")
    module.q_a_norm = make("q_a_norm", (cfg.q_lora_rank,), "ones")
    module.q_b = make("q_b", (cfg.q_lora_rank, n, h), "normal")
    if cfg.attention_bias:
      module.q_a_bias = make("q_a_bias", (cfg.q_lora_rank,), "zeros")
  module.kv_a = make("kv_a", (d, c + r), "normal")
  if cfg.attention_bias:
    module.kv_a_bias = make("kv_a_bias", (c + r,), "zeros")
  module.kv_a_norm = make("kv_a_norm", (c,), "ones")
  module.kv_b = make("kv_b", (c, n, p + v), "normal")
  module.o = make("o", (n, v, d), "normal")
  if cfg.attention_bias:
    module.o_bias = make("o_bias", (d,), "zeros")


class LatentWeights(nnx.Module):
  """The MLA weights and the projections around the attention core, shared by the standalone
  module below and the deepseek_v2 family's decoder Block (which attends through the
  decoder's latent cache). Weights (module layout; HF names in checkpoint_mla): q (D, N, H) or
  q_a (D, Q), q_a_norm (Q,), q_b (Q, N, H); kv_a (D, C + R), kv_a_norm (C,), kv_b (C, N, P + V),
  o (N, V, D); with attention_bias also q_a_bias (Q,) (when q_lora_rank is set), kv_a_bias
  (C + R,), o_bias (D,). Subclasses set them with `declare`."""

  def queries(self, x):
    """x (B, S, D) -> q (B, S, N, H), before rope."""
    cfg = self.cfg
    if cfg.q_lora_rank is None:
      return _einsum("BSD,DNH->BSNH", x, self.q[...])
    qa = _einsum("BSD,DQ->BSQ", x, self.q_a[...])
    if cfg.attention_bias:
      qa = qa + self.q_a_bias[...]
    qa = ops.rms_norm(qa, self.q_a_norm[...], cfg.latent_norm_eps)
    return _einsum("BSQ,QNH->BSNH", qa, self.q_b[...])

  def compress(self, x):
    """x (B, S, D) -> (normed latent ĉ (B, S, C), rope key k_R (B, S, R) before rope)."""
    cfg = self.cfg
    c = cfg.kv_lora_rank
    ckv = _einsum("BSD,DX->BSX", x, self.kv_a[...])  # X = C + R
    if cfg.attention_bias:
      ckv = ckv + self.kv_a_bias[...]
    return ops.rms_norm(ckv[..., :c], self.kv_a_norm[...], cfg.latent_norm_eps), ckv[..., c:]

  def expand(self, latent):
    """Normed latent (B, T, C) -> (k_nope (B, T, N, P), v (B, T, N, V)) through kv_b."""
    kv = _einsum("BTC,CNW->BTNW", latent, self.kv_b[...])
    return kv[..., :self.cfg.qk_nope_head_dim], kv[..., self.cfg.qk_nope_head_dim:]

  def absorb_query(self, q_nope):
    """q_nope (B, S, N, P) -> q_nope W_UK[n]ᵀ (B, S, N, C), W_UK = kv_b[:, :, :P]: the query
    in latent space, so that its dot product with a normed latent ĉ equals q_nope · k_nope."""
    return _einsum("BSNP,CNP->BSNC", q_nope, self.kv_b[..., :self.cfg.qk_nope_head_dim])

  def values_from_latent(self, mixed):
    """Attention-weighted latent sums (B, S, N, C) -> per-head outputs (B, S, N, V) through
    W_UV = kv_b[:, :, P:] (equal to the attention-weighted sums of per-head values ĉ W_UV)."""
    return _einsum("BSNC,CNV->BSNV", mixed, self.kv_b[..., self.cfg.qk_nope_head_dim:])

  def output(self, heads):
    """Per-head outputs (B, S, N, V) -> (B, S, D) through o (+ o_bias)."""
    out = _einsum("BSNV,NVD->BSD", heads, self.o[...])
    return out + self.o_bias[...] if self.cfg.attention_bias else out


class MultiHeadLatentAttention(LatentWeights):
  """Standalone MLA over a full sequence (no cache), random weights at construction."""

  def __init__(self, cfg: MLAConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, std: float = 0.02):
    def make(name, shape, init):
      if init == "normal":
        return _normal(rngs, shape, dtype, std, name)
      return annotate.param((jnp.ones if init == "ones" else jnp.zeros)(shape, dtype), name)
    declare(self, cfg, make)

  def __call__(self, x, positions=None, valid=None, *, head_mask=None) -> MLAOutput:
    """x (B, S, D); positions (B, S) int (default 0 .. S-1); valid (B, S) bool (False =
    padding; default all True); head_mask (N,) scales each head's output (0 ablates)."""
    cfg = self.cfg
    b, s, _ = x.shape
    p = cfg.qk_nope_head_dim
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
    if valid is None:
      valid = jnp.ones((b, s), bool)
    q = self.queries(x)  # (B, S, N, H)
    latent, k_rope = self.compress(x)  # (B, S, C), (B, S, R)
    k_nope, v = self.expand(latent)  # (B, S, N, P), (B, S, N, V)
    cos, sin = rope_angles(cfg, positions)
    q_rope = rope_interleaved(q[..., p:], cos, sin)  # (B, S, N, R)
    k_rope = rope_interleaved(k_rope, cos, sin)  # (B, S, R)

    scores = (jnp.einsum("BSNP,BTNP->BNST", q[..., :p], k_nope,
                         precision=ops.precision_for(x.dtype),
                         preferred_element_type=jnp.float32)
              + jnp.einsum("BSNR,BTR->BNST", q_rope, k_rope,
                           precision=ops.precision_for(x.dtype),
                           preferred_element_type=jnp.float32)) * cfg.softmax_scale
    visible = ops.attention_mask(positions, positions, valid, 0)  # (B, S, T)
    scores = jnp.where(visible[:, None], scores, ops.MASK_VALUE)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    heads = _einsum("BNST,BTNV->BSNV", probs, v)
    if head_mask is not None:
      hm = jnp.asarray(head_mask)
      if hm.shape != (cfg.num_heads,):
        raise ValueError(f"head_mask must have shape (heads,) = ({cfg.num_heads},), got "
                         f"{hm.shape}")
      heads = heads * hm.astype(heads.dtype)[None, None, :, None]
    return MLAOutput(self.output(heads), heads, latent, k_rope)
