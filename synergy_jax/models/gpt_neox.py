"""GPT-NeoX (Pythia): HF model_type `gpt_neox`.

Pre-norm blocks with LayerNorm (weight and bias), multi-head attention with rotary embeddings on
the first R = int(K * rotary_pct) dims of each head (rotate-half layout within those R dims; the
rest pass through), a two-layer GELU MLP, and either the parallel residual of Pythia
(x + attn(ln1(x)) + mlp(ln2(x)), `use_parallel_residual=True`) or the sequential one
(h = x + attn(ln1(x)); h + mlp(ln2(h))).

The fused HF projection `query_key_value` (3D, D) is interleaved per head: its output viewed as
(N, 3, K) gives head n's query, key and value; it is split into q/k/v leaves at conversion.

Modules and parameter state (L layers stacked on axis 0; D hidden, N heads, K head dim,
F MLP width, V vocab):
  embed (V, D); final_norm: LayerNorm {weight, bias (D,)}; lm_head (V, D) unless tied;
  layers: Block
    attn_norm: LayerNorm {weight, bias (L, D)}
    attn: Attention {q/k/v (L, D, N, K), o (L, N, K, D);
          with attention_bias: q_bias/k_bias/v_bias (L, N, K), o_bias (L, D)}
    mlp_norm: LayerNorm {weight, bias (L, D)}
    mlp: MLP {up (L, D, F), up_bias (L, F), down (L, F, D), down_bias (L, D)}

Dropout settings (hidden_dropout, attention_dropout, classifier_dropout) are training-time only
and not applied.
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import modules, ops
from synergy_jax.models.config import ModelConfig

_HANDLED = {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
            "intermediate_size", "hidden_act", "rotary_pct", "rotary_emb_base", "rope_theta",
            "rope_scaling", "rope_parameters", "partial_rotary_factor", "attention_dropout",
            "hidden_dropout", "classifier_dropout", "layer_norm_eps", "tie_word_embeddings",
            "use_parallel_residual", "attention_bias"}


def _rope(hf: dict, mt: str):
  """(theta, rope_type, scaling, rotary_pct) from legacy (rotary_emb_base, rotary_pct,
  rope_scaling) or transformers-5 (rope_parameters with partial_rotary_factor) fields."""
  params = dict(hf.get("rope_parameters") or {})
  params.update(dict(hf.get("rope_scaling") or {}))
  pct = params.pop("partial_rotary_factor", hf.get("partial_rotary_factor",
                                                   hf.get("rotary_pct", 0.25)))
  params.setdefault("rope_theta", hf.get("rope_theta", hf.get("rotary_emb_base", 10000.0)))
  theta, rope_type, scaling = C.rope_from_hf({"rope_parameters": params}, mt)
  pct = float(pct)
  if not 0.0 < pct <= 1.0:
    raise ValueError(f"{mt} config field rotary_pct/partial_rotary_factor={pct} must lie in (0, 1]")
  return theta, rope_type, scaling, pct


def config_from_hf(hf: dict) -> ModelConfig:
  mt = hf.get("model_type")
  C.check_keys(hf, _HANDLED, mt)
  theta, rope_type, scaling, pct = _rope(hf, mt)
  d = int(hf.get("hidden_size", 6144))
  n = int(hf.get("num_attention_heads", 64))
  if d % n:
    raise ValueError(f"{mt} config hidden_size={d} is not a multiple of num_attention_heads={n}")
  k = d // n
  rotary_dim = int(k * pct)
  if rotary_dim < 2 or rotary_dim % 2:
    raise ValueError(f"{mt} config rotary_pct={pct} gives {rotary_dim} rotary dims of head_dim "
                     f"{k}; an even number >= 2 is needed")
  bias = bool(hf.get("attention_bias", True))
  return ModelConfig(
      family="gpt_neox", model_type=mt,
      vocab_size=int(hf.get("vocab_size", 50432)), hidden_size=d,
      intermediate_size=int(hf.get("intermediate_size", 4 * d)),
      num_layers=int(hf.get("num_hidden_layers", 44)), num_heads=n, num_kv_heads=n, head_dim=k,
      max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
      norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
      rope_theta=theta, rope_type=rope_type, rope_scaling=scaling,
      hidden_act=C.activation_from_hf(hf.get("hidden_act", "gelu"), mt),
      qkv_bias=bias, o_bias=bias, mlp_bias=True,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"), eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"),
      options=tuple(sorted({"parallel_residual": bool(hf.get("use_parallel_residual", True)),
                            "rotary_pct": pct}.items())),
  )


def config_to_hf(cfg: ModelConfig) -> dict:
  if cfg.qkv_bias != cfg.o_bias:
    raise ValueError("gpt_neox attention_bias covers query_key_value and dense together; "
                     f"qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}")
  rope = C.rope_to_hf(cfg)
  rope["rope_parameters"]["partial_rotary_factor"] = cfg.option("rotary_pct")
  return {
      "architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox",
      "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
      "num_hidden_layers": cfg.num_layers, "num_attention_heads": cfg.num_heads,
      "intermediate_size": cfg.intermediate_size,
      "hidden_act": C.activation_to_hf(cfg.hidden_act), "layer_norm_eps": cfg.norm_eps,
      "max_position_embeddings": cfg.max_position_embeddings,
      "tie_word_embeddings": cfg.tie_word_embeddings, "attention_bias": cfg.qkv_bias,
      "use_parallel_residual": cfg.option("parallel_residual"),
      "initializer_range": cfg.initializer_range, "bos_token_id": cfg.bos_token_id,
      "eos_token_id": C.eos_to_hf(cfg.eos_token_ids),
      "pad_token_id": cfg.pad_token_id, "attention_dropout": 0.0, "hidden_dropout": 0.0,
      **rope,
  }


def _split3(x, n, k):
  y = x.reshape(*x.shape[:-1], n, 3, k)  # (..., N, 3, K)
  return y[..., 0, :], y[..., 1, :], y[..., 2, :]


def _qkv(hf: str, d: int, n: int, k: int) -> cv.Weight:
  """query_key_value.weight (3D, D), rows ordered (head, [q|k|v], K) -> q, k, v (D, N, K)."""

  def to_p(x):
    return _split3(x.swapaxes(-1, -2), n, k)  # from (..., D, 3D)

  def from_p(t):
    y = np.stack([np.asarray(a) for a in t], axis=-2)  # (..., D, N, 3, K)
    return y.reshape(*y.shape[:-3], 3 * n * k).swapaxes(-1, -2)

  return cv.Weight(hf, (3 * n * k, d), ("attn/q", "attn/k", "attn/v"), to_p, from_p, "normal")


def _qkv_bias(hf: str, n: int, k: int) -> cv.Weight:
  def from_p(t):
    y = np.stack([np.asarray(a) for a in t], axis=-2)  # (..., N, 3, K)
    return y.reshape(*y.shape[:-3], 3 * n * k)

  return cv.Weight(hf, (3 * n * k,), ("attn/q_bias", "attn/k_bias", "attn/v_bias"),
                   lambda x: _split3(x, n, k), from_p, "zeros")


def weights(cfg: ModelConfig) -> list[cv.Weight]:
  d, n, k, f, v = (cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size,
                   cfg.vocab_size)
  p = "gpt_neox.layers.{i}."
  ws = [
      cv.same("gpt_neox.embed_in.weight", (v, d), "embed"),
      cv.same(p + "input_layernorm.weight", (d,), "attn_norm/weight", "ones"),
      cv.same(p + "input_layernorm.bias", (d,), "attn_norm/bias", "zeros"),
      _qkv(p + "attention.query_key_value.weight", d, n, k),
      cv.linear_in(p + "attention.dense.weight", d, (n, k), "attn/o"),
      cv.same(p + "post_attention_layernorm.weight", (d,), "mlp_norm/weight", "ones"),
      cv.same(p + "post_attention_layernorm.bias", (d,), "mlp_norm/bias", "zeros"),
      cv.linear(p + "mlp.dense_h_to_4h.weight", (f,), d, "mlp/up"),
      cv.bias(p + "mlp.dense_h_to_4h.bias", (f,), "mlp/up_bias"),
      cv.linear(p + "mlp.dense_4h_to_h.weight", (d,), f, "mlp/down"),
      cv.bias(p + "mlp.dense_4h_to_h.bias", (d,), "mlp/down_bias"),
      cv.same("gpt_neox.final_layer_norm.weight", (d,), "final_norm/weight", "ones"),
      cv.same("gpt_neox.final_layer_norm.bias", (d,), "final_norm/bias", "zeros"),
  ]
  if cfg.qkv_bias:
    ws += [_qkv_bias(p + "attention.query_key_value.bias", n, k),
           cv.bias(p + "attention.dense.bias", (d,), "attn/o_bias")]
  if not cfg.tie_word_embeddings:
    ws.append(cv.same("embed_out.weight", (v, d), "lm_head"))
  return ws


def ignorable(name: str) -> bool:
  # Old Pythia checkpoints carry the causal-mask and rotary buffers; both are recomputed.
  return name.endswith((".attention.bias", ".attention.masked_bias", "rotary_emb.inv_freq"))


def rename(name: str) -> str:
  # transformers >= 5 names the output head lm_head in memory; checkpoints use embed_out.
  return "embed_out.weight" if name == "lm_head.weight" else name


def rope_tables(cfg: ModelConfig) -> dict:
  return {"default": ops.rope_inv_freq(cfg,
                                       rotary_dim=int(cfg.head_dim * cfg.option("rotary_pct")))}


class Block(nnx.Module):
  """One GPT-NeoX layer, (B, S, D) -> (B, S, D): parallel residual x + attn(ln1(x)) + mlp(ln2(x))
  or sequential h = x + attn(ln1(x)); h + mlp(ln2(h)). Rotary on the first R dims of each head."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    self.attn_norm = modules.LayerNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = modules.Attention(maker.child("attn"), cfg, qkv_bias=cfg.qkv_bias,
                                  o_bias=cfg.qkv_bias)
    self.mlp_norm = modules.LayerNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.mlp = modules.MLP(maker.child("mlp"), cfg)
    self.parallel = bool(cfg.option("parallel_residual"))

  def __call__(self, x, attend):
    a = self.attn(self.attn_norm(x), attend)
    if self.parallel:
      return x + a + self.mlp(self.mlp_norm(x))
    x = x + a
    return x + self.mlp(self.mlp_norm(x))


def outer(cfg: ModelConfig, maker: modules.ParamMaker) -> dict:
  """embed, final_norm (LayerNorm), lm_head (embed_out) unless tied."""
  return modules.embed_and_head(cfg, maker, modules.LayerNorm)


def embed(cfg: ModelConfig, model, ids, positions):
  """ids (B, S) int -> (B, S, D) (positions enter through rotary only)."""
  return modules.lookup(model.embed, ids)


FAMILY = C.register_family(C.Family(
    name="gpt_neox", model_types=("gpt_neox",), config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=Block, outer=outer, embed=embed,
    unembed=modules.head_logits, ignorable=ignorable, rope_tables=rope_tables, rename=rename))
