"""GPT-2: HF model_type `gpt2`.

Pre-norm blocks with LayerNorm (weight and bias), learned absolute position embeddings (no
rotary), multi-head attention from one fused projection `c_attn` and a two-layer MLP
(gelu_new = tanh-approximated GELU by default). The HF checkpoint stores every projection as a
`Conv1D`, i.e. weight (in, out) — the transpose of torch Linear — so the converters here reshape
without swapping axes.

Modules and parameter state (L layers stacked on axis 0; D hidden, N heads, K = D / N head dim,
F MLP width, P positions, V vocab):
  embed (V, D); pos_embed (P, D); final_norm: LayerNorm {weight, bias (D,)};
  lm_head (V, D) unless tie_word_embeddings (GPT-2 ties it to embed);
  layers: Block
    attn_norm: LayerNorm {weight, bias (L, D)}
    attn: Attention {q/k/v (L, D, N, K), q_bias/k_bias/v_bias (L, N, K), o (L, N, K, D),
          o_bias (L, D)}  (no rotary)
    mlp_norm: LayerNorm {weight, bias (L, D)}
    mlp: MLP {up (L, D, F), up_bias (L, F), down (L, F, D), down_bias (L, D)}

Dropout probabilities (resid/embd/attn_pdrop) are training-time settings and are not applied:
these models run inference and teacher-forced scoring.
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from synergy_jax.models import config as C
from synergy_jax.models import convert as cv
from synergy_jax.models import modules
from synergy_jax.models.config import ModelConfig

# Keys read below; the summary_* keys configure GPT2DoubleHeadsModel's classifier head, the
# *_pdrop keys training dropout — neither changes the causal LM's forward pass at inference.
_HANDLED = {"vocab_size", "n_positions", "n_ctx", "n_embd", "n_layer", "n_head", "n_inner",
            "activation_function", "resid_pdrop", "embd_pdrop", "attn_pdrop",
            "layer_norm_epsilon", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn", "tie_word_embeddings", "summary_type", "summary_use_proj",
            "summary_activation", "summary_proj_to_labels", "summary_first_dropout",
            "add_cross_attention"}


def config_from_hf(hf: dict) -> ModelConfig:
  mt = hf.get("model_type")
  C.check_keys(hf, _HANDLED, mt)
  C.require(hf, "scale_attn_by_inverse_layer_idx", (False, None), mt)
  C.require(hf, "add_cross_attention", (False, None), mt)
  # reorder_and_upcast_attn only changes where the scores are upcast to float32; our scores are
  # always float32, so both values compute the same function.
  C.require(hf, "reorder_and_upcast_attn", (False, True, None), mt)
  d = int(hf.get("n_embd", 768))
  n = int(hf.get("n_head", 12))
  if d % n:
    raise ValueError(f"{mt} config n_embd={d} is not a multiple of n_head={n}")
  n_pos = int(hf.get("n_positions", 1024))
  if hf.get("n_ctx") not in (None, n_pos):
    raise ValueError(f"{mt} config field n_ctx={hf['n_ctx']} differs from n_positions={n_pos}")
  return ModelConfig(
      family="gpt2", model_type=mt,
      vocab_size=int(hf.get("vocab_size", 50257)), hidden_size=d,
      intermediate_size=int(hf.get("n_inner") or 4 * d),
      num_layers=int(hf.get("n_layer", 12)), num_heads=n, num_kv_heads=n, head_dim=d // n,
      max_position_embeddings=n_pos,
      norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
      hidden_act=C.activation_from_hf(hf.get("activation_function", "gelu_new"), mt,
                                      "activation_function"),
      qkv_bias=True, o_bias=True, mlp_bias=True,
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
      initializer_range=float(hf.get("initializer_range", 0.02)),
      bos_token_id=hf.get("bos_token_id"), eos_token_ids=C.eos_ids(hf.get("eos_token_id")),
      pad_token_id=hf.get("pad_token_id"),
      options=(("scale_attn_weights", bool(hf.get("scale_attn_weights", True))),),
  )


def config_to_hf(cfg: ModelConfig) -> dict:
  act = {"gelu_tanh": "gelu_new"}.get(cfg.hidden_act, C.activation_to_hf(cfg.hidden_act))
  return {
      "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
      "n_positions": cfg.max_position_embeddings, "n_embd": cfg.hidden_size,
      "n_layer": cfg.num_layers, "n_head": cfg.num_heads, "n_inner": cfg.intermediate_size,
      "activation_function": act, "layer_norm_epsilon": cfg.norm_eps,
      "scale_attn_weights": cfg.option("scale_attn_weights", True),
      "tie_word_embeddings": cfg.tie_word_embeddings,
      "initializer_range": cfg.initializer_range, "bos_token_id": cfg.bos_token_id,
      "eos_token_id": C.eos_to_hf(cfg.eos_token_ids),
      "pad_token_id": cfg.pad_token_id,
      "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
  }


def _conv_qkv(hf: str, d: int, n: int, k: int) -> cv.Weight:
  """c_attn.weight (D, 3D) Conv1D, columns [q | k | v], each N heads of K -> q, k, v (D, N, K)."""

  def to_p(x):
    y = x.reshape(*x.shape[:-1], 3, n, k)  # (..., D, 3, N, K)
    return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]

  def from_p(t):
    y = np.stack([np.asarray(a) for a in t], axis=-3)  # (..., D, 3, N, K)
    return y.reshape(*y.shape[:-3], 3 * n * k)

  return cv.Weight(hf, (d, 3 * n * k), ("attn/q", "attn/k", "attn/v"), to_p, from_p,
                   "normal")


def _conv_qkv_bias(hf: str, n: int, k: int) -> cv.Weight:
  """c_attn.bias (3D,) -> q_bias, k_bias, v_bias (N, K)."""

  def to_p(x):
    y = x.reshape(*x.shape[:-1], 3, n, k)
    return y[..., 0, :, :], y[..., 1, :, :], y[..., 2, :, :]

  def from_p(t):
    y = np.stack([np.asarray(a) for a in t], axis=-3)
    return y.reshape(*y.shape[:-3], 3 * n * k)

  return cv.Weight(hf, (3 * n * k,), ("attn/q_bias", "attn/k_bias", "attn/v_bias"),
                   to_p, from_p, "zeros")


def _conv(hf: str, in_shape, out_shape, key: str) -> cv.Weight:
  """A Conv1D weight (in, out) stored as (*in_shape, *out_shape) (no transpose)."""
  in_shape, out_shape = tuple(in_shape), tuple(out_shape)
  n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
  nd = len(in_shape) + len(out_shape)
  return cv.Weight(hf, (n_in, n_out), (key,),
                   lambda x: (x.reshape(*x.shape[:-2], *in_shape, *out_shape),),
                   lambda t: t[0].reshape(*t[0].shape[:t[0].ndim - nd], n_in, n_out), "normal")


def weights(cfg: ModelConfig) -> list[cv.Weight]:
  d, n, k, f, v = (cfg.hidden_size, cfg.num_heads, cfg.head_dim, cfg.intermediate_size,
                   cfg.vocab_size)
  p = "transformer.h.{i}."
  ws = [
      cv.same("transformer.wte.weight", (v, d), "embed"),
      cv.same("transformer.wpe.weight", (cfg.max_position_embeddings, d), "pos_embed"),
      cv.same(p + "ln_1.weight", (d,), "attn_norm/weight", "ones"),
      cv.same(p + "ln_1.bias", (d,), "attn_norm/bias", "zeros"),
      _conv_qkv(p + "attn.c_attn.weight", d, n, k),
      _conv_qkv_bias(p + "attn.c_attn.bias", n, k),
      _conv(p + "attn.c_proj.weight", (n, k), (d,), "attn/o"),
      cv.bias(p + "attn.c_proj.bias", (d,), "attn/o_bias"),
      cv.same(p + "ln_2.weight", (d,), "mlp_norm/weight", "ones"),
      cv.same(p + "ln_2.bias", (d,), "mlp_norm/bias", "zeros"),
      _conv(p + "mlp.c_fc.weight", (d,), (f,), "mlp/up"),
      cv.bias(p + "mlp.c_fc.bias", (f,), "mlp/up_bias"),
      _conv(p + "mlp.c_proj.weight", (f,), (d,), "mlp/down"),
      cv.bias(p + "mlp.c_proj.bias", (d,), "mlp/down_bias"),
      cv.same("transformer.ln_f.weight", (d,), "final_norm/weight", "ones"),
      cv.same("transformer.ln_f.bias", (d,), "final_norm/bias", "zeros"),
  ]
  if not cfg.tie_word_embeddings:
    ws.append(cv.same("lm_head.weight", (v, d), "lm_head"))
  return ws


def rename(name: str) -> str:
  # The original OpenAI checkpoints on the hub were saved from GPT2Model: no "transformer." prefix.
  if name.startswith(("h.", "wte.", "wpe.", "ln_f.")):
    return "transformer." + name
  return name


def ignorable(name: str) -> bool:
  # Stale causal-mask buffers of old checkpoints (attn.bias is the (P, P) mask, not a weight).
  return name.endswith((".attn.bias", ".attn.masked_bias"))


class Block(nnx.Module):
  """One pre-norm GPT-2 layer: x + attn(ln_1(x)), then + mlp(ln_2(x)); (B, S, D) -> (B, S, D)."""

  def __init__(self, maker: modules.ParamMaker, cfg: ModelConfig):
    d = cfg.hidden_size
    scale = cfg.head_dim ** -0.5 if cfg.option("scale_attn_weights", True) else 1.0
    self.attn_norm = modules.LayerNorm(maker.child("attn_norm"), d, cfg.norm_eps)
    self.attn = modules.Attention(maker.child("attn"), cfg, qkv_bias=True, o_bias=True,
                                  rope=None, scale=scale)
    self.mlp_norm = modules.LayerNorm(maker.child("mlp_norm"), d, cfg.norm_eps)
    self.mlp = modules.MLP(maker.child("mlp"), cfg)

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    return x + self.mlp(self.mlp_norm(x))


def outer(cfg: ModelConfig, maker: modules.ParamMaker) -> dict:
  """embed, pos_embed, final_norm (LayerNorm), lm_head unless tied."""
  return modules.embed_and_head(cfg, maker, modules.LayerNorm, pos_embed=(cfg.max_position_embeddings, cfg.hidden_size))


def embed(cfg: ModelConfig, model, ids, positions):
  """ids, positions (B, S) int -> token + learned position embeddings (B, S, D)."""
  return modules.lookup(model.embed, ids) + modules.lookup(model.pos_embed, positions)


FAMILY = C.register_family(C.Family(
    name="gpt2", model_types=("gpt2",), config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=Block, outer=outer, embed=embed,
    unembed=modules.head_logits, ignorable=ignorable, rename=rename))
