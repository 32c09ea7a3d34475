"""Every unit's lagged vectors, prepared for the estimator of a config, with its problem codes.

Axis legend: P prompts, U units, T time steps, S lagged samples.
"""
import functools

import jax
import jax.numpy as jnp

from synergy_jax.phiid import checks
from synergy_jax.phiid import kinds
from synergy_jax.phiid import transforms


def prepared(acts, config, dtype):
  """(P, U, T) activity → the estimator's view of every unit (in-graph).

  Returns:
    past, future: (P, U, S) prepared lagged vectors (``Kind.prepare``; statistics per prompt, or
      over all prompts for pool="concat"). Units with a raw problem are replaced by an
      alternating 0/1 series first, so no NaN enters the shared products (their rows and
      columns are masked at the end).
    raw: (P, U) int32 ``checks.REASONS`` codes of the value checks, in ``dtype``.
    post: (P', U) int32 estimator-specific codes (P' = P, or 1 for pool="concat").
    bad: (U,) bool, any problem in any prompt.
  """
  kind = kinds.kind_of(config)
  series = transforms.preprocess(jnp.asarray(acts).astype(dtype), config.preprocess)
  raw = checks.raw_codes(series, config.tau)
  if config.kind == "discrete" and config.discretise == "given":
    outside = (series < 0) | (series >= config.num_states) | (series != jnp.round(series))
    raw = jnp.where((raw == 0) & jnp.any(outside, axis=-1),
                    checks.REASON_CODE["values outside the integer states [0, num_states)"], raw)
  bad = jnp.any(raw != 0, axis=0)
  filler = (jnp.arange(series.shape[-1]) % 2).astype(dtype)
  series = jnp.where(bad[None, :, None], filler, series)
  past, future = kind.prepare(series, config, kinds.pool_axes(config, 0))
  post = kind.post_codes(past, future, kinds.pool_axes(config, 0))
  post = jnp.where(bad[None], 0, post)  # one reason per unit: the raw one wins
  return past, future, raw, post, bad | jnp.any(post != 0, axis=0)


@functools.partial(jax.jit, static_argnames=("config", "dtype"))
def codes(acts, *, config, dtype):
  """(raw (P, U), post (P', U)) problem codes of concrete activity, as ``prepared`` finds them."""
  _, _, raw, post, _ = prepared(acts, config, dtype)
  return raw, post


def unit_problems(acts, config, dtype, name="acts"):
  """Problems of the units of (P, U, T) ``acts`` (the array is called ``name`` in them)."""
  raw, post = codes(jnp.asarray(acts), config=config, dtype=jnp.dtype(dtype))
  out = checks.unit_problems(raw, name, dtype)
  out += checks.unit_problems(post, name, dtype, pooled=config.pool == "concat")
  return sorted(out, key=lambda pr: (pr.unit, -1 if pr.prompt is None else pr.prompt))
