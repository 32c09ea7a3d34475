"""Hugging Face safetensors <-> params pytree, strictly.

A family describes its checkpoint as a list of `Weight`s: each HF tensor name (with "{i}" for the
layer index), its HF shape, and a pair of reshaping functions between the HF tensor and one or
more params leaves. Per-layer tensors are stacked over layers (leading L axis) into
params["layers"][key]. The reshaping functions only use `.reshape`/`.swapaxes` on the trailing
axes, so the same code runs on numpy arrays (loading), jax arrays (init), stacked arrays with a
leading layer axis, and abstract values under `jax.eval_shape`.

Everything here is strict: missing or unexpected tensors are listed in one error, and a tensor of
the wrong shape names the key and both shapes.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models.config import FAMILIES, ModelConfig


@dataclasses.dataclass(frozen=True)
class Weight:
  """One HF tensor and the params leaves it fills.

  hf: tensor name; "{i}" marks a per-layer tensor (params live under params["layers"]).
  shape: the HF tensor's shape (per layer).
  keys: params leaf names it produces (top-level keys, or keys under "layers" if per layer).
  to_params: HF tensor (..., *shape) -> tuple of leaves, one per key (leading axes preserved).
  from_params: tuple of leaves -> HF tensor (inverse of to_params).
  init: "normal" (std initializer_range), "ones" or "zeros" — HF's initialisation of the tensor.
  """
  hf: str
  shape: tuple[int, ...]
  keys: tuple[str, ...]
  to_params: Callable[[Any], tuple]
  from_params: Callable[[tuple], Any]
  init: str = "normal"

  @property
  def per_layer(self) -> bool:
    return "{i}" in self.hf


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


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
  """Every HF tensor name the checkpoint must hold, with its shape."""
  out = {}
  for w in weights_of(cfg):
    if w.per_layer:
      for i in range(cfg.num_layers):
        out[w.hf.format(i=i)] = w.shape
    else:
      out[w.hf] = w.shape
  return out


def _stack(arrays):
  if all(isinstance(a, np.ndarray) for a in arrays):
    return np.stack(arrays)
  return jnp.stack(arrays)


def params_from_hf(tensors: Mapping[str, Any], cfg: ModelConfig) -> dict:
  """HF tensors (name -> array; numpy, jax or abstract) -> params pytree (same array kind).

  Assumes names and shapes were checked (see `check_tensors`).
  """
  params: dict[str, Any] = {"layers": {}}
  for w in weights_of(cfg):
    if w.per_layer:
      x = _stack([tensors[w.hf.format(i=i)] for i in range(cfg.num_layers)])
      leaves, dest = w.to_params(x), params["layers"]
    else:
      leaves, dest = w.to_params(tensors[w.hf]), params
    for key, leaf in zip(w.keys, leaves):
      dest[key] = leaf
  return params


def params_to_hf(params, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """params pytree -> HF tensors (numpy), the inverse of `params_from_hf`."""
  out = {}
  for w in weights_of(cfg):
    if w.per_layer:
      x = np.asarray(w.from_params(tuple(np.asarray(params["layers"][k]) for k in w.keys)))
      for i in range(cfg.num_layers):
        out[w.hf.format(i=i)] = np.ascontiguousarray(x[i])
    else:
      out[w.hf] = np.ascontiguousarray(
          np.asarray(w.from_params(tuple(np.asarray(params[k]) for k in w.keys))))
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


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def safetensors_files(directory: str) -> list[str]:
  """The weight files of an HF directory (sharded index or single file)."""
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.exists(index):
    with open(index) as f:
      weight_map = json.load(f)["weight_map"]
    files = sorted(set(weight_map.values()))
    absent = [f for f in files if not os.path.exists(os.path.join(directory, f))]
    if absent:
      raise FileNotFoundError(f"{index} lists weight files that are absent: {absent}")
    return [os.path.join(directory, f) for f in files]
  files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
  if not files:
    raise FileNotFoundError(f"no *.safetensors weights in {directory} (files there: "
                            f"{sorted(os.listdir(directory))})")
  return [os.path.join(directory, f) for f in files]


def read_checkpoint(directory: str, cfg: ModelConfig) -> dict[str, np.ndarray]:
  """Reads and strictly checks the HF tensors of `directory` into numpy arrays."""
  from safetensors import safe_open

  files = safetensors_files(directory)
  rename = FAMILIES[cfg.family].rename or (lambda n: n)
  where: dict[str, str] = {}
  stored_as: dict[str, str] = {}  # canonical name -> name in the file
  shapes: dict[str, tuple[int, ...]] = {}
  for path in files:
    with safe_open(path, "numpy") as f:
      for stored in f.keys():
        name = rename(stored)
        if name in where:
          raise ValueError(f"tensor {name!r} appears twice: as {stored_as[name]!r} in "
                           f"{where[name]} and as {stored!r} in {path}")
        where[name], stored_as[name] = path, stored
        shapes[name] = tuple(f.get_slice(stored).get_shape())
  names = check_tensors(shapes, cfg, directory)
  tensors = {}
  by_file: dict[str, list[str]] = {}
  for n in names:
    by_file.setdefault(where[n], []).append(n)
  for path, ns in by_file.items():
    with safe_open(path, "numpy") as f:
      for n in ns:
        tensors[n] = f.get_tensor(stored_as[n])
  return tensors


def write_checkpoint(params, cfg: ModelConfig, directory: str):
  """Writes config.json and model.safetensors (HF naming) atomically into `directory`."""
  from safetensors.numpy import save_file

  os.makedirs(directory, exist_ok=True)
  tensors = params_to_hf(params, cfg)
  tmp = os.path.join(directory, ".model.safetensors.tmp")
  save_file(tensors, tmp, metadata={"format": "pt"})
  os.replace(tmp, os.path.join(directory, "model.safetensors"))
  hf = cfg.to_hf()
  leaf = jax.tree_util.tree_leaves(params)[0]
  hf["torch_dtype"] = str(np.dtype(leaf.dtype)) if np.dtype(leaf.dtype) != np.dtype(
      jnp.bfloat16) else "bfloat16"
  tmp = os.path.join(directory, ".config.json.tmp")
  with open(tmp, "w") as f:
    json.dump(hf, f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(directory, "config.json"))
