"""YaRN rotary scaling as the installed transformers computes it (modeling_rope_utils
`_compute_yarn_parameters`, and DeepSeek-V2's `yarn_apply_mscale` softmax-scale correction).

Given the rotary dim R (DeepSeek-V2: qk_rope_head_dim), base theta, and the rope parameters
factor s, original_max_position_embeddings L0, beta_fast, beta_slow (defaults 32, 1), truncate
(default True):
  pos_freq_i = theta^(2i/R),  i = 0 .. R/2-1
  extrapolation frequency 1/pos_freq_i, interpolation frequency 1/(s * pos_freq_i);
  correction dims d(b) = R * ln(L0 / (2π b)) / (2 ln theta), low = d(beta_fast), high =
  d(beta_slow) (floor/ceil when truncating), clipped to [0, R-1];
  ramp_i = clip((i - low) / (high - low), 0, 1);  weight of extrapolation w_i = 1 - ramp_i;
  inv_freq_i = interp_i * (1 - w_i) + extrap_i * w_i.
Attention factor (multiplies cos and sin, i.e. both rotary halves of q and k):
  attention_factor if given, else m(s, mscale) / m(s, mscale_all_dim) when both mscale and
  mscale_all_dim are set (nonzero), else m(s, 1), with m(s, a) = 0.1 a ln s + 1 (1 for s <= 1).
Softmax scale of MLA: K_qk^-1/2, times m(s, mscale_all_dim)^2 when mscale_all_dim is set.

Where this differs from DeepSeek's original code (its published modeling_deepseek.py, read in
public copies; the installed transformers does not mention it): the original's cos/sin factor is
always m(s, mscale) / m(s, mscale_all_dim) with mscale_all_dim defaulting to 0 (m = 1), which
equals transformers' value whenever mscale_all_dim is set (as in the released DeepSeek-V2
configs) or mscale is unset; with mscale set and mscale_all_dim unset, transformers uses m(s, 1)
instead of m(s, mscale). We follow transformers (the parity reference).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

YARN_KEYS = frozenset({"factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
                       "mscale", "mscale_all_dim", "attention_factor", "truncate"})


def get_mscale(scale: float, mscale: float = 1.0) -> float:
  return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_inv_freq(dim: int, theta: float, rope: Mapping[str, Any],
                  max_position_embeddings: int) -> np.ndarray:
  """Inverse frequencies (dim/2,) float32, radians per position (float32 arithmetic, as torch)."""
  factor = _factor(rope, max_position_embeddings)
  old = rope["original_max_position_embeddings"]
  beta_fast = rope.get("beta_fast") or 32
  beta_slow = rope.get("beta_slow") or 1
  pos_freqs = np.float32(theta) ** (np.arange(0, dim, 2).astype(np.float32) / np.float32(dim))
  extrap = (np.float32(1.0) / pos_freqs).astype(np.float32)
  interp = (np.float32(1.0) / (np.float32(factor) * pos_freqs)).astype(np.float32)

  def corr_dim(rot):
    return (dim * math.log(old / (rot * 2 * math.pi))) / (2 * math.log(theta))

  low, high = corr_dim(beta_fast), corr_dim(beta_slow)
  if rope.get("truncate", True):
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001  # transformers' guard against a zero-width ramp
  ramp = np.clip((np.arange(dim // 2, dtype=np.float32) - np.float32(low))
                 / np.float32(high - low), 0, 1).astype(np.float32)
  w = (np.float32(1) - ramp).astype(np.float32)
  return (interp * (1 - w) + extrap * w).astype(np.float32)


def yarn_attention_factor(rope: Mapping[str, Any], max_position_embeddings: int) -> float:
  """The factor multiplying cos and sin (see the module docstring)."""
  if rope.get("attention_factor") is not None:
    return float(rope["attention_factor"])
  factor = _factor(rope, max_position_embeddings)
  mscale, mscale_all = rope.get("mscale"), rope.get("mscale_all_dim")
  if mscale and mscale_all:
    return float(get_mscale(factor, mscale) / get_mscale(factor, mscale_all))
  return get_mscale(factor)


def mla_softmax_scale(qk_head_dim: int, rope_type: str, rope: Mapping[str, Any]) -> float:
  """K_qk^-1/2 with DeepSeek-V2's mscale_all_dim² correction for scaled rope types."""
  scale = qk_head_dim ** -0.5
  if rope_type != "default" and rope.get("mscale_all_dim"):
    m = get_mscale(rope["factor"], rope["mscale_all_dim"])
    scale = scale * m * m
  return scale


def _factor(rope, max_position_embeddings) -> float:
  factor = rope.get("factor")
  if factor is None:  # transformers: the ratio of the extended to the original context
    factor = max_position_embeddings / rope["original_max_position_embeddings"]
  return float(factor)
