"""ΦID of one pair of series (any batch axes): the definition every all-pairs path must equal."""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.phiid import checks
from synergy_jax.phiid import kinds
from synergy_jax.phiid import transforms
from synergy_jax.phiid.config import resolve_config
from synergy_jax.phiid.lattice import ATOMS


@functools.partial(jax.jit, static_argnames=("config", "local", "dtype"))
def pair_core(src, trg, *, config, local, dtype):
  """(..., T) or (..., P, T) for pool="concat" → atoms (..., 16) / (..., n, 16), and (...) codes:
  0 fine, else a ``checks.REASONS`` code of src (code) or trg (code + 100) or −1 (singular)."""
  kind = kinds.kind_of(config)
  axes = kinds.pool_axes(config, -2)
  lagged, codes = [], []
  for v in (src, trg):
    series = transforms.preprocess(v.astype(dtype), config.preprocess)
    raw = checks.raw_codes(series, config.tau)
    if config.kind == "discrete" and config.discretise == "given":
      outside = (series < 0) | (series >= config.num_states) | (series != jnp.round(series))
      raw = jnp.where((raw == 0) & jnp.any(outside, axis=-1),
                      checks.REASON_CODE["values outside the integer states [0, num_states)"], raw)
      series = jnp.where(outside, 0, series)
    # A degenerate series is masked below; swap it for an alternating 0/1 filler first (as
    # ``units.prepared`` does) so its NaN or infinite statistics cannot reach the gradient.
    filler = (jnp.arange(series.shape[-1]) % 2).astype(series.dtype)
    series = jnp.where((raw != 0)[..., None], filler, series)
    past, future = kind.prepare(series, config, axes)
    post = kind.post_codes(past, future, axes)
    if config.pool == "concat":  # (..., P) raw codes → the first nonzero over prompts
      raw = jnp.max(raw, axis=-1)
      past, future, post = (past.reshape(past.shape[:-2] + (-1,)),
                            future.reshape(future.shape[:-2] + (-1,)), post[..., 0])
    lagged.append((past, future))
    codes.append(jnp.where(raw != 0, raw, post))
  (xp, xf), (yp, yf) = lagged
  atoms, singular = kind.pair((xp, yp, xf, yf), config, local)
  code = jnp.where(codes[0] != 0, codes[0],
                   jnp.where(codes[1] != 0, codes[1] + 100, jnp.where(singular, -1, 0)))
  bad = code != 0
  bad = bad[..., None, None] if local else bad[..., None]
  return jnp.where(bad, jnp.asarray(jnp.nan, atoms.dtype), atoms), code


def _describe(code, dtype):
  """Problems of a (...) code array as text: 'src at (1, 0): constant past'."""
  out = []
  scalar = code.ndim == 0
  code = np.atleast_1d(code)
  for idx in zip(*np.nonzero(code)):
    c = int(code[idx])
    where = "" if scalar else f" at batch index {tuple(int(i) for i in idx)}"
    if c == -1:
      out.append(f"src and trg{where}: {checks.SINGULAR} in {np.dtype(dtype).name}")
    else:
      name = "src" if c < 100 else "trg"
      out.append(f"{name}{where}: {checks.reason_text(c % 100, dtype)}")
  return out


def phiid(src, trg, *, config=None, local=False, tau=1, redundancy="mmi", kind="gaussian",
          num_states=None, dtype=None, on_degenerate="raise"):
  """ΦID of one pair: ``src`` is source x, ``trg`` is source y.

  Both series play both roles: their past (t) is decomposed against their joint future (t + τ).
  (The names follow common ΦID code; neither series is a "target".)

  Args:
    src, trg: (..., T) series; leading axes are batch axes. With config.pool="concat" the last
      two axes are (prompts, T) and the lagged samples of all prompts are pooled into one
      estimate (no sample straddles two prompts), as ``all_pairs`` does.
    config: a ``PhiidConfig``; the legacy keyword arguments (tau, redundancy, kind, num_states)
      build one when it is None. T ≥ ``min_series_length(config)``.
    local: per-sample (local) atoms instead of their averages.
    dtype: compute dtype (default: src's floating dtype, else float64 under x64 / float32).
    on_degenerate: "raise" (ValueError naming src/trg, batch index and reason) or "mask" (NaN
      for those batch elements, with a warning). Traced inside a caller's jit: always NaN.
  Returns:
    dict atom name → array (...) (averages) or (..., n) (local; n = T' − τ, or P (T' − τ)
    pooled), nats. The mean of the local atoms over the last axis equals the averages.
  """
  config = resolve_config(config, tau=tau, redundancy=redundancy, kind=kind,
                          num_states=num_states)
  checks.check_choice("on_degenerate", on_degenerate, checks.ON_DEGENERATE)
  if local and config.smooth_min is not None:
    raise ValueError(f"PhiidConfig.smooth_min={config.smooth_min} applies to average atoms; "
                     f"pass local=False or smooth_min=None")
  src, trg = jnp.asarray(src), jnp.asarray(trg)
  if src.shape != trg.shape:
    raise ValueError(f"src shape {src.shape} and trg shape {trg.shape} differ")
  need = 2 if config.pool == "concat" else 1
  if src.ndim < need:
    raise ValueError(f"src and trg need a time axis (last axis){' and a prompt axis' * (need > 1)}")
  checks.check_length(src.shape[-1], config)
  if dtype is None:
    dtype = src.dtype if jnp.issubdtype(src.dtype, jnp.floating) else \
        jax.dtypes.canonicalize_dtype(jnp.float64)
  dtype = jnp.dtype(dtype)
  atoms, code = pair_core(src, trg, config=config, local=local, dtype=dtype)
  if not isinstance(code, jax.core.Tracer):
    problems = _describe(np.asarray(code), dtype)
    if problems and on_degenerate == "raise":
      raise ValueError(f"phiid: {len(problems)} problems: {'; '.join(problems[:10])}. Pass "
                       f"on_degenerate='mask' for NaN atoms there instead.")
    if problems:
      warnings.warn(f"phiid: NaN atoms for {'; '.join(problems[:10])}", stacklevel=2)
  return {name: atoms[..., k] for k, name in enumerate(ATOMS)}
