"""Series transforms shared by every ΦID estimator: preprocessing, lagging and per-kind maps.

Axis legend: T time steps of a series, S = T' − τ lagged samples (T' after preprocessing), and
``axes`` the axes a statistic is taken over: the time axis alone (per prompt, pool="mean") or the
time axis together with the prompt axis (pooled, pool="concat").

Order of operations (the same in ``phiid.phiid`` and ``phiid.all_pairs``):
  1. ``preprocess`` each series per prompt ("detrend": least-squares line removed; "diff": first
     differences, one step shorter);
  2. ``lag``: past v[..., :T'−τ] and future v[..., τ:];
  3. the kind's map of the lagged vectors: ``standardise`` (gaussian), ``normal_scores`` then
     ``standardise`` (copula; Ince et al., Hum. Brain Mapp. 2017), or states (discrete:
     ``binarise`` each lagged vector at its own mean, or ``binarise`` / ``quantile_states`` of the
     whole series before step 2).
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import special


def preprocess(v, how):
  """(..., T) → (..., T) for "none" / "detrend", (..., T − 1) for "diff"; per series (last axis).

  "detrend" subtracts the least-squares line α + β t fitted to each series on its own.
  """
  if how == "none":
    return v
  if how == "diff":
    return v[..., 1:] - v[..., :-1]
  if how == "detrend":
    t = jnp.arange(v.shape[-1], dtype=v.dtype)
    t = t - jnp.mean(t)
    centred = v - jnp.mean(v, axis=-1, keepdims=True)
    slope = jnp.sum(centred * t, axis=-1, keepdims=True) / jnp.sum(t * t)
    return centred - slope * t
  raise ValueError(f"preprocess={how!r} is not one of ('none', 'detrend', 'diff')")


def lag(v, tau):
  """(..., T) → (past (..., T − τ), future (..., T − τ))."""
  return v[..., :-tau], v[..., tau:]


def _count(v, axes):
  n = 1
  for ax in axes:
    n *= v.shape[ax]
  return n


def standardise(v, axes=(-1,)):
  """(v − mean) / std over ``axes`` with ddof=1; same shape as v. Constant input gives NaN."""
  v = v - jnp.mean(v, axis=axes, keepdims=True)
  return v / jnp.sqrt(jnp.sum(v * v, axis=axes, keepdims=True) / (_count(v, axes) - 1))


def _flatten_axes(v, axes):
  """Move ``axes`` to the end and merge them: (..., n) plus the inverse map."""
  axes = tuple(sorted(ax % v.ndim for ax in axes))
  rest = tuple(ax for ax in range(v.ndim) if ax not in axes)
  moved = jnp.transpose(v, rest + axes)
  flat = moved.reshape(moved.shape[:len(rest)] + (-1,))

  def undo(w):
    w = w.reshape(moved.shape)
    return jnp.transpose(w, tuple(int(k) for k in np.argsort(rest + axes)))
  return flat, undo


def ordinal_ranks(v, axes=(-1,)):
  """Ranks 0 .. n − 1 over ``axes`` (ties ordered by position, a stable sort), int32."""
  flat, undo = _flatten_axes(v, axes)
  ranks = jnp.argsort(jnp.argsort(flat, axis=-1, stable=True), axis=-1, stable=True)
  return undo(ranks.astype(jnp.int32))


def normal_scores(v, axes=(-1,)):
  """Copula normalisation: z = Φ⁻¹((rank + 1) / (n + 1)), ranks from 0 over ``axes``.

  Depends on v only through its order, so any strictly increasing map of v leaves it unchanged.
  Same shape and dtype as v (floating).
  """
  n = _count(v, axes)
  u = (ordinal_ranks(v, axes).astype(v.dtype) + 1) / (n + 1)
  return special.ndtri(u)


def binarise(v, axes=(-1,)):
  """int32 states: 1 where v > its mean over ``axes``, else 0."""
  return (v > jnp.mean(v, axis=axes, keepdims=True)).astype(jnp.int32)


def quantile_states(v, num_states, axes=(-1,)):
  """int32 states 0 .. K − 1 in K equally filled bins over ``axes``: ⌊K · r / n⌋ with r the number
  of values strictly below v (so tied values share a state and distinct values fill the bins
  as evenly as n allows)."""
  flat, undo = _flatten_axes(v, axes)
  n = flat.shape[-1]
  below = jax.vmap(lambda row: jnp.searchsorted(jnp.sort(row), row, side="left"))(
      flat.reshape(-1, n)).reshape(flat.shape)
  return undo((below * num_states // n).astype(jnp.int32))
