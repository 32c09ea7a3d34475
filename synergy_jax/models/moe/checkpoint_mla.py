"""HF tensors of one DeepSeek-V2 attention layer (prefix `model.layers.{i}.self_attn`) <->
the module layout of mla.LatentWeights: the one table of this mapping (`attention_weights`,
convert.Weight records), used by the deepseek_v2 family's weight specs (whole checkpoints, one
"{i}" per layer) and by `mla_weights_from_hf` / `mla_weights_to_hf` (one layer's tensors,
strictly: every tensor under the prefix is consumed exactly once; missing, unexpected and
wrongly shaped tensors raise naming them).

HF (out, in) Linear weights and our layout (letters as in mla.py):
  q_proj (N*H, D) -> q (D, N, H)            q_a_proj (Q, D) -> q_a (D, Q), bias (Q,)
  q_a_layernorm (Q,) -> q_a_norm            q_b_proj (N*H, Q) -> q_b (Q, N, H)
  kv_a_proj_with_mqa (C+R, D) -> kv_a (D, C+R), bias (C+R,)
  kv_a_layernorm (C,) -> kv_a_norm          kv_b_proj (N*(P+V), C) -> kv_b (C, N, P+V)
  o_proj (D, N*V) -> o (N, V, D), bias (D,)
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from synergy_jax.models import convert as cv
from synergy_jax.models.moe.mla_config import MLAConfig


def attention_weights(cfg: MLAConfig, hf_prefix: str = "", key_prefix: str = ""
                      ) -> list[cv.Weight]:
  """The Weight records of one MLA layer: HF names `hf_prefix + "q_proj.weight"` etc. (the
  family passes "model.layers.{i}.self_attn."), parameter keys `key_prefix + "q"` etc."""
  d, n, h = cfg.hidden_size, cfg.num_heads, cfg.qk_head_dim
  c, r, p, v = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
  hp, kp = hf_prefix, key_prefix
  if cfg.q_lora_rank is None:
    ws = [cv.linear(hp + "q_proj.weight", (n, h), d, kp + "q")]
  else:
    q = cfg.q_lora_rank
    ws = [cv.linear(hp + "q_a_proj.weight", (q,), d, kp + "q_a"),
          cv.same(hp + "q_a_layernorm.weight", (q,), kp + "q_a_norm", "ones"),
          cv.linear(hp + "q_b_proj.weight", (n, h), q, kp + "q_b")]
    if cfg.attention_bias:
      ws.append(cv.bias(hp + "q_a_proj.bias", (q,), kp + "q_a_bias"))
  ws += [cv.linear(hp + "kv_a_proj_with_mqa.weight", (c + r,), d, kp + "kv_a"),
         cv.same(hp + "kv_a_layernorm.weight", (c,), kp + "kv_a_norm", "ones"),
         cv.linear(hp + "kv_b_proj.weight", (n, p + v), c, kp + "kv_b"),
         cv.linear_in(hp + "o_proj.weight", d, (n, v), kp + "o")]
  if cfg.attention_bias:
    ws += [cv.bias(hp + "kv_a_proj_with_mqa.bias", (c + r,), kp + "kv_a_bias"),
           cv.bias(hp + "o_proj.bias", (d,), kp + "o_bias")]
  return ws


def mla_weights_from_hf(tensors: Mapping[str, Any], prefix: str, cfg: MLAConfig
                        ) -> dict[str, np.ndarray]:
  """Module-layout weights of the attention layer at `prefix` (e.g. model.layers.0.self_attn)."""
  specs = attention_weights(cfg, prefix + ".")
  out = {}
  for w in specs:
    if w.hf not in tensors:
      raise ValueError(f"missing tensor {w.hf!r}")
    a = np.asarray(tensors[w.hf])
    if a.shape != w.shape:
      raise ValueError(f"tensor {w.hf!r} has shape {a.shape}, expected {w.shape}")
    (out[w.keys[0]],) = w.to_params(a)
  known = {w.hf for w in specs}
  left = sorted(k for k in tensors if k.startswith(prefix + ".") and k not in known)
  if left:
    raise ValueError(f"unexpected tensors under {prefix!r}: {left}")
  return out


def mla_weights_to_hf(weights: Mapping[str, Any], prefix: str, cfg: MLAConfig
                      ) -> dict[str, np.ndarray]:
  """Inverse of mla_weights_from_hf."""
  specs = attention_weights(cfg, prefix + ".")
  extra = sorted(set(weights) - {w.keys[0] for w in specs})
  if extra:
    raise ValueError(f"unexpected MLA weights {extra}")
  missing = sorted({w.keys[0] for w in specs} - set(weights))
  if missing:
    raise ValueError(f"missing MLA weights {missing}")
  return {w.hf: np.ascontiguousarray(w.from_params((np.asarray(weights[w.keys[0]]),)))
          for w in specs}
