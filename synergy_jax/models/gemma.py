"""Gemma decoders: HF model_types `gemma`, `gemma2`, `gemma3_text` and the text tower of the
multimodal `gemma3` (Gemma3ForConditionalGeneration).

Shared by all: RMSNorm with a (1 + w) scale (weights stored as offsets from 1, initialised to 0),
token embeddings multiplied by sqrt(D) (rounded to the parameter dtype, as HF does), a gated
GELU-tanh MLP, grouped/multi-query attention, rotary embeddings (rotate-half), a head_dim that
need not equal D / N, and tied input/output embeddings. They differ in:
  gemma        pre-norm only (input_layernorm before attention, post_attention_layernorm before
               the MLP); attention scale K^-1/2.
  gemma2       norms before and after both sublayers (input, post_attention, pre_feedforward,
               post_feedforward); attention scale query_pre_attn_scalar^-1/2; tanh soft-capping
               of attention scores (attn_logit_softcapping) and of the final logits
               (final_logit_softcapping); sliding-window attention on alternate layers (HF
               layer_types; by default layers 0, 2, 4, ... are local).
  gemma3_text  as gemma2 plus per-head RMSNorm (1 + w) of q and k before rotary; local layers
               (every layer but each sliding_window_pattern-th) use rope base
               rope_local_base_freq without scaling, global layers use rope_theta with its
               rope_scaling (e.g. linear, factor 8, in Gemma 3 4B+).
  gemma3       config.json nests the gemma3_text settings under text_config; the text tower's
               tensors live under "language_model.model." (output head, if untied,
               "language_model.lm_head.weight"). Vision tower and projector tensors
               (IGNORED_PREFIXES) are skipped; anything else unexpected is an error.

Modules and parameter state (L layers stacked on axis 0; D hidden, N/M query/key-value heads,
K head dim, F MLP width, V vocab):
  embed (V, D); final_norm: GemmaRMSNorm {weight (D,)}; lm_head (V, D) unless tied;
  layers: Block
    attn_norm: GemmaRMSNorm {weight (L, D)}
    attn: Attention {q (L, D, N, K), k/v (L, D, M, K), o (L, N, K, D);
          gemma3: q_norm, k_norm: GemmaRMSNorm {weight (L, K)}}
    mlp_norm: GemmaRMSNorm {weight (L, D)}
    mlp: GatedMLP {gate/up (L, D, F), down (L, F, D)}
    gemma2/3: post_attn_norm, post_mlp_norm: GemmaRMSNorm {weight (L, D)}
Every norm weight w is applied as (1 + w).
"""
from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import modules, ops
from synergy_jax.models.config import ModelConfig

MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3")
# Multimodal gemma3 checkpoints: tensors of these towers are not part of the language model.
IGNORED_PREFIXES = ("vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                    "model.multi_modal_projector.")
_MM_PREFIX = "language_model.model."

_COMMON = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
           "num_attention_heads", "num_key_value_heads", "head_dim", "rms_norm_eps",
           "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
           "attention_dropout", "attention_bias", "use_bidirectional_attention"}
_GEMMA2 = _COMMON | {"hidden_activation", "hidden_act", "query_pre_attn_scalar",
                     "attn_logit_softcapping", "final_logit_softcapping", "sliding_window",
                     "layer_types", "cache_implementation"}
_HANDLED = {
    "gemma": _COMMON | {"hidden_act", "hidden_activation"},
    "gemma2": _GEMMA2,
    "gemma3_text": _GEMMA2 | {"rope_local_base_freq", "sliding_window_pattern",
                              "_sliding_window_pattern"},
}
# Multimodal wrapper keys: everything but text_config concerns the vision side or image tokens.
_MM_HANDLED = {"text_config", "vision_config", "mm_tokens_per_image", "boi_token_index",
               "eoi_token_index", "image_token_index", "tie_word_embeddings"}

# Gemma3TextConfig defaults (transformers 5.24): published multimodal configs (e.g. Gemma 3 4B)
# give only the text_config values that differ from these.
GEMMA3_TEXT_DEFAULTS = {
    "vocab_size": 262208, "hidden_size": 2304, "intermediate_size": 9216,
    "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "query_pre_attn_scalar": 256,
    "sliding_window": 4096, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
}


def _text_config(hf: dict) -> dict:
  """The gemma3_text dictionary inside a multimodal gemma3 config (defaults filled in)."""
  C.check_keys(hf, _MM_HANDLED, "gemma3")
  text = hf.get("text_config")
  if not isinstance(text, dict):
    raise ValueError(f"gemma3 config field text_config={text!r} must be a dictionary")
  if text.get("model_type", "gemma3_text") != "gemma3_text":
    raise ValueError(f"gemma3 config field text_config.model_type={text['model_type']!r} is not "
                     "implemented (implemented: ['gemma3_text'])")
  out = {**GEMMA3_TEXT_DEFAULTS, **text, "model_type": "gemma3_text"}
  top_tie = hf.get("tie_word_embeddings")
  if top_tie is not None and bool(top_tie) != bool(out["tie_word_embeddings"]):
    raise ValueError(f"gemma3 config tie_word_embeddings={top_tie} contradicts "
                     f"text_config.tie_word_embeddings={out['tie_word_embeddings']}")
  for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
    if key in hf:  # the wrapper's special tokens (e.g. eos [1, 106]) are what generation uses
      out[key] = hf[key]
  return out


def _layer_types(hf: dict, mt: str, n_layers: int) -> list[str]:
  types = hf.get("layer_types")
  if types is None:
    if mt == "gemma2":
      period = 2
    else:
      period = int(hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6)))
    types = ["sliding_attention" if (i + 1) % period else "full_attention"
             for i in range(n_layers)]
  return list(types)


def _gemma3_rope(hf: dict, mt: str):
  """Global (theta, type, scaling) and local theta, from legacy fields (rope_theta,
  rope_scaling, rope_local_base_freq) or transformers-5 rope_parameters keyed by layer type."""
  rp = hf.get("rope_parameters")
  if rp and ("full_attention" in rp or "sliding_attention" in rp):
    extra = sorted(set(rp) - {"full_attention", "sliding_attention"})
    if extra:
      raise ValueError(f"{mt} config rope_parameters has unexpected entries {extra}")
    full = dict(rp.get("full_attention") or {})
    if hf.get("rope_scaling"):
      full.update(hf["rope_scaling"])
    full.setdefault("rope_theta", hf.get("rope_theta", 1_000_000.0))
    local = dict(rp.get("sliding_attention") or {})
    local.setdefault("rope_theta", hf.get("rope_local_base_freq", 10_000.0))
  else:
    full = dict(rp or {})
    if hf.get("rope_scaling"):
      full.update(hf["rope_scaling"])
    full.setdefault("rope_theta", hf.get("rope_theta", 1_000_000.0))
    local = {"rope_theta": hf.get("rope_local_base_freq", 10_000.0)}
  glob = C.rope_from_hf({"rope_parameters": full}, mt)
  ltheta, ltype, lscaling = C.rope_from_hf({"rope_parameters": local}, mt)
  if ltype != "default":
    raise ValueError(f"{mt} config: rope_type={ltype!r} for sliding_attention layers is not "
                     "implemented (implemented: ['default'])")
  return glob, ltheta


def config_from_hf(hf: dict) -> ModelConfig:
  top_mt = hf.get("model_type")
  if top_mt == "gemma3":
    hf = _text_config(hf)
  elif top_mt == "gemma3_text":
    hf = {**GEMMA3_TEXT_DEFAULTS, **hf}
  mt = hf.get("model_type")
  C.check_keys(hf, _HANDLED[mt], mt)
  C.require(hf, "attention_bias", (False, None), mt)
  C.require(hf, "use_bidirectional_attention", (False, None), mt)
  C.require_no_attention_dropout(hf, mt)
  n_layers = int(hf["num_hidden_layers"])
  n_heads = int(hf["num_attention_heads"])
  head_dim = int(hf.get("head_dim") or int(hf["hidden_size"]) // n_heads)
  options = {}
  if mt == "gemma":
    act = hf.get("hidden_act") or hf.get("hidden_activation") or "gelu_pytorch_tanh"
    # Published Gemma 1 configs say "gelu" but the checkpoints were trained with the tanh
    # approximation; transformers maps "gelu" to gelu_pytorch_tanh for this model type.
    act = "gelu_pytorch_tanh" if act == "gelu" else act
    act = C.activation_from_hf(act, mt)
    theta, rope_type, scaling = C.rope_from_hf(hf, mt)
    windows = (0,) * n_layers
  else:
    # hidden_act is not read by transformers for gemma2/3 (hidden_activation is).
    act = C.activation_from_hf(hf.get("hidden_activation", "gelu_pytorch_tanh"), mt,
                               "hidden_activation")
    if mt == "gemma2":
      theta, rope_type, scaling = C.rope_from_hf(hf, mt)
    else:
      (theta, rope_type, scaling), local_theta = _gemma3_rope(hf, mt)
      options["local_rope_theta"] = float(local_theta)
    windows = C.windows_from_layer_types(_layer_types(hf, mt, n_layers), hf, mt, n_layers)
    scalar = hf.get("query_pre_attn_scalar", 256)
    if not isinstance(scalar, (int, float)) or scalar <= 0:
      raise ValueError(f"{mt} config field query_pre_attn_scalar={scalar!r} must be positive")
    # kept as written (HF validates it as an int for gemma3 when the config is saved back)
    options["query_pre_attn_scalar"] = int(scalar) if float(scalar).is_integer() else scalar
    for key, opt in (("attn_logit_softcapping", "attn_softcap"),
                     ("final_logit_softcapping", "final_softcap")):
      cap = hf.get(key)
      if cap is not None:
        if float(cap) <= 0:
          raise ValueError(f"{mt} config field {key}={cap} must be positive or null")
        options[opt] = float(cap)
  return ModelConfig(
      family="gemma", model_type=top_mt,
      vocab_size=int(hf["vocab_size"]), hidden_size=int(hf["hidden_size"]),
      intermediate_size=int(hf["intermediate_size"]), num_layers=n_layers, num_heads=n_heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or n_heads), head_dim=head_dim,
      max_position_embeddings=int(hf.get("max_position_embeddings", 8192)),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      rope_theta=theta, rope_type=rope_type, rope_scaling=scaling, hidden_act=act,
      qk_norm=mt == "gemma3_text",
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
      layer_windows=windows,
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"), eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"),
      options=tuple(sorted(options.items())),
  )


def _text_type(cfg: ModelConfig) -> str:
  return "gemma3_text" if cfg.model_type == "gemma3" else cfg.model_type


def config_to_hf(cfg: ModelConfig) -> dict:
  mt = _text_type(cfg)
  arch = {"gemma": "GemmaForCausalLM", "gemma2": "Gemma2ForCausalLM",
          "gemma3_text": "Gemma3ForCausalLM"}[mt]
  hf = {
      "architectures": [arch], "model_type": mt, "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
      "rms_norm_eps": cfg.norm_eps, "max_position_embeddings": cfg.max_position_embeddings,
      "tie_word_embeddings": cfg.tie_word_embeddings, "attention_bias": False,
      "attention_dropout": 0.0, "initializer_range": cfg.initializer_range,
      "bos_token_id": cfg.bos_token_id,
      "eos_token_id": C.eos_to_hf(cfg.eos_token_ids),
      "pad_token_id": cfg.pad_token_id,
  }
  act = C.activation_to_hf(cfg.hidden_act)
  if mt == "gemma":
    if any(cfg.layer_windows):
      raise ValueError("gemma (Gemma 1) has no sliding-window layers; use gemma2 or gemma3_text")
    hf.update(hidden_act=act, **C.rope_to_hf(cfg))
  else:
    windows = set(cfg.layer_windows) - {0}
    if len(windows) > 1:
      raise ValueError(f"{mt} cannot express several sliding windows {sorted(windows)}")
    types = ["sliding_attention" if w else "full_attention" for w in cfg.layer_windows]
    hf.update(hidden_activation=act, layer_types=types,
              sliding_window=windows.pop() if windows else None,
              query_pre_attn_scalar=cfg.option("query_pre_attn_scalar"),
              attn_logit_softcapping=cfg.option("attn_softcap"),
              final_logit_softcapping=cfg.option("final_softcap"))
    if mt == "gemma2":
      hf.update(C.rope_to_hf(cfg))
    else:
      full = C.rope_to_hf(cfg)["rope_parameters"]
      hf["rope_parameters"] = {
          "full_attention": full,
          "sliding_attention": {"rope_type": "default",
                                "rope_theta": cfg.option("local_rope_theta")}}
  if cfg.model_type == "gemma3":
    hf["architectures"] = None
    return {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
            "text_config": hf, "tie_word_embeddings": cfg.tie_word_embeddings,
            "bos_token_id": hf["bos_token_id"], "eos_token_id": hf["eos_token_id"],
            "pad_token_id": hf["pad_token_id"]}
  return hf


def weights(cfg: ModelConfig) -> list[cv.Weight]:
  d, n, m, k, f, v = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size, cfg.vocab_size)
  mt = _text_type(cfg)
  pre = _MM_PREFIX if cfg.model_type == "gemma3" else "model."
  p = pre + "layers.{i}."
  ws = [
      cv.same(pre + "embed_tokens.weight", (v, d), "embed"),
      cv.same(p + "input_layernorm.weight", (d,), "attn_norm/weight", "zeros"),
      cv.linear(p + "self_attn.q_proj.weight", (n, k), d, "attn/q"),
      cv.linear(p + "self_attn.k_proj.weight", (m, k), d, "attn/k"),
      cv.linear(p + "self_attn.v_proj.weight", (m, k), d, "attn/v"),
      cv.linear_in(p + "self_attn.o_proj.weight", d, (n, k), "attn/o"),
      cv.linear(p + "mlp.gate_proj.weight", (f,), d, "mlp/gate"),
      cv.linear(p + "mlp.up_proj.weight", (f,), d, "mlp/up"),
      cv.linear(p + "mlp.down_proj.weight", (d,), f, "mlp/down"),
      cv.same(pre + "norm.weight", (d,), "final_norm/weight", "zeros"),
  ]
  if mt == "gemma":
    ws.append(cv.same(p + "post_attention_layernorm.weight", (d,), "mlp_norm/weight", "zeros"))
  else:
    ws += [cv.same(p + "post_attention_layernorm.weight", (d,), "post_attn_norm/weight",
                   "zeros"),
           cv.same(p + "pre_feedforward_layernorm.weight", (d,), "mlp_norm/weight", "zeros"),
           cv.same(p + "post_feedforward_layernorm.weight", (d,), "post_mlp_norm/weight",
                   "zeros")]
  if cfg.qk_norm:
    ws += [cv.same(p + "self_attn.q_norm.weight", (k,), "attn/q_norm/weight", "zeros"),
           cv.same(p + "self_attn.k_norm.weight", (k,), "attn/k_norm/weight", "zeros")]
  if not cfg.tie_word_embeddings:
    head = "language_model.lm_head.weight" if cfg.model_type == "gemma3" else "lm_head.weight"
    ws.append(cv.same(head, (v, d), "lm_head"))
  return ws


def rename(name: str) -> str:
  # Gemma3ForConditionalGeneration as laid out in memory by transformers >= 4.52 (some
  # re-saved checkpoints use it) -> the hub layout that transformers 5 also writes.
  if name.startswith("model.language_model."):
    return _MM_PREFIX + name[len("model.language_model."):]
  return name


def ignorable(name: str) -> bool:
  return name.startswith(IGNORED_PREFIXES) or name.endswith("rotary_emb.inv_freq")


def rope_tables(cfg: ModelConfig) -> dict:
  tables = {"default": ops.rope_inv_freq(cfg)}
  if cfg.option("local_rope_theta") is not None:
    local = cfg.replace(rope_theta=cfg.option("local_rope_theta"), rope_type="default",
                        rope_scaling=None)
    tables["local"] = ops.rope_inv_freq(local)
  return tables


class Block(nnx.Module):
  """One Gemma layer, (B, S, D) -> (B, S, D): pre-norm attention and gated MLP, with (gemma2/3)
  a norm after each sublayer too; (1 + w) RMSNorms throughout."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d, eps = cfg.hidden_size, cfg.norm_eps
    post_norms = _text_type(cfg) != "gemma"
    scalar = cfg.option("query_pre_attn_scalar")
    self.attn_norm = modules.GemmaRMSNorm(maker.child("attn_norm"), d, eps)
    self.attn = modules.Attention(
        maker.child("attn"), cfg, qk_norm=modules.GemmaRMSNorm if cfg.qk_norm else None,
        # gemma3: local (sliding-window) layers use their own rope base
        rope="local_global" if cfg.option("local_rope_theta") is not None else "default",
        scale=(scalar if scalar is not None else cfg.head_dim) ** -0.5,
        softcap=cfg.option("attn_softcap"))
    self.post_attn_norm = (modules.GemmaRMSNorm(maker.child("post_attn_norm"), d, eps)
                           if post_norms else None)
    self.mlp_norm = modules.GemmaRMSNorm(maker.child("mlp_norm"), d, eps)
    self.mlp = modules.GatedMLP(maker.child("mlp"), cfg)
    self.post_mlp_norm = (modules.GemmaRMSNorm(maker.child("post_mlp_norm"), d, eps)
                          if post_norms else None)

  def __call__(self, x, attend):
    a = self.attn(self.attn_norm(x), attend)
    if self.post_attn_norm is not None:
      a = self.post_attn_norm(a)
    x = x + a
    y = self.mlp(self.mlp_norm(x))
    if self.post_mlp_norm is not None:
      y = self.post_mlp_norm(y)
    return x + y


def outer(cfg: ModelConfig, maker: modules.ParamMaker) -> dict:
  """embed, final_norm (GemmaRMSNorm), lm_head unless tied."""
  return modules.embed_and_head(cfg, maker, modules.GemmaRMSNorm)


def embed(cfg: ModelConfig, model, ids, positions):
  """ids (B, S) int -> embeddings * sqrt(D) (B, S, D); the factor is rounded to the params'
  dtype first, as in HF."""
  x = modules.lookup(model.embed, ids)
  return x * jnp.asarray(cfg.hidden_size ** 0.5, dtype=x.dtype)


def unembed(cfg: ModelConfig, model, x):
  """x (B, S, D) -> logits (B, S, V) float32: final norm, tied embedding (or lm_head), then
  tanh soft-capping cap * tanh(logits / cap) when final_logit_softcapping is set."""
  logits = modules.head_logits(cfg, model, x)
  cap = cfg.option("final_softcap")
  if cap is not None:
    logits = jnp.tanh(logits / cap) * cap
  return logits


FAMILY = C.register_family(C.Family(
    name="gemma", model_types=MODEL_TYPES, config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=Block, outer=outer, embed=embed,
    unembed=unembed, ignorable=ignorable, rope_tables=rope_tables, rename=rename))
