"""Sharding annotations of the MoE and MLA parameters (the logical axis `sharding.MODEL` on the
axis model parallelism splits, as models/sharding.py expects), recorded on each nnx.Param.

Routed experts split over the expert axis E (expert parallelism: each device holds whole
experts); shared experts and the MLA projections over their width or heads; the router, norms
and biases are replicated. Keys are parameter paths inside the module ("experts/gate").
"""
from __future__ import annotations

import numpy as np
from flax import nnx

from synergy_jax.models.sharding import MODEL

SHARD_AXES = {
    # MoEFeedForward: experts (E, D, F) / (E, F, D); shared (H, D, F_s) / (H, F_s, D)
    "experts/gate": 0, "experts/up": 0, "experts/down": 0,
    "shared/gate": 2, "shared/up": 2, "shared/down": 1,
    # MultiHeadLatentAttention: q (D, N, H), q_b (Q, N, H), kv_b (C, N, P+V), o (N, V, D)
    "q": 1, "q_b": 1, "kv_b": 1, "o": 0,
}


def param(value, path: str) -> nnx.Param:
  """An nnx.Param annotated with MODEL on SHARD_AXES[path] (replicated if absent); not placed,
  so no mesh is needed to build (or nnx.eval_shape) the module."""
  ndim = np.ndim(value)
  axis = SHARD_AXES.get(path)
  annot = tuple(MODEL if i == axis else None for i in range(ndim))
  return nnx.Param(value, out_sharding=annot, eager_sharding=False)


class RandomMaker:
  """A stand-in for modules.ParamMaker that draws N(0, std²) values (for a module built on its
  own, outside a model: block tests, `nnx.eval_shape` sizing); annotated by SHARD_AXES.

  The MoE modules declare their weights through `maker.param(name, shape)` and
  `maker.child(name)`, so the same module code runs inside a model (ParamMaker: values from the
  params dict, a leading layer axis, the family's sharding table) and standalone (this class).
  """

  def __init__(self, rngs: nnx.Rngs, dtype, std: float = 0.02, prefix: tuple[str, ...] = ()):
    self.rngs, self.dtype, self.std, self.prefix = rngs, dtype, std, prefix

  def child(self, name: str) -> "RandomMaker":
    return RandomMaker(self.rngs, self.dtype, self.std, self.prefix + (name,))

  def param(self, name: str, shape: tuple[int, ...]) -> nnx.Param:
    import jax
    value = self.std * jax.random.normal(self.rngs.params(), tuple(shape), self.dtype)
    return param(value, "/".join(self.prefix + (name,)))
