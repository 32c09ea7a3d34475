"""Placing params and batches on a `jax.sharding.Mesh`.

Data parallelism: batches are split over the mesh axis `data_axis` (prompts); `generate`/`score`
take `mesh=` and do this themselves. Model parallelism for models larger than one device: every
params leaf is split over `model_axis` along the axis its family names (Family.shard_axes:
heads, feed-forward width or vocabulary), when that axis divides evenly, and replicated
otherwise. The axis is recorded on each `nnx.Param` as its sharding annotation (`out_sharding`,
with the logical name MODEL), so Flax tools see it; here it is mapped onto the mesh. The jitted
functions follow the placement (GSPMD), so results equal the unsharded ones up to
floating-point summation order.
"""
from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from synergy_jax.models.config import FAMILIES, ModelConfig

MODEL = "model"  # the logical axis name in parameter annotations


def annotation(path: str, ndim: int, cfg: ModelConfig) -> tuple:
  """The sharding annotation of the parameter at `path` ("layers/attn/q", "embed"): MODEL on the family's
  split axis, None elsewhere."""
  fam = FAMILIES[cfg.family]
  axis = fam.shard_axes.get(path)
  head, _, rest = path.partition("/")
  if axis is None and rest and fam.segments is not None and head in {
      s.key for s in fam.segments_of(cfg)}:
    axis = fam.shard_axes.get("layers/" + rest)  # one table entry serves every layer segment
  if axis is None:
    return (None,) * ndim
  if not 0 <= axis < ndim:
    raise ValueError(f"family {cfg.family!r}: shard axis {axis} of params leaf {path} is out of "
                     f"range for a {ndim}-d leaf")
  return tuple(MODEL if i == axis else None for i in range(ndim))


def spec(annot, shape, mesh, model_axis: str = "model") -> P:
  """PartitionSpec for one leaf: its MODEL axis onto `model_axis` if the mesh has it and the
  axis divides evenly; fully replicated otherwise."""
  if annot is None or MODEL not in annot or model_axis not in mesh.shape:
    return P()
  axis = annot.index(MODEL)
  if shape[axis] % mesh.shape[model_axis]:
    return P()
  return P(*[model_axis if i == axis else None for i in range(len(shape))])


def param_specs(params, mesh, model_axis: str = "model", config: ModelConfig | None = None):
  """PartitionSpec pytree matching params (a dict in the family layout, or a Model)."""
  if hasattr(params, "config") and hasattr(params, "params"):
    config, params = params.config, params.params
  if config is None:
    raise ValueError("param_specs needs the model config (pass a Model or config=)")

  def one(path, leaf):
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    return spec(annotation(name, len(leaf.shape), config), leaf.shape, mesh, model_axis)
  return jax.tree_util.tree_map_with_path(one, params)


def shard_model(model, mesh, model_axis: str = "model"):
  """The model with params placed over `mesh` (split over `model_axis` where possible)."""
  specs = param_specs(model, mesh, model_axis)
  params = jax.tree_util.tree_map(lambda x, s: jax.device_put(x, NamedSharding(mesh, s)),
                                  model.params, specs)
  return model.replace(params=params)


def shard_batch(x, mesh, data_axis: str = "data"):
  """x (B, ...) split over `data_axis` along its first axis."""
  return jax.device_put(x, NamedSharding(mesh, P(data_axis, *([None] * (x.ndim - 1)))))
