"""The model as a Flax NNX module: `Model` holds its weights as `nnx.Param`s, carries its
frozen config and dtype, and is called like any Flax module.

Structure (one attribute per params leaf, names as in each family file's params layout):
  Model
    config: ModelConfig (static)       dtype: "float32" | "bfloat16" (static)
    embed, final_norm, lm_head, ...: nnx.Param   top-level leaves
    layers: Layers                      one module per layer segment (Family.segments); each
      q, k, v, o, ...: nnx.Param       leaf stacked over the segment's layers (axis 0)
Every nnx.Param carries a sharding annotation (`out_sharding`, the logical axis "model" on the
axis the family splits; see contract.DENSE_SHARD_AXES and sharding.py).

The stacked layers are scanned with `lax.scan` over the segment's stacked state (decoder.py),
the pattern Flax documents for layer stacks: the module is split into a static graph and its
state once, and the pure functions below run over the state. `Model.params` is that state as a
plain nested dict in the family's layout (params["layers"]["q"] (L, D, N, K), ...), so optax,
orbax and the functional API (`generate`, `score`, `logits_fn`, perturbation) take it directly;
`model.replace(params=...)` is the inverse.

`model(input_ids, attention_mask=None, *, head_mask=None, head_means=None)` returns a
`ForwardResult` (logits and per-head activity). Not jitted: call it inside `nnx.jit`,
`nnx.value_and_grad` or `jax.jit` (a Model is a pytree).

Axis letters: B batch, S time, L layers, N query heads, K head dim, V vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models import decoder, sharding
from synergy_jax.models.config import ModelConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_RESERVED = frozenset({"config", "dtype", "params", "replace", "units"})


def dtype_name(dtype) -> str:
  name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in DTYPES:
    raise ValueError(f"dtype={dtype!r} is not supported (supported: {sorted(DTYPES)})")
  return name


def _param(value, path: str, cfg: ModelConfig) -> nnx.Param:
  """An nnx.Param with the family's sharding annotation (not placed: no mesh is needed)."""
  return nnx.Param(value, out_sharding=sharding.annotation(path, np.ndim(value), cfg),
                   eager_sharding=False)


class Layers(nnx.Module):
  """One layer segment's weights: every attribute an nnx.Param stacked over layers (axis 0)."""

  def __init__(self, leaves: Mapping[str, Any], segment: str, cfg: ModelConfig):
    for key, value in leaves.items():
      if isinstance(value, Mapping):
        raise ValueError(f"params[{segment!r}][{key!r}] is a nested dict; layer leaves are arrays")
      setattr(self, key, _param(value, f"{segment}/{key}", cfg))


def _pure(node) -> dict:
  out = {}
  for key, value in vars(node).items():
    if isinstance(value, nnx.Param):
      out[key] = value.get_value()
    elif isinstance(value, Layers):
      out[key] = _pure(value)
  return out


@dataclasses.dataclass(frozen=True)
class ForwardResult:
  """logits (B, S, V) float32; head_norms (B, L, N, S) float32 ‖head output‖₂ at every
  position (the capture definition of generation.py); head_outputs (B, L, N, S, K) or None."""
  logits: Any
  head_norms: Any
  head_outputs: Any = None


jax.tree_util.register_dataclass(ForwardResult, data_fields=["logits", "head_norms",
                                                             "head_outputs"], meta_fields=[])


class Model(nnx.Module):
  """A decoder-only language model: frozen config, nnx.Param weights, dtype name.

  Model(config, params, dtype="float32") wraps a params dict in the family's layout (arrays,
  tracers or ShapeDtypeStructs); `models.init`/`models.load` build one for you.
  """

  def __init__(self, config: ModelConfig, params: Mapping[str, Any], dtype: str = "float32"):
    self.config = config
    self.dtype = dtype_name(dtype)
    for key, value in params.items():
      if key in _RESERVED:
        raise ValueError(f"params key {key!r} clashes with a Model attribute")
      if isinstance(value, Mapping):
        setattr(self, key, Layers(value, key, config))
      else:
        setattr(self, key, _param(value, key, config))

  @property
  def params(self) -> dict:
    """The nnx.Param state as a plain nested dict of arrays (the family's params layout); the
    same values as nnx.to_pure_dict(nnx.state(model, nnx.Param)), read straight from the
    attributes because every generate/score call takes this view (a plain attribute walk, not
    a graph traversal)."""
    return _pure(self)

  def replace(self, **changes) -> "Model":
    """A new Model with `config`, `params` (a dict in the same layout) or `dtype` replaced."""
    unknown = sorted(set(changes) - {"config", "params", "dtype"})
    if unknown:
      raise ValueError(f"Model.replace: unknown fields {unknown} (fields: config, params, dtype)")
    return Model(changes.get("config", self.config), changes.get("params", self.params),
                 changes.get("dtype", self.dtype))

  def __call__(self, input_ids, attention_mask=None, *, head_mask=None, head_means=None,
               capture_outputs: bool = False) -> ForwardResult:
    """Logits and head activity for input_ids (B, S) int.

    attention_mask (B, S) 0/1 (either padding side; positions count real tokens only);
    head_mask (L, N) scales each head's output (traced, 0 ablates); head_means (L, N, K) turns
    the removed part into mean ablation; capture_outputs also returns the head output vectors.
    """
    ids = jnp.asarray(input_ids)
    if ids.ndim != 2:
      raise ValueError(f"input_ids must be (batch, seq), got shape {ids.shape}")
    valid = (jnp.ones(ids.shape, bool) if attention_mask is None
             else jnp.asarray(attention_mask).astype(bool))
    if valid.shape != ids.shape:
      raise ValueError(f"attention_mask shape {valid.shape} != input_ids shape {ids.shape}")
    check_head_mask(self.config, head_mask, head_means)
    positions = decoder.positions_from_mask(valid)
    logits, _, norms, heads = decoder.run(self.config, self.params, ids, positions, valid,
                                          head_mask=head_mask, head_means=head_means,
                                          capture="all", capture_outputs=capture_outputs)
    return ForwardResult(logits, jnp.swapaxes(norms, 2, 3),  # (B, L, S, N) -> (B, L, N, S)
                         None if heads is None else jnp.swapaxes(heads, 2, 3))


def check_head_mask(cfg: ModelConfig, head_mask, head_means=None):
  shape = (cfg.num_layers, cfg.num_heads)
  if head_mask is not None and tuple(np.shape(head_mask)) != shape:
    raise ValueError(f"head_mask must have shape (layers, heads) = {shape}, got "
                     f"{tuple(np.shape(head_mask))}")
  if head_means is not None:
    if head_mask is None:
      raise ValueError("head_means (mean ablation) needs a head_mask saying which heads to ablate")
    if tuple(np.shape(head_means)) != shape + (cfg.head_dim,):
      raise ValueError(f"head_means must have shape (layers, heads, head_dim) = "
                       f"{shape + (cfg.head_dim,)}, got {tuple(np.shape(head_means))}")
