"""Placing params and batches on a `jax.sharding.Mesh`.

Data parallelism: batches are split over the mesh axis `data_axis` (prompts); `generate`/`score`
take `mesh=` and do this themselves. Model parallelism for models larger than one device: every
params leaf is split over `model_axis` along its head or feed-forward/vocabulary axis when that
axis divides evenly, and replicated otherwise. The jitted functions follow the placement (GSPMD),
so results equal the unsharded ones up to floating-point summation order.
"""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from synergy_jax.models.model import Model

# For each layer leaf: the axis (counting the leading layer axis) to split over the model axis.
_LAYER_AXES = {"q": 2, "k": 2, "v": 2, "o": 1, "q_bias": 1, "k_bias": 1, "v_bias": 1,
               "gate": 2, "up": 2, "down": 1, "gate_bias": 1, "up_bias": 1}
_TOP_AXES = {"embed": 0, "lm_head": 0}


def _spec(shape, axis, mesh, model_axis):
  if axis is None or model_axis not in mesh.shape or shape[axis] % mesh.shape[model_axis]:
    return P()
  parts = [None] * len(shape)
  parts[axis] = model_axis
  return P(*parts)


def param_specs(params, mesh, model_axis: str = "model"):
  """PartitionSpec pytree matching params (see module docstring)."""
  specs = {k: _spec(v.shape, _TOP_AXES.get(k), mesh, model_axis)
           for k, v in params.items() if k != "layers"}
  specs["layers"] = {k: _spec(v.shape, _LAYER_AXES.get(k), mesh, model_axis)
                     for k, v in params["layers"].items()}
  return specs


def shard_model(model: Model, mesh, model_axis: str = "model") -> Model:
  """The model with params placed over `mesh` (split over `model_axis` where possible)."""
  specs = param_specs(model.params, mesh, model_axis)
  params = jax.tree_util.tree_map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)),
                                  model.params, specs)
  return model.replace(params=params)


def shard_batch(x, mesh, data_axis: str = "data"):
  """x (B, ...) split over `data_axis` along its first axis."""
  return jax.device_put(x, NamedSharding(mesh, P(data_axis, *([None] * (x.ndim - 1)))))
