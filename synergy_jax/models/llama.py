"""Llama-style decoders: HF model_types `llama`, `mistral`, `qwen2`, `qwen3`.

Pre-norm blocks with RMSNorm, rotary embeddings (rotate-half layout; llama3/linear scaling),
grouped-query attention and a gated MLP. The four model types differ only in:
  llama   optional biases (attention_bias on q/k/v/o, mlp_bias), rope scaling;
  mistral a sliding window on every layer (`sliding_window`, unless null);
  qwen2   biases on q/k/v (never o); sliding window on layers >= max_window_layers when
          use_sliding_window (HF `layer_types`);
  qwen3   per-head RMSNorm of q and k over the head dim (before rotary), optional attention_bias.

Modules and parameter state (L layers stacked on axis 0; D hidden, N/M query/key-value heads,
K head dim, F MLP width, V vocab):
  embed (V, D); final_norm: RMSNorm {weight (D,)}; lm_head (V, D) unless tie_word_embeddings;
  layers: Block
    attn_norm: RMSNorm {weight (L, D)}
    attn: Attention {q (L, D, N, K), k (L, D, M, K), v (L, D, M, K), o (L, N, K, D);
          with qkv_bias: q_bias (L, N, K), k_bias (L, M, K), v_bias (L, M, K);
          with o_bias: o_bias (L, D); with qk_norm: q_norm, k_norm: RMSNorm {weight (L, K)}}
    mlp_norm: RMSNorm {weight (L, D)}
    mlp: GatedMLP {gate (L, D, F), up (L, D, F), down (L, F, D);
          with mlp_bias: gate_bias (L, F), up_bias (L, F), down_bias (L, D)}
"""
from __future__ import annotations

from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import modules
from synergy_jax.models.config import ModelConfig

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")

_COMMON = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
           "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps",
           "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
           "attention_dropout", "rope_interleaved", "use_mrope"}
_HANDLED = {
    "llama": _COMMON | {"attention_bias", "mlp_bias"},
    "mistral": _COMMON | {"sliding_window"},
    "qwen2": _COMMON | {"use_sliding_window", "sliding_window", "max_window_layers",
                        "layer_types"},
    "qwen3": _COMMON | {"attention_bias", "use_sliding_window", "sliding_window",
                        "max_window_layers", "layer_types"},
}


def _windows(hf: dict, mt: str, n_layers: int) -> tuple[int, ...]:
  if mt == "mistral":
    w = hf.get("sliding_window")
    return (int(w) if w else 0,) * n_layers
  if mt in ("qwen2", "qwen3"):
    types = hf.get("layer_types")
    if types is None:
      sliding = bool(hf.get("use_sliding_window", False))
      first = int(hf.get("max_window_layers", n_layers))
      types = ["sliding_attention" if sliding and i >= first else "full_attention"
               for i in range(n_layers)]
    return C.windows_from_layer_types(types, hf, mt, n_layers)
  return (0,) * n_layers


def config_from_hf(hf: dict) -> ModelConfig:
  mt = hf.get("model_type")
  C.check_keys(hf, _HANDLED[mt], mt)
  C.require(hf, "rope_interleaved", (False, None), mt)  # SmolLM configs state it explicitly
  C.require(hf, "use_mrope", (False, None), mt)
  C.require_no_attention_dropout(hf, mt)
  theta, rope_type, scaling = C.rope_from_hf(hf, mt)
  n_layers = int(hf["num_hidden_layers"])
  n_heads = int(hf["num_attention_heads"])
  head_dim = hf.get("head_dim") or int(hf["hidden_size"]) // n_heads
  qkv_bias = {"llama": hf.get("attention_bias", False), "mistral": False, "qwen2": True,
              "qwen3": hf.get("attention_bias", False)}[mt]
  return ModelConfig(
      family="llama",
      model_type=mt,
      vocab_size=int(hf["vocab_size"]),
      hidden_size=int(hf["hidden_size"]),
      intermediate_size=int(hf["intermediate_size"]),
      num_layers=n_layers,
      num_heads=n_heads,
      num_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
      head_dim=int(head_dim),
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
      rope_theta=theta,
      rope_type=rope_type,
      rope_scaling=scaling,
      hidden_act=C.activation_from_hf(hf.get("hidden_act", "silu"), mt),
      qkv_bias=bool(qkv_bias),
      o_bias=bool(mt in ("llama", "qwen3") and hf.get("attention_bias", False)),
      mlp_bias=bool(mt == "llama" and hf.get("mlp_bias", False)),
      qk_norm=(mt == "qwen3"),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      layer_windows=_windows(hf, mt, n_layers),
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"),
  )


def config_to_hf(cfg: ModelConfig) -> dict:
  mt = cfg.model_type
  arch = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
          "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[mt]
  hf = common_to_hf(cfg, arch)
  windows = set(cfg.layer_windows) - {0}
  if len(windows) > 1:
    raise ValueError(f"{mt} cannot express several sliding windows {sorted(windows)}")
  window = windows.pop() if windows else None
  if mt == "llama":
    if cfg.qkv_bias != cfg.o_bias:
      raise ValueError("llama attention_bias covers q/k/v and o together; "
                       f"qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}")
    hf.update(attention_bias=cfg.qkv_bias, mlp_bias=cfg.mlp_bias)
    if window:
      raise ValueError("llama has no sliding window; use model_type='mistral'")
  elif mt == "mistral":
    if window and any(w != window for w in cfg.layer_windows):
      raise ValueError("mistral applies its sliding window to every layer")
    hf["sliding_window"] = window
  else:
    hf.update(use_sliding_window=bool(window), sliding_window=window,
              layer_types=["sliding_attention" if w else "full_attention"
                           for w in cfg.layer_windows],
              max_window_layers=next((i for i, w in enumerate(cfg.layer_windows) if w),
                                     cfg.num_layers))
    if mt == "qwen3":
      hf["attention_bias"] = cfg.qkv_bias
  return hf


def common_to_hf(cfg: ModelConfig, arch: str) -> dict:
  """The HF config fields every Llama-like decoder writes (sizes, norms, rope, token ids);
  also used by the MoE families (mixtral.py, qwen_moe.py)."""
  mt = cfg.model_type
  return {
      "architectures": [arch], "model_type": mt, "vocab_size": cfg.vocab_size,
      "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "num_key_value_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
      "hidden_act": C.activation_to_hf(cfg.hidden_act), "rms_norm_eps": cfg.norm_eps,
      "max_position_embeddings": cfg.max_position_embeddings,
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "initializer_range": cfg.initializer_range, "bos_token_id": cfg.bos_token_id,
      "eos_token_id": C.eos_to_hf(cfg.eos_token_ids),
      "pad_token_id": cfg.pad_token_id, "attention_dropout": 0.0,
      **C.rope_to_hf(cfg),
  }


def weights(cfg: ModelConfig) -> list[cv.Weight]:
  d, n, m, k, f, v = (cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
                      cfg.intermediate_size, cfg.vocab_size)
  p = "model.layers.{i}."
  ws = [
      cv.same("model.embed_tokens.weight", (v, d), "embed"),
      cv.same(p + "input_layernorm.weight", (d,), "attn_norm/weight", "ones"),
      cv.linear(p + "self_attn.q_proj.weight", (n, k), d, "attn/q"),
      cv.linear(p + "self_attn.k_proj.weight", (m, k), d, "attn/k"),
      cv.linear(p + "self_attn.v_proj.weight", (m, k), d, "attn/v"),
      cv.linear_in(p + "self_attn.o_proj.weight", d, (n, k), "attn/o"),
      cv.same(p + "post_attention_layernorm.weight", (d,), "mlp_norm/weight", "ones"),
      cv.linear(p + "mlp.gate_proj.weight", (f,), d, "mlp/gate"),
      cv.linear(p + "mlp.up_proj.weight", (f,), d, "mlp/up"),
      cv.linear(p + "mlp.down_proj.weight", (d,), f, "mlp/down"),
      cv.same("model.norm.weight", (d,), "final_norm/weight", "ones"),
  ]
  if cfg.qkv_bias:
    ws += [cv.bias(p + "self_attn.q_proj.bias", (n, k), "attn/q_bias"),
           cv.bias(p + "self_attn.k_proj.bias", (m, k), "attn/k_bias"),
           cv.bias(p + "self_attn.v_proj.bias", (m, k), "attn/v_bias")]
  if cfg.o_bias:
    ws.append(cv.bias(p + "self_attn.o_proj.bias", (d,), "attn/o_bias"))
  if cfg.mlp_bias:
    ws += [cv.bias(p + "mlp.gate_proj.bias", (f,), "mlp/gate_bias"),
           cv.bias(p + "mlp.up_proj.bias", (f,), "mlp/up_bias"),
           cv.bias(p + "mlp.down_proj.bias", (d,), "mlp/down_bias")]
  if cfg.qk_norm:
    ws += [cv.same(p + "self_attn.q_norm.weight", (k,), "attn/q_norm/weight", "ones"),
           cv.same(p + "self_attn.k_norm.weight", (k,), "attn/k_norm/weight", "ones")]
  if not cfg.tie_word_embeddings:
    ws.append(cv.same("lm_head.weight", (v, d), "lm_head"))
  return ws


def ignorable(name: str) -> bool:
  # Old checkpoints carry the rotary buffer; it is recomputed from the config.
  return name.endswith("rotary_emb.inv_freq")


def attention(maker: modules.ParamMaker, cfg: ModelConfig) -> modules.Attention:
  """Llama-style attention at maker's "attn": q/k/v and o biases and q/k norms as the config
  says (also the attention of the Llama-like MoE families, moe/layers.py)."""
  return modules.Attention(maker.child("attn"), cfg, qkv_bias=cfg.qkv_bias, o_bias=cfg.o_bias,
                           qk_norm=modules.RMSNorm if cfg.qk_norm else None)


class Block(nnx.Module):
  """One pre-norm layer: x + attn(attn_norm(x)), then + mlp(mlp_norm(x)); (B, S, D) -> (B, S, D)."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    self.attn_norm = modules.RMSNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = attention(maker, cfg)
    self.mlp_norm = modules.RMSNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.mlp = modules.GatedMLP(maker.child("mlp"), cfg, bias=cfg.mlp_bias)

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    return x + self.mlp(self.mlp_norm(x))


def outer(cfg: ModelConfig, maker: modules.ParamMaker) -> dict:
  """The weights outside the layer stack: embed, final_norm, lm_head (unless tied)."""
  return modules.embed_and_head(cfg, maker, modules.RMSNorm)


def embed(cfg: ModelConfig, model, ids, positions):
  """ids (B, S) int -> x (B, S, D) in the parameter dtype (positions unused: rotary)."""
  return modules.lookup(model.embed, ids)


FAMILY = C.register_family(C.Family(
    name="llama", model_types=MODEL_TYPES, config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=Block, outer=outer, embed=embed,
    unembed=modules.head_logits, ignorable=ignorable))
