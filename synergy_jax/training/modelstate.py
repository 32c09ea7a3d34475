"""The model as training sees it: one `nnx.split` into a static graph, the `nnx.Param` state that
optax updates, and the rest (any other nnx variables; carried unchanged, never trained).

  split(model) -> (Split, params)      params: nnx.State of the module's nnx.Param variables
  Split.merge(params) -> Model         the module again (`nnx.merge`), e.g. inside a jitted loss
  like(state, pure) -> nnx.State       `state`'s structure and metadata with `pure`'s values
  to_pure(tree) / from_pure(pure, like)  every nnx.State inside a pytree <-> its plain nested
                                       dict (`nnx.to_pure_dict`): what checkpoints store

Every training function is a pure function of that state (the fast path Flax recommends: split
once, run jitted functions over the state, merge where a module is wanted). The state's tree is
the module's tree, so nothing here names a leaf: masks and labels are built from the family's
unit description (freeze.py) and follow whatever nesting the module has.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
from flax import nnx


@dataclasses.dataclass(frozen=True)
class Split:
  """What a model is besides its trainable state: graphdef (static: structure, config, dtype)
  and rest (an nnx.State of the variables that are not nnx.Param; empty for today's models)."""
  graphdef: Any
  rest: Any

  def merge(self, params) -> Any:
    """The module with ``params`` (an nnx.State like ``split``'s) as its nnx.Param values."""
    return nnx.merge(self.graphdef, params, self.rest)


def split(model) -> tuple[Split, Any]:
  """(Split, params) of an nnx module: ``nnx.split(model, nnx.Param, ...)``."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return Split(graphdef, rest), params


def params_of(model):
  """The module's nnx.Param state (nnx.State; arrays shared with the module, not copied)."""
  return nnx.state(model, nnx.Param)


def like(state, pure):
  """A new nnx.State with ``state``'s structure and variable metadata and the values of
  ``pure`` (a nested dict in ``nnx.to_pure_dict(state)``'s layout, e.g. a mask or restored
  arrays). Raises ValueError naming a key of ``pure`` that ``state`` lacks."""
  out = jax.tree.map(lambda x: x, state)  # fresh Variable objects: ``state`` is left as it is
  nnx.replace_by_pure_dict(out, pure)
  return out


def is_state(x) -> bool:
  return isinstance(x, nnx.State)


def to_pure(tree):
  """``tree`` with every nnx.State in it (params, the optimizer's moments) replaced by its plain
  nested dict of arrays (``nnx.to_pure_dict``); other nodes are kept."""
  return jax.tree.map(lambda x: nnx.to_pure_dict(x) if is_state(x) else x, tree,
                      is_leaf=is_state)


def from_pure(pure, like_tree):
  """Inverse of ``to_pure``: ``pure`` (to_pure's layout) back into ``like_tree``'s structure,
  each nnx.State rebuilt with ``like``. ``like_tree`` may hold ShapeDtypeStructs."""
  leaves, treedef = jax.tree.flatten(like_tree, is_leaf=is_state)
  parts = treedef.flatten_up_to(pure)
  return treedef.unflatten([like(l, p) if is_state(l) else p for l, p in zip(leaves, parts)])
