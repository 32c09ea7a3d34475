"""Pure array functions under the NNX modules (modules.py) and the decoder: norms, activations,
rotary embeddings, the attention core with per-head output.

Axis letters (used in every einsum below): B batch, S query time, C key time (cache slots),
D hidden, N query heads, M key/value heads, G query heads per key/value head (N = M * G),
K head dim, F feed-forward width, V vocabulary.

All functions are pure and jit-able. Softmax, norms and rotary angles are computed in float32
whatever the parameter dtype; matmuls accumulate in float32 (`preferred_element_type`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models.config import ModelConfig

# Masked attention scores: large, finite and negative so that exp() underflows to exactly 0 and a
# query with no visible key (a padding slot) yields a uniform average instead of NaN.
MASK_VALUE = -1e30


def precision_for(dtype) -> jax.lax.Precision:
  """float32 paths ask for full-precision matmuls (GPU/TPU would otherwise use TF32/bf16)."""
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else jax.lax.Precision.DEFAULT


def einsum(spec: str, a, b, *, out_dtype=None):
  """einsum with float32 accumulation; result in `out_dtype` (default: a's dtype)."""
  out = jnp.einsum(spec, a, b, precision=precision_for(a.dtype),
                   preferred_element_type=jnp.float32)
  return out.astype(out_dtype or a.dtype)


def _as_matmul(spec: str):
  """For a projection spec "<P><C>,<C><O>-><P><O>" (x's trailing axes C contracted with w's
  leading ones, in order) the number of contracted axes; None for any other spec."""
  ins, out = spec.split("->")
  lhs, rhs = ins.split(",")
  for n in range(1, min(len(lhs), len(rhs)) + 1):
    if lhs[-n:] == rhs[:n] and out == lhs[:-n] + rhs[n:] and len(set(lhs + rhs)) == len(
        lhs) + len(rhs) - n:
      return n
  return None


def linear(spec: str, x, w, *, out_dtype=None):
  """``einsum`` of a projection, run as one 2-D matmul where the spec allows (``_as_matmul``).

  x's contracted trailing axes and w's leading ones are merged (w's other axes too), which are
  free reshapes of row-major arrays. XLA:CPU runs a dot with several contracting or output axes
  (e.g. "BSNK,NKD->BSD", the output projection) about half as fast as the same dot over merged
  axes (7 vs 16 GB/s at batch 8 on the 2-core test machine, docs/perf_capture.md); the sums are
  the same products over the same axes, so results agree to rounding.
  """
  n = _as_matmul(spec)
  if n is None:
    return einsum(spec, x, w, out_dtype=out_dtype)
  lead, con, rest = x.shape[:-n], x.shape[-n:], w.shape[n:]
  if tuple(w.shape[:n]) != tuple(con):
    raise ValueError(f"linear {spec!r}: x {x.shape} and w {w.shape} disagree on the contracted "
                     f"axes")
  y = einsum("XC,CY->XY", x.reshape(-1, math.prod(con)), w.reshape(math.prod(con), -1),
             out_dtype=out_dtype)
  return y.reshape(lead + rest)


def rms_norm(x, weight, eps: float, *, offset: float = 0.0):
  """x (..., D) / rms(x) * (offset + weight); statistics in float32, result in x's dtype."""
  xf = x.astype(jnp.float32)
  xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
  return (xf.astype(x.dtype) * (offset + weight).astype(x.dtype))


def layer_norm(x, weight, bias, eps: float):
  """x (..., D) standardised over D (float32 statistics), then scaled and shifted."""
  xf = x.astype(jnp.float32)
  mu = jnp.mean(xf, axis=-1, keepdims=True)
  var = jnp.mean(jnp.square(xf - mu), axis=-1, keepdims=True)
  y = (xf - mu) * jax.lax.rsqrt(var + eps)
  return (y * weight.astype(jnp.float32) + bias.astype(jnp.float32)).astype(x.dtype)


def activation(name: str, x):
  if name == "silu":
    return jax.nn.silu(x)
  if name == "gelu":
    return jax.nn.gelu(x, approximate=False)
  if name == "gelu_tanh":
    return jax.nn.gelu(x, approximate=True)
  if name == "relu":
    return jax.nn.relu(x)
  raise ValueError(f"activation {name!r} is not implemented")


# ---------------------------------------------------------------------------------------------
# Rotary position embeddings (the "rotate half" layout used by HF Llama-style checkpoints)
# ---------------------------------------------------------------------------------------------

def rope_inv_freq(cfg: ModelConfig, rotary_dim: int | None = None) -> np.ndarray:
  """Inverse frequencies (rotary_dim/2,) float32 in radians per position, with rope scaling.

  "linear" divides every frequency by `factor`. "llama3" (Llama 3.1) keeps wavelengths shorter
  than original_max_position_embeddings / high_freq_factor, divides those longer than
  original_max_position_embeddings / low_freq_factor by `factor`, and interpolates linearly in
  (original_max_position_embeddings / wavelength) between the two.
  """
  dim = rotary_dim or cfg.head_dim
  exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
  inv = (1.0 / (np.float32(cfg.rope_theta) ** exponents)).astype(np.float32)
  r = cfg.rope
  if cfg.rope_type == "linear":
    inv = inv / np.float32(r["factor"])
  elif cfg.rope_type == "llama3":
    factor, lo, hi = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
    old_len = r["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv
    scaled = np.where(wavelen > old_len / lo, inv / factor, inv)
    smooth = (old_len / wavelen - lo) / (hi - lo)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
    inv = np.where(medium, blended, scaled).astype(np.float32)
  return inv


def rope_angles(positions, inv_freq):
  """cos, sin (B, S, R) float32 for integer positions (B, S); R = 2 * len(inv_freq)."""
  ang = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)[None, None, :]
  ang = jnp.concatenate([ang, ang], axis=-1)
  return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x, cos, sin):
  """Rotates x (B, S, heads, K) by angles (B, S, R), R <= K (the first R dims rotate).

  Within the rotated block, dim i pairs with dim i + R/2 (rotate-half layout).
  """
  r = cos.shape[-1]
  xr, xpass = x[..., :r].astype(jnp.float32), x[..., r:]
  half = r // 2
  rotated = jnp.concatenate([-xr[..., half:], xr[..., :half]], axis=-1)
  out = xr * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  out = out.astype(x.dtype)
  return out if xpass.shape[-1] == 0 else jnp.concatenate([out, xpass], axis=-1)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------

def attention_mask(q_pos, k_pos, k_valid, window):
  """Which keys each query sees: (B, S, C) bool.

  q_pos (B, S) and k_pos (B, C) are token positions; k_valid (B, C) marks real (non-padding,
  already written) keys; window is a scalar int (0 = full causal attention), traced so that
  layers with different windows share one compiled body.
  """
  diff = q_pos[:, :, None] - k_pos[:, None, :]  # (B, S, C)
  visible = (diff >= 0) & k_valid[:, None, :]
  return visible & ((window <= 0) | (diff < window))


def _widen_on_cpu(*xs):
  """The operands of a batched dot with two or more batch axes, widened to float32 on CPU when
  of lower precision: XLA:CPU has no such bf16 x bf16 -> f32 dot ("Unsupported element type for
  DotThunk"). Exact: the product of two bfloat16 (or float16) values is exact in float32, and
  the accumulation is float32 either way. Other backends get the operands unchanged."""
  if jax.default_backend() != "cpu":
    return xs
  return tuple(x.astype(jnp.float32) if jnp.dtype(x.dtype).itemsize < 4 else x for x in xs)


def rounded(x, precision, out_dtype=None):
  """x rounded to the floating dtype `precision` and stored in `out_dtype` (default: precision).

  The rounding is explicit (``reduce_precision``) wherever a narrower dtype meets a wider one, so
  a later widening (``_widen_on_cpu``, a float32 cache of a bfloat16 model) sees exactly the
  narrow values whatever XLA fuses: it may otherwise keep excess precision through a
  narrow-then-wide conversion pair."""
  out_dtype = jnp.dtype(precision if out_dtype is None else out_dtype)
  narrow = jnp.dtype(precision)
  if jnp.issubdtype(narrow, jnp.floating) and narrow.itemsize < max(
      jnp.dtype(x.dtype).itemsize, out_dtype.itemsize):
    fi = jnp.finfo(narrow)
    x = jax.lax.reduce_precision(x.astype(jnp.promote_types(x.dtype, out_dtype)),
                                 exponent_bits=fi.nexp, mantissa_bits=fi.nmant)
  return x.astype(out_dtype)


def attend(q, k, v, mask, *, scale: float, softcap: float | None = None,
           heads_first: bool = False):
  """Per-head attention outputs softmax(q kᵀ * scale) v, before any output projection.

  q (B, S, N, K); k (B, C, M, K); v (B, C, M, Kv), or with heads_first k (B, M, C, K) and
  v (B, M, C, Kv) (the dense cache's layout: the batched dots' batch axes B, M lead, so XLA
  reads the cache without a transposing copy; lower-precision operands are widened for those
  dots on CPU, `_widen_on_cpu`; a CPU cache may already be float32, decoder.cache_dtype); mask
  (B, S, C) bool -> (B, S, N, Kv) in q's dtype, the model's (Kv = K except for multi-head
  latent attention).
  Scores and softmax in float32; optional tanh soft-capping of the scores (Gemma 2).
  """
  b, s, n, kd = q.shape
  m = k.shape[1] if heads_first else k.shape[2]
  kv = "BMCK" if heads_first else "BCMK"
  qg = q.reshape(b, s, m, n // m, kd)  # query head n = m * G + g
  dtype = q.dtype
  if heads_first:
    qg, k = _widen_on_cpu(qg, k)
  scores = einsum(f"BSMGK,{kv}->BMGSC", qg, k, out_dtype=jnp.float32) * scale
  if softcap is not None:
    scores = jnp.tanh(scores / softcap) * softcap
  scores = jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1)
  probs = rounded(probs, dtype)  # the model dtype's rounding (as a dot of that dtype reads it)
  if heads_first:
    probs, v = _widen_on_cpu(probs, v)
  out = einsum(f"BMGSC,{kv}->BSMGK", probs, v, out_dtype=dtype)
  return out.reshape(b, s, n, v.shape[-1])  # the value head dim (MLA: != q's)


def head_norm(heads):
  """L2 norm over the head dimension, float32: (..., K) -> (...).

  Differentiable everywhere: at an exactly zero vector (an ablated head, a padded slot) the value
  is 0 and the gradient 0 (double where: the square root never sees 0, so the backward pass has
  no inf · 0), which lets ΦID objectives on captured norms train through head masks."""
  h = heads.astype(jnp.float32)
  sq = jnp.sum(h * h, axis=-1)
  pos = sq > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, sq, 1.0)), 0.0)
