"""HF tensors of one DeepSeek-V2 attention layer (prefix `model.layers.{i}.self_attn`) <->
the module layout of mla.MultiHeadLatentAttention, strictly (every tensor under the prefix is
consumed exactly once; missing, unexpected and wrongly shaped tensors raise naming them).

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

from synergy_jax.models.moe.mla_config import MLAConfig


def _specs(cfg: MLAConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
  """our name -> (HF name, HF shape)."""
  d, n, h = cfg.hidden_size, cfg.num_heads, cfg.qk_head_dim
  c, r, p, v = cfg.kv_lora_rank, cfg.qk_rope_head_dim, cfg.qk_nope_head_dim, cfg.v_head_dim
  out = {}
  if cfg.q_lora_rank is None:
    out["q"] = ("q_proj.weight", (n * h, d))
  else:
    q = cfg.q_lora_rank
    out["q_a"] = ("q_a_proj.weight", (q, d))
    out["q_a_norm"] = ("q_a_layernorm.weight", (q,))
    out["q_b"] = ("q_b_proj.weight", (n * h, q))
    if cfg.attention_bias:
      out["q_a_bias"] = ("q_a_proj.bias", (q,))
  out["kv_a"] = ("kv_a_proj_with_mqa.weight", (c + r, d))
  out["kv_a_norm"] = ("kv_a_layernorm.weight", (c,))
  out["kv_b"] = ("kv_b_proj.weight", (n * (p + v), c))
  out["o"] = ("o_proj.weight", (d, n * v))
  if cfg.attention_bias:
    out["kv_a_bias"] = ("kv_a_proj_with_mqa.bias", (c + r,))
    out["o_bias"] = ("o_proj.bias", (d,))
  return out


def _to_ours(name: str, a: np.ndarray, cfg: MLAConfig) -> np.ndarray:
  n = cfg.num_heads
  if name in ("q", "q_b", "kv_b"):  # (N*W, in) -> (in, N, W)
    return a.reshape(n, -1, a.shape[-1]).transpose(2, 0, 1)
  if name in ("q_a", "kv_a"):
    return a.T
  if name == "o":  # (D, N*V) -> (N, V, D)
    return a.reshape(a.shape[0], n, -1).transpose(1, 2, 0)
  return a


def _to_hf(name: str, a: np.ndarray) -> np.ndarray:
  if name in ("q", "q_b", "kv_b"):  # (in, N, W) -> (N*W, in)
    return a.transpose(1, 2, 0).reshape(-1, a.shape[0])
  if name in ("q_a", "kv_a"):
    return a.T
  if name == "o":  # (N, V, D) -> (D, N*V)
    return a.transpose(2, 0, 1).reshape(a.shape[2], -1)
  return a


def mla_weights_from_hf(tensors: Mapping[str, Any], prefix: str, cfg: MLAConfig
                        ) -> dict[str, np.ndarray]:
  """Module-layout weights of the attention layer at `prefix` (e.g. model.layers.0.self_attn)."""
  out = {}
  for name, (hf, shape) in _specs(cfg).items():
    key = f"{prefix}.{hf}"
    if key not in tensors:
      raise ValueError(f"missing tensor {key!r}")
    a = np.asarray(tensors[key])
    if a.shape != shape:
      raise ValueError(f"tensor {key!r} has shape {a.shape}, expected {shape}")
    out[name] = _to_ours(name, a, cfg)
  known = {f"{prefix}.{hf}" for hf, _ in _specs(cfg).values()}
  left = sorted(k for k in tensors if k.startswith(prefix + ".") and k not in known)
  if left:
    raise ValueError(f"unexpected tensors under {prefix!r}: {left}")
  return out


def mla_weights_to_hf(weights: Mapping[str, Any], prefix: str, cfg: MLAConfig
                      ) -> dict[str, np.ndarray]:
  """Inverse of mla_weights_from_hf."""
  specs = _specs(cfg)
  extra = sorted(set(weights) - set(specs))
  if extra:
    raise ValueError(f"unexpected MLA weights {extra}")
  return {f"{prefix}.{hf}": np.ascontiguousarray(_to_hf(name, np.asarray(weights[name])))
          for name, (hf, _) in specs.items()}
