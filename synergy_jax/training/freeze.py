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

Labels and masks are nnx.States like the module's nnx.Param state (``modelstate.split``), built
from the family's unit description (``Family.units``: which slices of which leaf a head owns)
applied to that state's own tree, so they follow any nesting of the module and name no leaf.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flax import nnx

from synergy_jax import models
from synergy_jax.training import modelstate

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


def _owned(model, heads):
  """nnx.State like the module's nnx.Param state of bool arrays: the entries ``heads`` own."""
  params = modelstate.params_of(model)
  pure = models.head_parameter_mask(nnx.to_pure_dict(params), heads, config=model.config)
  return modelstate.like(params, pure)


def leaf_labels(model):
  """nnx.State like the module's nnx.Param state: "train" for leaves some head owns entries
  of, "freeze" otherwise (the family's unit description with every head selected)."""
  cfg = model.config
  owned = _owned(model, np.ones((cfg.num_layers, cfg.num_heads), bool))
  return jax.tree.map(lambda m: TRAIN if bool(np.any(m)) else FREEZE, owned)


def entry_mask(model, heads):
  """nnx.State like the module's nnx.Param state of bool arrays: True on the entries the
  chosen heads own.

  heads: unit indices, (layer, head) pairs or an (L, H) bool mask (``models.head_selection``).
  Raises ValueError for an empty selection (nothing would train) or a unit out of range.
  """
  mask = _owned(model, heads)
  if not any(bool(np.any(m)) for m in jax.tree.leaves(mask)):
    raise ValueError("the head selection is empty: no parameter would be trained")
  return mask


def restrict(inner: optax.GradientTransformation, model) -> optax.GradientTransformation:
  """``inner`` applied to the head-owned leaves of ``model``'s nnx.Param state only,
  entry-masked on both sides (see module docstring). Call ``update(grads, state, params,
  entry_mask=entry_mask(model, heads))`` with params the model's nnx.Param state."""
  partitioned = optax.transforms.partition({TRAIN: inner, FREEZE: optax.set_to_zero()},
                                           leaf_labels(model))
  return optax.chain(zero_entries(), partitioned, zero_entries())


def no_decay_of_vectors(params):
  """Weight-decay mask for fine-tuning (params: the nnx.Param state or any pytree of arrays):
  projection matrices (ndim ≥ 3 once stacked over layers: q (L, D, H, K), o (L, H, K, D))
  decay, biases (L, H, K) and norms do not."""
  return jax.tree_util.tree_map_with_path(
      lambda path, p: p.ndim >= 3 and "bias" not in jax.tree_util.keystr(path), params)
