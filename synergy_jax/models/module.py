"""The model as a Flax NNX module: `Model` holds its weights as `nnx.Param`s in the family's
modules, carries its frozen config and dtype, and is called like any Flax module.

Structure (llama shown; each family file lists its own, modules.py has the shared modules):
  Model
    config: ModelConfig (static)          dtype: "float32" | "bfloat16" (static)
    embed: nnx.Param (V, D)               lm_head: nnx.Param (V, D) unless tied
    final_norm: RMSNorm {weight (D,)}
    layers: llama.Block, every nnx.Param stacked over the segment's layers (axis 0):
      attn_norm: RMSNorm {weight (L, D)}
      attn: Attention {q (L, D, N, K), k, v (L, D, M, K), o (L, N, K, D), [biases, q/k norms]}
      mlp_norm: RMSNorm {weight (L, D)}
      mlp: GatedMLP {gate, up (L, D, F), down (L, F, D)}
One stacked Block per layer segment (Family.segments; dense models: one, "layers"). Every
nnx.Param carries a sharding annotation (`out_sharding`, the logical axis "model" on the axis
the family splits; see contract.DENSE_SHARD_AXES and sharding.py).

The parameter state `nnx.state(model, nnx.Param)` has exactly these paths; `model.params` is
that state as a plain nested dict (params["layers"]["attn"]["q"] (L, D, N, K), ...), so optax,
orbax and the functional API (`generate`, `score`, `logits_fn`, perturbation) take it directly,
and `Model(config, params)` / `model.replace(params=...)` build the module back from it
(strictly: a missing, extra or wrongly shaped leaf is an error naming it).

`model(input_ids, attention_mask=None, *, head_mask=None, head_means=None)` returns a
`ForwardResult` (logits and per-head activity). Not jitted: call it inside `nnx.jit`,
`nnx.value_and_grad` or `jax.jit` (a Model is a pytree). The stacked layers are scanned
(decoder.py: split once, `lax.scan` over the stacked state, `nnx.merge` of one layer per step).

Axis letters: B batch, S time, L layers, N query heads, M key/value heads, K head dim,
D hidden, F MLP width, V vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models import decoder
from synergy_jax.models.config import FAMILIES, ModelConfig
from synergy_jax.models.modules import ParamMaker

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_RESERVED = frozenset({"config", "dtype", "params", "replace", "units"})


def dtype_name(dtype) -> str:
  name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in DTYPES:
    raise ValueError(f"dtype={dtype!r} is not supported (supported: {sorted(DTYPES)})")
  return name


def _pure(node) -> dict:
  """The nnx.Params under node as a nested dict of their values (None attributes skipped)."""
  out = {}
  for key, value in vars(node).items():
    if isinstance(value, nnx.Param):
      out[key] = value.get_value()
    elif isinstance(value, nnx.Module):
      out[key] = _pure(value)
  return out


def _leaf_paths(tree, prefix=()):
  if isinstance(tree, Mapping):
    for k, v in tree.items():
      yield from _leaf_paths(v, prefix + (k,))
  else:
    yield prefix


@dataclasses.dataclass(frozen=True)
class ForwardResult:
  """logits (B, S, V) float32; head_norms (B, L, N, S) float32 ‖head output‖₂ at every
  position (the capture definition of generation.py); head_outputs (B, L, N, S, K) or None;
  expert_norms (B, L_moe, U, S) float32 expert activity of MoE models (None for dense ones)."""
  logits: Any
  head_norms: Any
  head_outputs: Any = None
  expert_norms: Any = None


jax.tree_util.register_dataclass(ForwardResult, data_fields=["logits", "head_norms",
                                                             "head_outputs", "expert_norms"],
                                 meta_fields=[])


class Model(nnx.Module):
  """A decoder-only language model: frozen config, the family's modules, dtype name.

  Model(config, params=None, dtype="float32") builds the family's modules around a params dict
  in the family's layout (arrays, tracers or ShapeDtypeStructs; every leaf used exactly once,
  shapes checked), or with zero placeholders when params is None (for `nnx.eval_shape`:
  `models.abstract`). `models.init`/`models.load` build one for you.
  """

  def __init__(self, config: ModelConfig, params: Mapping[str, Any] | None = None,
               dtype: str = "float32"):
    self.config = config
    self.dtype = dtype_name(dtype)
    fam = FAMILIES[config.family]
    maker = ParamMaker(config, DTYPES[self.dtype], params)
    for name, node in fam.outer(config, maker).items():
      if name in _RESERVED:
        raise ValueError(f"family {config.family!r}: attribute {name!r} clashes with a Model "
                         "attribute")
      setattr(self, name, node)
    for seg in fam.segments_of(config):
      setattr(self, seg.key, seg.block(maker.child(seg.key, (seg.num_layers,)), config))
    if params is not None:
      extra = ["/".join(p) for p in _leaf_paths(params) if p not in maker.used]
      if extra:
        raise ValueError(f"{config.family} model: params leaves {sorted(extra)} are not part "
                         "of the model")

  @property
  def params(self) -> dict:
    """The nnx.Param state as a plain nested dict of arrays (the family's params layout); the
    same values as nnx.to_pure_dict(nnx.state(model, nnx.Param)), read straight from the
    attributes because every generate/score call takes this view (a plain attribute walk)."""
    return _pure(self)

  def replace(self, **changes) -> "Model":
    """A new Model with `config`, `params` (a dict in the same layout) or `dtype` replaced."""
    unknown = sorted(set(changes) - {"config", "params", "dtype"})
    if unknown:
      raise ValueError(f"Model.replace: unknown fields {unknown} (fields: config, params, dtype)")
    return Model(changes.get("config", self.config), changes.get("params", self.params),
                 changes.get("dtype", self.dtype))

  def __call__(self, input_ids, attention_mask=None, *, head_mask=None, head_means=None,
               capture_outputs: bool = False, expert_mask=None,
               expert_activity: str = "dense") -> ForwardResult:
    """Logits and head (and, for MoE models, expert) activity for input_ids (B, S) int.

    attention_mask (B, S) 0/1 (either padding side; positions count real tokens only);
    head_mask (L, N) scales each head's output (traced, 0 ablates); head_means (L, N, K) turns
    the removed part into mean ablation; capture_outputs also returns the head output vectors;
    expert_mask (L_moe, U) scales each expert's contribution (traced; routing unchanged);
    expert_activity "dense" or "routed" (generation.py).
    """
    ids = jnp.asarray(input_ids)
    if ids.ndim != 2:
      raise ValueError(f"input_ids must be (batch, seq), got shape {ids.shape}")
    valid = (jnp.ones(ids.shape, bool) if attention_mask is None
             else jnp.asarray(attention_mask).astype(bool))
    if valid.shape != ids.shape:
      raise ValueError(f"attention_mask shape {valid.shape} != input_ids shape {ids.shape}")
    check_head_mask(self.config, head_mask, head_means)
    check_expert_mask(self.config, expert_mask)
    positions = decoder.positions_from_mask(valid)
    logits, _, norms, heads, experts = decoder.run(
        self, ids, positions, valid, head_mask=head_mask, head_means=head_means, capture="all",
        capture_outputs=capture_outputs, expert_mask=expert_mask, expert_activity=expert_activity)
    return ForwardResult(logits, jnp.swapaxes(norms, 2, 3),  # (B, L, S, N) -> (B, L, N, S)
                         None if heads is None else jnp.swapaxes(heads, 2, 3),
                         None if experts is None else jnp.swapaxes(experts, 2, 3))


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


def check_expert_mask(cfg: ModelConfig, expert_mask):
  """expert_mask must be (MoE layers, routed + shared experts) for an MoE model, None otherwise."""
  if expert_mask is None:
    return
  if cfg.moe is None:
    raise ValueError(f"expert_mask given, but the {cfg.model_type} model has no experts "
                     "(not a mixture-of-experts model)")
  shape = (cfg.moe.num_moe_layers, cfg.moe.num_units)
  if tuple(np.shape(expert_mask)) != shape:
    raise ValueError(f"expert_mask must have shape (MoE layers, routed + shared experts) = "
                     f"{shape}, got {tuple(np.shape(expert_mask))}")
