"""The estimator table: kind → preprocessing of the lagged vectors, estimators and memory model.

A new estimator is one ``Kind`` entry in ``KIND_TABLE``; ``phiid.phiid``, ``phiid.all_pairs``,
``phiid.local_head_atoms`` and ``phiid.degenerate`` look everything up here.

Axis legend: S lagged samples; ``axes`` are the axes a statistic is taken over (the time axis, or
time and prompts for pool="concat"); P prompts, U units.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from synergy_jax.phiid import bias
from synergy_jax.phiid import blocks_discrete
from synergy_jax.phiid import blocks_gaussian
from synergy_jax.phiid import blocks_smooth
from synergy_jax.phiid import checks
from synergy_jax.phiid import discrete
from synergy_jax.phiid import gaussian
from synergy_jax.phiid import transforms


@dataclasses.dataclass(frozen=True)
class Kind:
  """One estimator.

  prepare(series, config, axes) → (past, future): (..., T') preprocessed series in the compute
    dtype → its two lagged vectors (..., S) as the estimator wants them (standardised floats or
    int states).
  post_codes(past, future, axes) → (...) int32 ``checks.REASONS`` codes of estimator-specific
    degeneracy, reduced over ``axes`` (kept as size-1 except the last).
  pair(lagged, config, local) → atoms of one pair from prepared (x_p, y_p, x_f, y_f), each
    (..., n): (..., 16) or (..., n, 16) nats; plus (...) bool "singular" flags.
  encode(past, future, config, dtype) → tuple of (P, U, ...) block inputs.
  block(xs, ys, config) → ((B, M, 16) lattice values, (B, M) first singular prompt or −1).
  local_block(xs, ys, weights, config) → (P, B, S, 16) partner-averaged local lattice values.
  row_bytes(P, M, S, config, itemsize, local) → bytes of temporaries per block row.
  max_rows(config, local) → cap on rows per block.
  """
  name: str
  prepare: Callable
  post_codes: Callable
  pair: Callable
  encode: Callable
  block: Callable
  local_block: Callable
  row_bytes: Callable
  max_rows: Callable


# ------------------------------------------------------------------ Gaussian family


def _mi_offsets(config, n):
  return bias.mi_offsets(n) if config.bias_correction else None


def _lattice_offsets(config, n):
  return bias.lattice_offsets(n) if config.bias_correction else None


def _standardised(past, future, axes):
  return transforms.standardise(past, axes), transforms.standardise(future, axes)


def _prepare_gaussian(series, config, axes):
  return _standardised(*transforms.lag(series, config.tau), axes)


def _prepare_copula(series, config, axes):
  past, future = transforms.lag(series, config.tau)
  # Past and future are separate variables of the lattice: each gets its own ranks.
  return _standardised(transforms.normal_scores(past, axes), transforms.normal_scores(future, axes),
                       axes)


def _affine_codes(past, future, axes):
  """'future an affine function of the past' where 1 − r(x_p, x_f)² is below the pivot
  tolerance (then I(x_p; x_f) is infinite)."""
  n = 1
  for ax in axes:
    n *= past.shape[ax]
  c = jnp.sum(past * future, axis=axes, keepdims=True)[..., 0] / (n - 1)
  bad = ~((1 - c) * (1 + c) > gaussian.pivot_tolerance(past.dtype))
  return jnp.where(bad, checks.REASON_CODE["future an affine function of the past"], 0).astype(
      jnp.int32)


def _pair_gaussian(lagged, config, local):
  n = lagged[0].shape[-1]
  atoms = gaussian.pair_atoms(lagged, config.redundancy, local, _mi_offsets(config, n),
                              config.smooth_min)
  return atoms, gaussian.singular(*gaussian.correlations(lagged))


def _block_gaussian_body(xs, ys, config):
  n = xs[0].shape[-1] * (xs[0].shape[0] if config.pool == "concat" else 1)
  if config.smooth_min is not None:
    return blocks_smooth.average_block(xs, ys, pool=config.pool, temperature=config.smooth_min,
                                       mi_offsets=_mi_offsets(config, n))
  return blocks_gaussian.average_block(xs, ys, pool=config.pool, redundancy=config.redundancy,
                                       mi_offsets=_mi_offsets(config, n),
                                       lattice_offsets=_lattice_offsets(config, n))


def _block_gaussian(xs, ys, config):
  # Reverse mode through the pair grid's lax.map over blocks would otherwise keep every block's
  # residuals until the backward pass (all (U, M, ...) intermediates at once); checkpointed, it
  # keeps only each block's inputs and recomputes one block at a time. No effect on the forward.
  body = lambda xs_, ys_: _block_gaussian_body(xs_, ys_, config)
  return jax.checkpoint(body, prevent_cse=False)(xs, ys)


def _local_gaussian(xs, ys, weights, config):
  n = xs[0].shape[-1] * (xs[0].shape[0] if config.pool == "concat" else 1)
  return blocks_gaussian.local_block(xs, ys, weights, pool=config.pool,
                                     redundancy=config.redundancy,
                                     mi_offsets=_mi_offsets(config, n))


def _gaussian_kind(name, prepare):
  return Kind(
      name=name, prepare=prepare, post_codes=_affine_codes, pair=_pair_gaussian,
      encode=lambda past, future, config, dtype: (past, future),
      block=_block_gaussian, local_block=_local_gaussian,
      row_bytes=lambda p, m, s, config, itemsize, local: blocks_gaussian.row_bytes(
          p, m, s, config.redundancy, itemsize, local),
      max_rows=lambda config, local: blocks_gaussian.max_rows(config.redundancy, local))


# ------------------------------------------------------------------ discrete


def num_states(config):
  """Alphabet size K of a discrete config (2 for the binarising schemes)."""
  return config.num_states or 2


def _prepare_discrete(series, config, axes):
  how = config.discretise
  if how == "lagged":
    past, future = transforms.lag(series, config.tau)
    return transforms.binarise(past, axes), transforms.binarise(future, axes)
  if how == "series":
    states = transforms.binarise(series, axes)
  elif how == "quantile":
    states = transforms.quantile_states(series, num_states(config), axes)
  else:  # "given": integer states checked by the caller
    states = jnp.round(series).astype(jnp.int32)
  return transforms.lag(states, config.tau)


def _constant_state_codes(past, future, axes):
  code = jnp.zeros(jnp.max(past, axis=axes, keepdims=True)[..., 0].shape, jnp.int32)
  for side, v in (("past", past), ("future", future)):
    const = (jnp.max(v, axis=axes, keepdims=True) == jnp.min(v, axis=axes, keepdims=True))[..., 0]
    code = jnp.where((code == 0) & const, checks.REASON_CODE[f"constant {side} states"], code)
  return code


def _pair_discrete(lagged, config, local):
  atoms = discrete.pair_atoms(lagged, num_states(config), config.redundancy, local)
  return atoms, jnp.zeros(lagged[0].shape[:-1], bool)


DISCRETE = Kind(
    name="discrete", prepare=_prepare_discrete, post_codes=_constant_state_codes,
    pair=_pair_discrete,
    encode=lambda past, future, config, dtype: (
        blocks_discrete.one_hot_lags(past, future, num_states(config), dtype),),
    block=lambda xs, ys, config: blocks_discrete.average_block(
        xs, ys, pool=config.pool, redundancy=config.redundancy, num_states=num_states(config)),
    local_block=lambda xs, ys, weights, config: blocks_discrete.local_block(
        xs, ys, weights, pool=config.pool, redundancy=config.redundancy,
        num_states=num_states(config)),
    row_bytes=lambda p, m, s, config, itemsize, local: blocks_discrete.row_bytes(
        p, m, s, num_states(config), itemsize, local),
    max_rows=lambda config, local: 2 ** 31 - 1)

KIND_TABLE = {
    "gaussian": _gaussian_kind("gaussian", _prepare_gaussian),
    "copula": _gaussian_kind("copula", _prepare_copula),
    "discrete": DISCRETE,
}


def kind_of(config):
  return KIND_TABLE[config.kind]


def pool_axes(config, prompt_axis):
  """Axes of a statistic: the time axis, plus ``prompt_axis`` for pool="concat"."""
  return (-1,) if config.pool == "mean" else (prompt_axis, -1)
