"""Hugging Face tensors <-> the parameter state (params pytree), strictly.

A family describes its checkpoint as a list of `Weight`s: each HF tensor name (with "{i}" for the
layer index within its segment and, for mixture-of-experts tensors, "{e}" for the expert index),
its HF shape, and a pair of reshaping functions between the HF tensor and one or more params
leaves, each named by its path in the model's parameter state (`nnx.state(model, nnx.Param)`,
e.g. "attn/q" under a segment). Per-layer tensors are stacked over the segment's layers (leading
axis) into params[segment]["attn"]["q"]; per-expert tensors get a second stacked axis
(layers, experts, ...). The reshaping functions only use `.reshape`/`.swapaxes` on the
trailing axes, so the same code runs on numpy arrays (loading), jax arrays (init), stacked
arrays, and abstract values under `jax.eval_shape`.

Everything here is strict: missing or unexpected tensors are listed in one error, a tensor of the
wrong shape names the key and both shapes, and filling a model template (`fill`) sets every
parameter leaf exactly once (a leaf filled twice or never is an error naming it). Reading files
is in files.py.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models.config import FAMILIES, ModelConfig


@dataclasses.dataclass(frozen=True)
class Weight:
  """One HF tensor and the params leaves it fills.

  hf: tensor name; "{i}" marks a per-layer tensor (leaves under params[segment]), "{e}" a
    per-expert one (needs config.moe; stacked as (layers, experts, ...)).
  shape: the HF tensor's shape (per layer and expert).
  keys: parameter paths it fills, "/"-separated ("embed", "final_norm/weight"; for per-layer
    tensors relative to the segment: "attn/q" is params[segment]["attn"]["q"]).
  to_params: HF tensor (..., *shape) -> tuple of leaves, one per key (leading axes preserved).
  from_params: tuple of leaves -> HF tensor (inverse of to_params).
  init: "normal" (std initializer_range), "ones" or "zeros" — HF's initialisation of the tensor.
  segment: the layer segment (Family.segments) a per-layer tensor belongs to.
  """
  hf: str
  shape: tuple[int, ...]
  keys: tuple[str, ...]
  to_params: Callable[[Any], tuple]
  from_params: Callable[[tuple], Any]
  init: str = "normal"
  segment: str = "layers"

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf

  @property
  def per_expert(self) -> bool:
    return "{e}" in self.hf


def same(hf: str, shape, key: str, init: str = "normal") -> Weight:
  """A tensor stored unchanged."""
  return Weight(hf, tuple(shape), (key,), lambda x: (x,), lambda t: t[0], init)


def linear(hf: str, out_shape, in_dim: int, key: str) -> Weight:
  """A torch Linear weight (out, in) stored as (in, *out_shape) for `x @ W` einsums."""
  out_shape = tuple(out_shape)
  out = int(np.prod(out_shape))

  def to_p(x):
    return (x.swapaxes(-1, -2).reshape(*x.shape[:-2], in_dim, *out_shape),)

  def from_p(t):
    w = t[0]
    return w.reshape(*w.shape[:w.ndim - len(out_shape) - 1], in_dim, out).swapaxes(-1, -2)

  return Weight(hf, (out, in_dim), (key,), to_p, from_p, "normal")


def linear_in(hf: str, out_dim: int, in_shape, key: str) -> Weight:
  """A torch Linear weight (out, in) whose input splits as in_shape, stored as (*in_shape, out)
  (the output projection: (N*K -> D) stored as (N, K, D))."""
  in_shape = tuple(in_shape)
  n_in = int(np.prod(in_shape))

  def to_p(x):
    return (x.swapaxes(-1, -2).reshape(*x.shape[:-2], *in_shape, out_dim),)

  def from_p(t):
    w = t[0]
    return w.reshape(*w.shape[:w.ndim - len(in_shape) - 1], n_in, out_dim).swapaxes(-1, -2)

  return Weight(hf, (out_dim, n_in), (key,), to_p, from_p, "normal")


def bias(hf: str, shape, key: str) -> Weight:
  """A bias vector (prod(shape),) stored as `shape`."""
  shape = tuple(shape)
  n = int(np.prod(shape))
  return Weight(hf, (n,), (key,),
                lambda x: (x.reshape(*x.shape[:-1], *shape),),
                lambda t: t[0].reshape(*t[0].shape[:t[0].ndim - len(shape)], n), "zeros")


def weights_of(cfg: ModelConfig) -> list[Weight]:
  return FAMILIES[cfg.family].weights(cfg)


def _segment(w: Weight, cfg: ModelConfig):
  for seg in FAMILIES[cfg.family].segments_of(cfg):
    if seg.key == w.segment:
      return seg
  raise ValueError(f"weight {w.hf!r} names segment {w.segment!r}, which the {cfg.family} family "
                   f"does not define for this config")


def stacked_shape(w: Weight, cfg: ModelConfig) -> tuple[int, ...]:
  """The leading stacked axes of w's leaves: (layers in its segment[, experts]) or ()."""
  if w.per_expert and not w.per_layer:
    raise ValueError(f"weight {w.hf!r}: a per-expert tensor must also be per layer ('{{i}}')")
  lead = (_segment(w, cfg).num_layers,) if w.per_layer else ()
  if w.per_expert:
    if cfg.moe is None:
      raise ValueError(f"weight {w.hf!r} is per expert but the config has no moe sub-config")
    lead += (cfg.moe.num_experts,)
  return lead


def hf_names(w: Weight, cfg: ModelConfig) -> list[tuple[tuple[int, ...], str]]:
  """(index into the stacked axes, HF tensor name) for every tensor of w, in stacking order."""
  lead = stacked_shape(w, cfg)
  if not lead:
    return [((), w.hf)]
  start = _segment(w, cfg).start
  return [(idx, w.hf.format(i=start + idx[0], **({"e": idx[1]} if w.per_expert else {})))
          for idx in np.ndindex(*lead)]


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Every HF tensor name the checkpoint must hold, with its shape."""
  return {name: w.shape for w in weights_of(cfg) for _, name in hf_names(w, cfg)}


def leaf_path(w: Weight, key: str) -> tuple[str, ...]:
  """The path of w's leaf `key` in the parameter state."""
  return ((w.segment,) if w.per_layer else ()) + tuple(key.split("/"))


def _stack(arrays, lead):
  if all(isinstance(a, np.ndarray) for a in arrays):
    x = np.stack(arrays)
  else:
    x = jnp.stack(arrays)
  return x.reshape(*lead, *x.shape[1:])


def hf_to_leaves(tensors: Mapping[str, Any], cfg: ModelConfig):
  """Yields (leaf path, leaf, HF name) for every params leaf, from HF tensors (numpy, jax or
  abstract); names and shapes are assumed checked (see `check_tensors`)."""
  for w in weights_of(cfg):
    names = hf_names(w, cfg)
    lead = stacked_shape(w, cfg)
    x = _stack([tensors[n] for _, n in names], lead) if lead else tensors[w.hf]
    for key, leaf in zip(w.keys, w.to_params(x)):
      yield leaf_path(w, key), leaf, w.hf


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def fill(template, tensors: Mapping[str, Any], cfg: ModelConfig,
         convert=lambda path, leaf, like: leaf):
  """A params dict like `template` (nested dict of arrays or ShapeDtypeStructs, e.g. the pure
  state of an abstract `nnx.eval_shape` model) with every leaf set exactly once from HF tensors.

  convert(path, leaf, like) makes the stored value (casting, placement) from the converted tensor
  and the template leaf at `path`. Raises ValueError naming a leaf the weight specs fill twice, a leaf they
  produce that the template lacks, a leaf of the wrong shape, or template leaves left unfilled.
  """
  out: dict[str, Any] = {}
  for path, leaf, hf in hf_to_leaves(tensors, cfg):
    try:
      like = _get(template, path)
    except (KeyError, TypeError):
      raise ValueError(f"{cfg.family}: tensor {hf!r} fills params leaf {'/'.join(path)}, which "
                       "the model does not have") from None
    if tuple(np.shape(leaf)) != tuple(like.shape):
      raise ValueError(f"{cfg.family}: tensor {hf!r} gives params leaf {'/'.join(path)} shape "
                       f"{tuple(np.shape(leaf))}, the model expects {tuple(like.shape)}")
    dest = out
    for k in path[:-1]:
      dest = dest.setdefault(k, {})
    if path[-1] in dest:
      raise ValueError(f"{cfg.family}: params leaf {'/'.join(path)} is filled twice (again by "
                       f"{hf!r})")
    dest[path[-1]] = convert(path, leaf, like)
  filled = {p for p, _ in jax.tree_util.tree_flatten_with_path(out)[0]}
  unfilled = ["/".join(str(getattr(k, "key", k)) for k in p)
              for p, _ in jax.tree_util.tree_flatten_with_path(template)[0] if p not in filled]
  if unfilled:
    raise ValueError(f"{cfg.family}: params leaves {unfilled} are not filled by any checkpoint "
                     "tensor (the family's weight specs miss them)")
  return out


def params_from_hf(tensors: Mapping[str, Any], cfg: ModelConfig) -> dict:
  """HF tensors (name -> array; numpy, jax or abstract) -> params pytree (same array kind)."""
  params: dict[str, Any] = {}
  for path, leaf, _ in hf_to_leaves(tensors, cfg):
    dest = params
    for k in path[:-1]:
      dest = dest.setdefault(k, {})
    dest[path[-1]] = leaf
  return params


def params_to_hf(params, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """params pytree -> HF tensors (numpy), the inverse of `params_from_hf`."""
  out = {}
  for w in weights_of(cfg):
    x = np.asarray(w.from_params(tuple(np.asarray(_get(params, leaf_path(w, k)))
                                       for k in w.keys)))
    for idx, name in hf_names(w, cfg):
      out[name] = np.ascontiguousarray(x[idx])
  return out


def check_tensors(available: Mapping[str, tuple[int, ...]], cfg: ModelConfig, source: str):
  """Raises ValueError listing missing/unexpected names, or naming a wrong-shaped tensor.

  available: name -> shape of the tensors found in the checkpoint `source` (for messages).
  Returns the names to read (expected ones; ignorable extras are dropped).
  """
  fam = FAMILIES[cfg.family]
  expected = hf_shapes(cfg)
  missing = sorted(set(expected) - set(available))
  unexpected = sorted(n for n in set(available) - set(expected) if not fam.ignorable(n))
  if missing or unexpected:
    raise ValueError(f"{source}: checkpoint does not match the {cfg.model_type} config: "
                     f"missing tensors {missing}; unexpected tensors {unexpected}")
  for name, shape in expected.items():
    if tuple(available[name]) != tuple(shape):
      raise ValueError(f"{source}: tensor {name!r} has shape {tuple(available[name])}, the config "
                       f"implies {tuple(shape)}")
  return sorted(expected)
