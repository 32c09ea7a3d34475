"""DeepSeek-V2 decoders: HF model_type `deepseek_v2` (DeepSeek-V2, DeepSeek-V2-Lite).

Pre-norm blocks with RMSNorm; multi-head latent attention (MLA, moe/mla.py) with a LATENT
key/value cache; the first `first_k_dense_replace` layers have a dense gated MLP, the others a
mixture of experts (moe/block.py: routed experts, greedy or group-limited top-k, the
routed_scaling_factor, and n_shared_experts shared experts that see every token).

Axis letters: L layers (of a segment), D hidden, N heads, Q q_lora_rank, C kv_lora_rank (the
latent), P qk_nope_head_dim, R qk_rope_head_dim, H = P + R (query/key head dim), V v_head_dim
(per-head output width), F intermediate_size, E routed experts, S shared experts, Fe
moe_intermediate_size (one expert's width), T vocabulary.

Segments and parameter state (each segment's layers stacked on axis 0):
  embed (T, D); final_norm: RMSNorm {weight (D,)}; lm_head (T, D) unless tie_word_embeddings;
  dense_layers (layers 0 .. k-1) and moe_layers (k .. L-1), each a Block:
    attn_norm: RMSNorm {weight (L, D)}
    attn: Attention {q (L, D, N, H) | q_a (L, D, Q), q_a_norm (L, Q), q_b (L, Q, N, H);
          kv_a (L, D, C + R), kv_a_norm (L, C), kv_b (L, C, N, P + V), o (L, N, V, D);
          with attention_bias: q_a_bias (L, Q), kv_a_bias (L, C + R), o_bias (L, D)}
    mlp_norm: RMSNorm {weight (L, D)}
    mlp: dense_layers: GatedMLP {gate (L, D, F), up (L, D, F), down (L, F, D)}
         moe_layers:   MoE {router: {w (L, D, E)}, experts: {gate, up (L, E, D, Fe),
                       down (L, E, Fe, D)}, shared: {gate, up (L, S, D, Fe), down (L, S, Fe, D)}}
HF stores the S shared experts as ONE MLP of width S * Fe (`mlp.shared_experts.*`); it is split
here into S experts of width Fe (their outputs sum to the fused MLP's output exactly), and the
routed experts' per-expert tensors `mlp.experts.{e}.*` are stacked on the expert axis.

The cache (Family.cache_layout) holds per layer and token slot the normed latent ĉ (C,) and the
rotated shared rope key k_R (R,), not K and V: decoding steps attend over the cached ĉ with kv_b
folded into the query and the output ("absorbed", the default; or rebuild k_nope and v of every
cached slot through kv_b, "expanded": Attention, with_decode; docs/moe.md, "The latent cache").
head_dim of the ModelConfig is V, the width of a head's output (head_norms, head_outputs and
head_means use it); the query/key head dim H lives in config.mla.

Units (Family.units): heads; head n owns its query-projection slice (q[:, n] or q_b[:, n]) and
its output-projection rows o[n], as for the dense families. q_a, kv_a and kv_b feed every head
through the shared latent and belong to no head.

Where transformers and DeepSeek's original code differ (rope layout, YaRN attention factor,
norm_topk_prob, moe_layer_freq): see moe/mla.py, moe/yarn.py and moe/config.py; we follow the
installed transformers and refuse the settings on which the two disagree.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import modules
from synergy_jax.models.config import ModelConfig
from synergy_jax.models.contract import Segment, UnitParam
from synergy_jax.models.moe import block, checkpoint_mla, mla
from synergy_jax.models.moe.config import MoESpec, moe_from_hf, moe_to_hf
from synergy_jax.models.moe.mla_config import MLAConfig, mla_from_hf, mla_to_hf

MODEL_TYPE = "deepseek_v2"
DENSE, MOE = "dense_layers", "moe_layers"  # segment keys
Weight = cv.Weight


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------

def config_from_hf(hf: dict) -> ModelConfig:
  """ModelConfig of a deepseek_v2 config dict. Strict: moe_from_hf checks every field (dense,
  MoE and MLA ones) and raises naming any we do not implement; mla_from_hf the MLA values."""
  spec = moe_from_hf(hf)  # check_moe_keys: the whole key set
  att = mla_from_hf(hf)
  C.require_no_attention_dropout(hf, MODEL_TYPE)
  return ModelConfig(
      family=MODEL_TYPE,
      model_type=MODEL_TYPE,
      vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]),
      intermediate_size=int(hf["intermediate_size"]),
      num_layers=int(hf["num_hidden_layers"]),
      num_heads=att.num_heads,
      num_kv_heads=att.num_heads,  # kv_b yields keys and values per query head
      head_dim=att.v_head_dim,  # the per-head output width (module docstring)
      max_position_embeddings=att.max_position_embeddings,
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      rope_theta=att.rope_theta,  # the rope (YaRN included) is config.mla's
      hidden_act=spec.hidden_act,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"),
      moe=spec.moe,
      mla=att,
  )


def moe_spec(cfg: ModelConfig) -> MoESpec:
  """The MoE layers' settings of a deepseek_v2 config (routing in cfg.moe; shared experts of
  the routed width)."""
  return MoESpec.of(cfg)


def config_to_hf(cfg: ModelConfig) -> dict:
  """The HF config.json dict (inverse of config_from_hf; transformers reads it)."""
  att: MLAConfig = cfg.mla
  if att.hidden_size != cfg.hidden_size or att.num_heads != cfg.num_heads:
    raise ValueError(f"deepseek_v2 config: mla sizes (hidden {att.hidden_size}, heads "
                     f"{att.num_heads}) disagree with the model's ({cfg.hidden_size}, "
                     f"{cfg.num_heads})")
  return {
      "architectures": ["DeepseekV2ForCausalLM"], "model_type": MODEL_TYPE,
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_layers,
      "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_heads,
      "hidden_act": C.activation_to_hf(cfg.hidden_act), "rms_norm_eps": cfg.norm_eps,
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "initializer_range": cfg.initializer_range, "bos_token_id": cfg.bos_token_id,
      "eos_token_id": C.eos_to_hf(cfg.eos_token_ids), "pad_token_id": cfg.pad_token_id,
      "attention_dropout": 0.0, "mlp_bias": False,
      **moe_to_hf(moe_spec(cfg), MODEL_TYPE, cfg.num_layers),
      **mla_to_hf(att),
  }


def with_decode(model, kind: str):
  """The deepseek_v2 `model` (a models.Model, same params) decoding with MLA form `kind`
  (mla_config.DECODE_KINDS: "absorbed", the default, or "expanded"; Attention docstring)."""
  cfg = model.config
  if cfg.family != MODEL_TYPE:
    raise ValueError(f"with_decode: the decode form is a {MODEL_TYPE} setting, the model's "
                     f"family is {cfg.family!r}")
  mla_cfg = dataclasses.replace(cfg.mla, decode=kind)  # MLAConfig checks kind
  return model.replace(config=dataclasses.replace(cfg, mla=mla_cfg))


def segments(cfg: ModelConfig) -> tuple[Segment, ...]:
  """Dense layers 0 .. k-1, then MoE layers k .. L-1 (either may be empty)."""
  layers = tuple(cfg.moe.moe_layers)
  first = layers[0] if layers else cfg.num_layers
  if layers != tuple(range(first, cfg.num_layers)):
    raise ValueError(f"deepseek_v2 MoE layers {layers} are not the last layers {first}.."
                     f"{cfg.num_layers - 1}")
  segs = []
  if first:
    segs.append(Segment(DENSE, 0, first, DenseBlock))
  if first < cfg.num_layers:
    segs.append(Segment(MOE, first, cfg.num_layers, MoEBlock))
  return tuple(segs)


def cache_layout(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Per layer and token slot: the normed latent ĉ (C,) and the rotated rope key k_R (R,)."""
  return {"latent": (cfg.mla.kv_lora_rank,), "rope_key": (cfg.mla.qk_rope_head_dim,)}


def units(cfg: ModelConfig) -> tuple[UnitParam, ...]:
  """Heads of every segment: q (or q_b) [l, :, n, :] and o [l, n, :, :] (module docstring),
  numbered by layer across the segments; experts of the MoE segment: routed expert e owns
  mlp.experts.{gate,up,down}[l, e] (unit e), shared expert h mlp.shared.*[l, h] (unit E + h).
  The router belongs to no unit."""
  q = "q" if cfg.mla.q_lora_rank is None else "q_b"
  out = [UnitParam((s.key, "attn", leaf), 0, axis, layer_start=s.start)
         for s in segments(cfg) for leaf, axis in ((q, 2), ("o", 1))]
  m = cfg.moe
  if m is not None and m.moe_layers:
    for group, first in (("experts", 0), ("shared", m.num_experts)):
      if group == "shared" and not m.num_shared_experts:
        continue
      out += [UnitParam((MOE, "mlp", group, leaf), 0, 1, "weight", "experts", 0, first)
              for leaf in ("gate", "up", "down")]
  return tuple(out)


def _shard_axes() -> dict[str, int]:
  """Split axes (counting the leading layer axis): heads for attention, the width of dense
  MLPs and shared experts, the expert axis of routed experts, the vocabulary for embeddings."""
  per_layer = {"attn/q": 2, "attn/q_b": 2, "attn/kv_b": 2, "attn/o": 1,
               "mlp/gate": 2, "mlp/up": 2, "mlp/down": 1,
               "mlp/experts/gate": 1, "mlp/experts/up": 1, "mlp/experts/down": 1,
               "mlp/shared/gate": 3, "mlp/shared/up": 3, "mlp/shared/down": 2}
  out = {f"{seg}/{k}": v for seg in (DENSE, MOE) for k, v in per_layer.items()}
  return {**out, "embed": 0, "lm_head": 0}


# ---------------------------------------------------------------------------------------------
# Checkpoint layout
# ---------------------------------------------------------------------------------------------

def _split_in(hf: str, n: int, f: int, d: int, key: str) -> Weight:
  """A fused (n*f, d) Linear weight (n MLPs' gate or up rows) stored as (n, d, f)."""
  return cv.Weight(hf, (n * f, d), (key,),
                   lambda x: (x.reshape(*x.shape[:-2], n, f, d).swapaxes(-1, -2),),
                   lambda t: t[0].swapaxes(-1, -2).reshape(*t[0].shape[:-3], n * f, d))


def _split_out(hf: str, d: int, n: int, f: int, key: str) -> Weight:
  """A fused (d, n*f) Linear weight (n MLPs' down columns) stored as (n, f, d)."""
  return cv.Weight(hf, (d, n * f), (key,),
                   lambda x: (x.reshape(*x.shape[:-2], d, n, f).swapaxes(-3, -2)
                              .swapaxes(-1, -2),),
                   lambda t: t[0].swapaxes(-1, -2).swapaxes(-3, -2)
                   .reshape(*t[0].shape[:-3], d, n * f))


def _moe_mlp(cfg: ModelConfig, p: str) -> list[Weight]:
  m = cfg.moe
  d, e, f, s = cfg.hidden_size, m.num_experts, m.expert_intermediate_size, m.num_shared_experts
  x = p + "experts.{e}."
  ws = [cv.linear(p + "gate.weight", (e,), d, "mlp/router/w"),
        cv.linear(x + "gate_proj.weight", (f,), d, "mlp/experts/gate"),
        cv.linear(x + "up_proj.weight", (f,), d, "mlp/experts/up"),
        cv.linear(x + "down_proj.weight", (d,), f, "mlp/experts/down")]
  if s:
    sp = p + "shared_experts."
    ws += [_split_in(sp + "gate_proj.weight", s, f, d, "mlp/shared/gate"),
           _split_in(sp + "up_proj.weight", s, f, d, "mlp/shared/up"),
           _split_out(sp + "down_proj.weight", d, s, f, "mlp/shared/down")]
  return ws


def weights(cfg: ModelConfig) -> list[Weight]:
  """HF tensors: per layer "{i}" (global index) in its segment, per routed expert "{e}"."""
  d, f, t = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
  p = "model.layers.{i}."
  ws = [cv.same("model.embed_tokens.weight", (t, d), "embed"),
        cv.same("model.norm.weight", (d,), "final_norm/weight", "ones")]
  if not cfg.tie_word_embeddings:
    ws.append(cv.same("lm_head.weight", (t, d), "lm_head"))
  for seg in segments(cfg):
    layer = [cv.same(p + "input_layernorm.weight", (d,), "attn_norm/weight", "ones"),
             cv.same(p + "post_attention_layernorm.weight", (d,), "mlp_norm/weight", "ones"),
             *checkpoint_mla.attention_weights(cfg.mla, p + "self_attn.", "attn/")]
    if seg.key == DENSE:
      layer += [cv.linear(p + "mlp.gate_proj.weight", (f,), d, "mlp/gate"),
                cv.linear(p + "mlp.up_proj.weight", (f,), d, "mlp/up"),
                cv.linear(p + "mlp.down_proj.weight", (d,), f, "mlp/down")]
    else:
      layer += _moe_mlp(cfg, p + "mlp.")
    ws += [dataclasses.replace(w, segment=seg.key) for w in layer]
  return ws


def ignorable(name: str) -> bool:
  # Old checkpoints carry the rotary buffer; it is recomputed from the config.
  return name.endswith("rotary_emb.inv_freq")


# ---------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------

class Attention(mla.LatentWeights):
  """MLA through the decoder's latent cache: (B, S, D) -> (B, S, D).

  Writes ĉ (B, S, C) and the rotated k_R (B, S, R) of the current tokens with attend.cache and
  attends over every returned slot (C' cache slots, or the S tokens without a cache) with
  attend.core; the per-head outputs (B, S, N, V) are head_norms' activity. Two exact forms
  (mla_config.DECODE_KINDS, `cfg.decode`):
    expanded: rebuilds every slot's keys [k_nope | k_R] (B, C', N, H) and values (B, C', N, V)
      through kv_b, then attends per head;
    absorbed (decoding steps only: a cache and one query token): the query in latent space
      [q_nope W_UKᵀ | q_R] (B, 1, N, C + R) attends over [ĉ | k_R] (B, C', 1, C + R) as one
      key/value head shared by all query heads, values ĉ; W_UV maps the attention-weighted
      latent sum (B, 1, N, C) to the per-head outputs. W_UV is applied inside attend.core
      (project=), so the head mask, mean ablation and head_norms act on the per-head outputs in
      both forms."""

  def __init__(self, maker: modules.ParamMaker, cfg: MLAConfig):
    mla.declare(self, cfg, lambda name, shape, init: maker.param(name, shape))

  def __call__(self, x, attend):
    cfg = self.cfg
    p = cfg.qk_nope_head_dim
    q = self.queries(x)  # (B, S, N, H)
    latent, k_rope = self.compress(x)  # (B, S, C), (B, S, R)
    cos, sin = mla.rope_angles(cfg, attend.positions)  # (B, S, R/2), attention factor included
    q_nope, q_rope = q[..., :p], mla.rope_interleaved(q[..., p:], cos, sin)
    full = attend.cache({"latent": latent, "rope_key": mla.rope_interleaved(k_rope, cos, sin)})
    absorbed = cfg.decode == "absorbed" and attend.entries is not None and x.shape[1] == 1
    attn = _absorbed if absorbed else _expanded
    return self.output(attn(self, q_nope, q_rope, full, attend))


def _expanded(w: mla.LatentWeights, q_nope, q_rope, full, attend):
  """Per-head outputs (B, S, N, V): per-head keys and values of every slot through kv_b."""
  k_nope, v = w.expand(full["latent"])  # (B, C', N, P), (B, C', N, V)
  k_r = jnp.broadcast_to(full["rope_key"][:, :, None, :].astype(k_nope.dtype),
                         k_nope.shape[:3] + q_rope.shape[-1:])  # shared by all heads
  return attend.core(jnp.concatenate([q_nope, q_rope], axis=-1),
                     jnp.concatenate([k_nope, k_r], axis=-1), v, scale=w.cfg.softmax_scale)


def _absorbed(w: mla.LatentWeights, q_nope, q_rope, full, attend):
  """Per-head outputs (B, S, N, V) with kv_b folded into the query and the output (Attention)."""
  lat = full["latent"]  # (B, C', C)
  q_lat = jnp.concatenate([w.absorb_query(q_nope), q_rope.astype(q_nope.dtype)], axis=-1)
  keys = jnp.concatenate([lat, full["rope_key"].astype(lat.dtype)], axis=-1)[:, :, None]
  # attention over latents (B, S, N, C); W_UV (project) turns them into the per-head outputs
  # (B, S, N, V) before core applies the head mask / mean ablation and records them
  return attend.core(q_lat, keys, lat[:, :, None], scale=w.cfg.softmax_scale,
                     project=w.values_from_latent)


class DenseBlock(nnx.Module):
  """x + attn(attn_norm(x)), then + mlp(mlp_norm(x)) with a dense gated MLP."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    self.attn_norm = modules.RMSNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = Attention(maker.child("attn"), cfg.mla)
    self.mlp_norm = modules.RMSNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.mlp = modules.GatedMLP(maker.child("mlp"), cfg)

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    return x + self.mlp(self.mlp_norm(x))


class MoEBlock(nnx.Module):
  """x + attn(attn_norm(x)), then + moe(mlp_norm(x)); the MoE result goes to
  attend.record_experts (expert capture) before its output joins the residual."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    self.attn_norm = modules.RMSNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = Attention(maker.child("attn"), cfg.mla)
    self.mlp_norm = modules.RMSNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.mlp = block.MoEFeedForward(moe_spec(cfg), maker.child("mlp"))

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    res = self.mlp(self.mlp_norm(x), expert_mask=attend.expert_mask)
    attend.record_experts(res)
    return x + res.out


def outer(cfg: ModelConfig, maker: modules.ParamMaker) -> dict:
  """The weights outside the layer stack: embed, final_norm, lm_head (unless tied)."""
  return modules.embed_and_head(cfg, maker, modules.RMSNorm)


def embed(cfg: ModelConfig, model, ids, positions):
  """ids (B, S) int -> x (B, S, D) in the parameter dtype (positions unused: rotary)."""
  return modules.lookup(model.embed, ids)


FAMILY = C.register_family(C.Family(
    name=MODEL_TYPE, model_types=(MODEL_TYPE,), config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=DenseBlock, outer=outer, embed=embed,
    unembed=modules.head_logits, ignorable=ignorable,
    rope_tables=lambda cfg: {},  # MLA computes its own (interleaved, YaRN) rotary angles
    units=units, shard_axes=_shard_axes(), cache_layout=cache_layout, segments=segments))
