"""Training only some heads: an optax optimizer whose frozen parameters come out bit-identical.

A head owns entries *inside* leaves (its rows of ``q``, its columns of ``o``: the model family's
``models.head_parameter_mask``), so freezing takes two levels:

  leaves   ``optax.transforms.partition`` sends leaves no head owns (embeddings, norms, MLPs,
           keys, values) to ``optax.set_to_zero()``: no update and no optimizer state for them;
  entries  inside the trainable leaves, ``zero_entries`` replaces the gradient of every entry
           outside the selection by 0 before the inner optimizer and its update by 0 after it.

Zeroing the gradient first keeps global-norm clipping and Adam's moments about the selected
entries only; zeroing the update last makes frozen entries exact even under AdamW's weight decay
(which adds λ·p to every update). p + 0 is p bit for bit, so frozen entries never change.

The entry mask is an *extra argument* of ``update`` (``entry_mask=``, a pytree of bools or 0/1
floats like params), i.e. traced: every head selection of a model shares one compiled step.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from synergy_jax import models

TRAIN, FREEZE = "train", "freeze"


class ZeroEntriesState(NamedTuple):
  """zero_entries keeps no state."""


def zero_entries() -> optax.GradientTransformationExtraArgs:
  """Sets to 0 every entry of the updates where ``entry_mask`` (extra argument of update) is
  False; leaves the others unchanged. entry_mask: pytree like the updates."""

  def init_fn(params):
    del params
    return ZeroEntriesState()

  def update_fn(updates, state, params=None, *, entry_mask=None, **extra):
    del params, extra
    if entry_mask is None:
      raise ValueError("zero_entries needs update(..., entry_mask=pytree like params)")
    zeroed = jax.tree.map(lambda u, m: jnp.where(jnp.asarray(m, bool), u, jnp.zeros_like(u)),
                          updates, entry_mask)
    return zeroed, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def leaf_labels(params) -> dict:
  """Pytree like params of "train" for leaves some head owns entries of, "freeze" otherwise
  (from ``models.head_parameter_mask`` with every head selected)."""
  L, H = models.units_shape(params)
  owned = models.head_parameter_mask(params, np.ones((L, H), bool))
  return jax.tree.map(lambda m: TRAIN if bool(np.any(m)) else FREEZE, owned)


def entry_mask(params, heads) -> dict:
  """Pytree like params of bool arrays: True on the entries the chosen heads own.

  heads: unit indices, (layer, head) pairs or an (L, H) bool mask (``models.head_selection``).
  Raises ValueError for an empty selection (nothing would train).
  """
  mask = models.head_parameter_mask(params, heads)
  if not any(bool(np.any(m)) for m in jax.tree.leaves(mask)):
    raise ValueError("the head selection is empty: no parameter would be trained")
  return mask


def restrict(inner: optax.GradientTransformation, params) -> optax.GradientTransformation:
  """``inner`` applied to the head-owned leaves only, entry-masked on both sides (see module
  docstring). Call ``update(grads, state, params, entry_mask=entry_mask(params, heads))``."""
  partitioned = optax.transforms.partition({TRAIN: inner, FREEZE: optax.set_to_zero()},
                                           leaf_labels(params))
  return optax.chain(zero_entries(), partitioned, zero_entries())


def no_decay_of_vectors(params):
  """Weight-decay mask for fine-tuning: projection matrices (ndim ≥ 3 once stacked over
  layers: q (L, D, H, K), o (L, H, K, D)) decay, biases (L, H, K) and norms do not."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim >= 3 and "bias" not in jax.tree_util.keystr(path), params)
