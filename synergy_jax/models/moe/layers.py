"""What the Llama-like MoE families (mixtral, qwen2_moe, qwen3_moe) share: the MoE Block, layer
segments (runs of dense and MoE layers), the MoE layer's checkpoint tensors as weight specs
with an expert index, the experts' unit description and sharding axes.

Parameter state of an MoE segment (L layers of the segment stacked on axis 0; D hidden, E routed
experts, F expert width, F_s shared-expert width; attention and norms as llama.py):
  attn_norm, attn, mlp_norm  as llama.Block
  moe: MoEFeedForward
    router: {w (L, D, E)}
    experts: {gate (L, E, D, F), up (L, E, D, F), down (L, E, F, D)}
    shared: {gate (L, 1, D, F_s), up (L, 1, D, F_s), down (L, 1, F_s, D)}   (Qwen2-MoE)
    shared_gate (L, D)                                                      (Qwen2-MoE)
Dense layers (Qwen2-MoE's mlp_only_layers / decoder_sparse_step) are llama.Blocks.

Segments: one segment "layers" when every layer is an MoE layer (Mixtral, Qwen3-MoE as
released); otherwise one per run of consecutive layers of one kind, keyed "dense_<first layer>"
or "moe_<first layer>" (e.g. Qwen2-MoE with decoder_sparse_step=2: dense_0, moe_1, dense_2, ...).
"""
from __future__ import annotations

import dataclasses

from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import contract, llama, modules
from synergy_jax.models.config import ModelConfig
from synergy_jax.models.contract import Segment, UnitParam
from synergy_jax.models.moe.block import MoEFeedForward
from synergy_jax.models.moe.config import MoESpec, moe_from_hf, moe_to_hf


class MoEBlock(nnx.Module):
  """One pre-norm layer with a mixture-of-experts MLP: x + attn(attn_norm(x)), then + the MoE
  output on mlp_norm(x); (B, S, D) -> (B, S, D). Attention as llama.Block (q/k/v biases, q/k
  norms by the config)."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    self.attn_norm = modules.RMSNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = llama.attention(maker, cfg)
    self.mlp_norm = modules.RMSNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.moe = MoEFeedForward(MoESpec.of(cfg), maker.child("moe"))

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    res = self.moe(self.mlp_norm(x), expert_mask=attend.expert_mask)
    attend.record_experts(res)
    return x + res.out


def segments(cfg: ModelConfig) -> tuple[Segment, ...]:
  """Runs of consecutive dense / MoE layers (module docstring), MoE runs built by MoEBlock."""
  moe = set(cfg.moe.moe_layers)
  runs: list[list[int]] = []
  for i in range(cfg.num_layers):
    if runs and (runs[-1][0] in moe) == (i in moe):
      runs[-1].append(i)
    else:
      runs.append([i])
  if len(runs) == 1:
    return (Segment("layers", 0, cfg.num_layers, MoEBlock if runs[0][0] in moe
                    else llama.Block),)
  return tuple(Segment(f"{'moe' if r[0] in moe else 'dense'}_{r[0]}", r[0], r[-1] + 1,
                       MoEBlock if r[0] in moe else llama.Block) for r in runs)


def _with_unit_axis(w: cv.Weight, key: str) -> cv.Weight:
  """w with a size-1 unit axis before its trailing two axes (ONE shared expert stored on the
  stacked shared-expert axis H = 1)."""
  return dataclasses.replace(
      w, keys=(key,), to_params=lambda x: (w.to_params(x)[0][..., None, :, :],),
      from_params=lambda t: w.from_params((t[0][..., 0, :, :],)))


def moe_weights(cfg: ModelConfig, prefix: str, names) -> list[cv.Weight]:
  """The MoE tensors of one layer (HF names under `prefix`, with "{i}" and "{e}") as weight
  specs, segment unset (the caller places them). names: ((our leaf, HF leaf), ...) for gate, up,
  down, e.g. Mixtral's w1, w3, w2."""
  m, d = cfg.moe, cfg.hidden_size
  f = m.expert_intermediate_size
  hf = dict(names)
  ws = [cv.linear(prefix + ".gate.weight", (m.num_experts,), d, "moe/router/w"),
        cv.linear(prefix + ".experts.{e}." + hf["gate"] + ".weight", (f,), d, "moe/experts/gate"),
        cv.linear(prefix + ".experts.{e}." + hf["up"] + ".weight", (f,), d, "moe/experts/up"),
        cv.linear(prefix + ".experts.{e}." + hf["down"] + ".weight", (d,), f, "moe/experts/down")]
  if m.num_shared_experts:
    if m.num_shared_experts != 1:
      raise ValueError(f"{cfg.model_type}: {m.num_shared_experts} shared experts; this layout "
                       "stores exactly one (shared_expert.*)")
    fs = m.shared_expert_intermediate_size
    sp = prefix + ".shared_expert."
    ws += [_with_unit_axis(cv.linear(sp + "gate_proj.weight", (fs,), d, ""), "moe/shared/gate"),
           _with_unit_axis(cv.linear(sp + "up_proj.weight", (fs,), d, ""), "moe/shared/up"),
           _with_unit_axis(cv.linear(sp + "down_proj.weight", (d,), fs, ""), "moe/shared/down")]
  if m.shared_expert_gate:
    ws.append(cv.Weight(prefix + ".shared_expert_gate.weight", (1, d), ("moe/shared_gate",),
                        lambda x: (x[..., 0, :],), lambda t: t[0][..., None, :]))
  return ws


def decoder_weights(cfg: ModelConfig, moe_prefix: str, names) -> list[cv.Weight]:
  """Every tensor of a Llama-like MoE decoder: llama's tensors (the dense MLP only in dense
  segments) plus the MoE tensors of each MoE segment, each spec placed in its segment."""
  segs = segments(cfg)
  moe = set(cfg.moe.moe_layers)
  base = llama.weights(cfg)
  out = [w for w in base if not w.per_layer]
  for seg in segs:
    is_moe = seg.start in moe
    for w in base:
      if w.per_layer and not (is_moe and w.keys[0].startswith("mlp/")):
        out.append(dataclasses.replace(w, segment=seg.key))
    if is_moe:
      out += [dataclasses.replace(w, segment=seg.key) for w in moe_weights(cfg, moe_prefix, names)]
  return out


def units(cfg: ModelConfig) -> tuple[UnitParam, ...]:
  """Heads (llama's attention heads in every segment) and experts: routed expert e of MoE layer
  m owns moe.experts.{gate,up,down}[l, e] (unit e), the shared expert moe.shared.*[l, 0]
  (unit E). The router and the shared-expert gate belong to no unit."""
  segs = segments(cfg)
  out = list(contract.attention_heads(cfg, segs))
  m = cfg.moe
  for seg in segs:
    if seg.start not in m.moe_layers:
      continue
    start = m.moe_index(seg.start)
    for group, first in (("experts", 0), ("shared", m.num_experts)):
      if group == "shared" and not m.num_shared_experts:
        continue
      out += [UnitParam((seg.key, "moe", group, leaf), 0, 1, "weight", "experts", start, first)
              for leaf in ("gate", "up", "down")]
  return tuple(out)


# Per-layer paths are listed under "layers/" and serve every segment (sharding.annotation).
# Routed experts split over the expert axis (expert parallelism: each device holds whole
# experts), the shared expert over its width; the router and the shared gate are replicated.
SHARD_AXES = {**contract.DENSE_SHARD_AXES,
              "layers/moe/experts/gate": 1, "layers/moe/experts/up": 1,
              "layers/moe/experts/down": 1, "layers/moe/shared/gate": 3,
              "layers/moe/shared/up": 3, "layers/moe/shared/down": 2}


def config_from_hf(hf: dict, family: str, *, qkv_bias: bool, o_bias: bool, qk_norm: bool,
                   windows: tuple[int, ...]) -> ModelConfig:
  """The ModelConfig of a Llama-like MoE decoder, strictly: every field must be one the MoE
  reader (moe/config.py, which also lists the dense fields) knows; the attention and MLP
  fields are read as llama.py reads them, the MoE fields by moe_from_hf."""
  mt = hf["model_type"]
  spec = moe_from_hf(hf)  # check_moe_keys first: every unknown field raises, named
  C.require_no_attention_dropout(hf, mt)
  theta, rope_type, scaling = C.rope_from_hf(hf, mt)
  n_heads = int(hf["num_attention_heads"])
  return ModelConfig(
      family=family, model_type=mt, vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]), intermediate_size=int(hf["intermediate_size"]),
      num_layers=int(hf["num_hidden_layers"]), num_heads=n_heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
      head_dim=int(hf.get("head_dim") or int(hf["hidden_size"]) // n_heads),
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)), rope_theta=theta, rope_type=rope_type,
      rope_scaling=scaling, hidden_act=spec.hidden_act, qkv_bias=bool(qkv_bias),
      o_bias=bool(o_bias), qk_norm=qk_norm,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)), layer_windows=windows,
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"), eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"), moe=spec.moe)


def config_to_hf(cfg: ModelConfig, arch: str) -> dict:
  """llama.common_to_hf plus the MoE fields (moe_to_hf); the family adds its attention fields."""
  return {**llama.common_to_hf(cfg, arch),
          **moe_to_hf(MoESpec.of(cfg), cfg.model_type, cfg.num_layers)}
