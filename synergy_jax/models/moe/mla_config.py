"""Typed configuration of DeepSeek-V2 multi-head latent attention (MLA), read strictly from an HF
`deepseek_v2` config dict.

Sizes (letters used in mla.py): D hidden_size, N heads, Q q_lora_rank (None: a full q_proj),
C kv_lora_rank (the latent), P qk_nope_head_dim, R qk_rope_head_dim, V v_head_dim; the query/key
head dim is P + R, the value head dim V (they may differ).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from synergy_jax.models.moe import yarn

ROPE_TYPES = ("default", "yarn")
# How a decoding step (one query token over a latent cache) computes attention (mla.py):
# "expanded" rebuilds per-head k_nope, v of every cached slot through kv_b; "absorbed" folds
# kv_b into the query and the output instead (the default: faster, docs/moe.md). Same
# quantities; a numerical path, not part of the HF config.
DECODE_KINDS = ("expanded", "absorbed")
# transformers builds q_a_layernorm and kv_a_layernorm with the RMSNorm default eps (1e-6),
# not rms_norm_eps; so does DeepSeek's code.
LATENT_NORM_EPS = 1e-6


@dataclasses.dataclass(frozen=True)
class MLAConfig:
  """MLA sizes and rope (hashable). rope_scaling: sorted (key, value) pairs of the YaRN
  parameters (yarn.YARN_KEYS) or None for rope_type "default". decode: one of DECODE_KINDS
  (not read from or written to HF configs; see deepseek_v2.with_decode)."""
  hidden_size: int
  num_heads: int
  kv_lora_rank: int
  qk_nope_head_dim: int
  qk_rope_head_dim: int
  v_head_dim: int
  q_lora_rank: int | None = None
  attention_bias: bool = False
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  max_position_embeddings: int = 2048
  latent_norm_eps: float = LATENT_NORM_EPS
  decode: str = "absorbed"

  def __post_init__(self):
    if self.decode not in DECODE_KINDS:
      raise ValueError(f"MLAConfig.decode={self.decode!r} is not known (known: "
                       f"{list(DECODE_KINDS)})")
    for name in ("hidden_size", "num_heads", "kv_lora_rank", "qk_nope_head_dim",
                 "qk_rope_head_dim", "v_head_dim", "max_position_embeddings"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"MLAConfig.{name} must be positive, got {getattr(self, name)}")
    if self.q_lora_rank is not None and self.q_lora_rank <= 0:
      raise ValueError(f"MLAConfig.q_lora_rank must be positive or None, got {self.q_lora_rank}")
    if self.qk_rope_head_dim % 2:
      raise ValueError(f"MLAConfig.qk_rope_head_dim={self.qk_rope_head_dim} must be even "
                       "(rotary pairs)")
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(f"MLAConfig.rope_type={self.rope_type!r} is not implemented "
                       f"(implemented: {list(ROPE_TYPES)})")
    if not (math.isfinite(self.rope_theta) and self.rope_theta > 0):
      raise ValueError(f"MLAConfig.rope_theta={self.rope_theta} must be positive and finite")
    if self.rope_type == "yarn":
      r = self.rope
      if "original_max_position_embeddings" not in r:
        raise ValueError("MLAConfig yarn rope needs original_max_position_embeddings")
      if not (isinstance(r.get("factor"), (int, float)) and r["factor"] > 0):
        raise ValueError(f"MLAConfig yarn rope needs a positive factor, got {r.get('factor')!r}")

  @property
  def qk_head_dim(self) -> int:
    return self.qk_nope_head_dim + self.qk_rope_head_dim

  @property
  def rope(self) -> dict[str, Any]:
    return dict(self.rope_scaling or ())

  @property
  def softmax_scale(self) -> float:
    return yarn.mla_softmax_scale(self.qk_head_dim, self.rope_type, self.rope)


def mla_from_hf(hf: Mapping[str, Any]) -> MLAConfig:
  """MLAConfig of a `deepseek_v2` HF config dict; raises naming unimplemented values."""
  mt = hf.get("model_type")
  if mt != "deepseek_v2":
    raise ValueError(f"multi-head latent attention is read from deepseek_v2 configs, got "
                     f"model_type={mt!r}")
  heads = int(hf["num_attention_heads"])
  kv_heads = hf.get("num_key_value_heads")
  if kv_heads not in (None, heads):
    # kv_b_proj yields one key/value per query head; transformers would repeat them again.
    raise ValueError(f"deepseek_v2 config field num_key_value_heads={kv_heads} is not "
                     f"implemented (MLA needs num_key_value_heads == num_attention_heads={heads})")
  if hf.get("attention_dropout"):
    raise ValueError(f"deepseek_v2 config field attention_dropout={hf['attention_dropout']} is "
                     "not implemented (inference-only models; must be 0)")
  theta, rope_type, scaling = _rope(hf)
  q_rank = hf.get("q_lora_rank")
  cfg = MLAConfig(hidden_size=int(hf["hidden_size"]), num_heads=heads,
                  kv_lora_rank=int(hf["kv_lora_rank"]),
                  qk_nope_head_dim=int(hf["qk_nope_head_dim"]),
                  qk_rope_head_dim=int(hf["qk_rope_head_dim"]),
                  v_head_dim=int(hf["v_head_dim"]),
                  q_lora_rank=None if q_rank is None else int(q_rank),
                  attention_bias=bool(hf.get("attention_bias", False)),
                  rope_theta=theta, rope_type=rope_type, rope_scaling=scaling,
                  max_position_embeddings=int(hf.get("max_position_embeddings", 2048)))
  qk = hf.get("qk_head_dim")
  if qk is not None and qk != cfg.qk_head_dim:
    raise ValueError(f"deepseek_v2 config field qk_head_dim={qk} != qk_nope_head_dim + "
                     f"qk_rope_head_dim = {cfg.qk_head_dim}")
  # transformers 5 sets head_dim = qk_rope_head_dim (the rotary width) in config.json.
  head_dim = hf.get("head_dim")
  if head_dim is not None and head_dim != cfg.qk_rope_head_dim:
    raise ValueError(f"deepseek_v2 config field head_dim={head_dim} is not implemented "
                     f"(transformers reads it as the rotary width qk_rope_head_dim="
                     f"{cfg.qk_rope_head_dim}; a different value changes the rope)")
  return cfg


def _rope(hf) -> tuple[float, str, tuple | None]:
  """(theta, rope_type, sorted yarn parameters) from rope_parameters and/or legacy rope_scaling."""
  mt = "deepseek_v2"
  params = dict(hf.get("rope_parameters") or {})
  legacy = hf.get("rope_scaling")
  if legacy:
    params = {**dict(legacy), **params}
  theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
  rope_type = params.pop("rope_type", params.pop("type", "default"))
  params.pop("type", None)
  if rope_type not in ROPE_TYPES:
    raise ValueError(f"{mt} config field rope_parameters rope_type={rope_type!r} is not "
                     f"implemented (implemented: {list(ROPE_TYPES)})")
  prf = params.pop("partial_rotary_factor", 1.0)
  if prf != 1.0:
    raise ValueError(f"{mt} config field partial_rotary_factor={prf} is not implemented")
  if rope_type == "default":
    if params:
      raise ValueError(f"{mt} rope parameters {sorted(params)} are not used by rope_type "
                       "'default' (not implemented)")
    return theta, rope_type, None
  unknown = sorted(set(params) - yarn.YARN_KEYS)
  if unknown:
    raise ValueError(f"{mt} yarn rope parameters {unknown} are not implemented "
                     f"(implemented: {sorted(yarn.YARN_KEYS)})")
  # transformers fills original_max_position_embeddings from max_position_embeddings if absent.
  params.setdefault("original_max_position_embeddings", int(hf.get("max_position_embeddings",
                                                                   2048)))
  params = {k: v for k, v in params.items() if v is not None}
  return theta, rope_type, tuple(sorted(params.items()))


def mla_to_hf(cfg: MLAConfig) -> dict[str, Any]:
  """The MLA and rope fields of a deepseek_v2 HF config (inverse of mla_from_hf on them)."""
  rope = {"rope_type": cfg.rope_type, "rope_theta": cfg.rope_theta, **cfg.rope}
  return {"q_lora_rank": cfg.q_lora_rank, "kv_lora_rank": cfg.kv_lora_rank,
          "qk_nope_head_dim": cfg.qk_nope_head_dim, "qk_rope_head_dim": cfg.qk_rope_head_dim,
          "v_head_dim": cfg.v_head_dim, "attention_bias": cfg.attention_bias,
          "rope_parameters": rope, "hidden_size": cfg.hidden_size,
          "num_attention_heads": cfg.num_heads,
          "max_position_embeddings": cfg.max_position_embeddings}
