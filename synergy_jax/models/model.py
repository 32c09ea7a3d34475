"""The `Model` object and its life cycle: init, load, save, forward, logits_fn.

Parameters are a plain nested dict of arrays (a pytree; layout in each family file, e.g.
llama.py) and every compute function is a pure function of (params, inputs) with the
`ModelConfig` static. We chose plain dicts over NNX modules: the per-layer weights are stacked and
scanned, the HF converter maps tensor names to dict keys one to one, and training code can hand
the dict straight to optax.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models import convert, decoder, hub
from synergy_jax.models.config import ModelConfig

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _dtype_name(dtype) -> str:
  name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in DTYPES:
    raise ValueError(f"dtype={dtype!r} is not supported (supported: {sorted(DTYPES)})")
  return name


@dataclasses.dataclass(frozen=True)
class Model:
  """A frozen config, its params pytree and the params' dtype name ("float32"/"bfloat16").

  A pytree itself (params are the only leaves), so it can be passed through jax.jit.
  """
  config: ModelConfig
  params: Any
  dtype: str = "float32"

  def replace(self, **changes) -> "Model":
    return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(Model, data_fields=["params"], meta_fields=["config", "dtype"])


def cast(params, dtype):
  """Casts every floating leaf of params to dtype ("float32"/"bfloat16")."""
  dt = DTYPES[_dtype_name(dtype)]
  return jax.tree_util.tree_map(lambda x: x.astype(dt), params)


# ---------------------------------------------------------------------------------------------
# init
# ---------------------------------------------------------------------------------------------

@functools.partial(jax.jit, static_argnums=(0, 2))
def _init_params(cfg: ModelConfig, key, dtype_name: str):
  """Random params like HF's initialisation: N(0, initializer_range) for matrices and
  embeddings, zeros for biases, ones for norm weights."""
  tensors = {}
  for idx, w in enumerate(convert.weights_of(cfg)):
    shape = ((cfg.num_layers,) if w.per_layer else ()) + w.shape
    if w.init == "normal":
      x = cfg.initializer_range * jax.random.normal(jax.random.fold_in(key, idx), shape,
                                                    jnp.float32)
    elif w.init == "ones":
      x = jnp.ones(shape, jnp.float32)
    elif w.init == "zeros":
      x = jnp.zeros(shape, jnp.float32)
    else:
      raise ValueError(f"weight {w.hf}: unknown init {w.init!r}")
    tensors[w.hf] = x
  params: dict[str, Any] = {"layers": {}}
  for w in convert.weights_of(cfg):
    dest = params["layers"] if w.per_layer else params
    for k, leaf in zip(w.keys, w.to_params(tensors[w.hf])):
      dest[k] = leaf.astype(DTYPES[dtype_name])
  return params


def init(config: ModelConfig, seed: int = 0, *, dtype: str = "float32") -> Model:
  """A randomly initialised model (HF-like initialisation; see `_init_params`)."""
  name = _dtype_name(dtype)
  return Model(config, _init_params(config, jax.random.PRNGKey(seed), name), name)


def param_shapes(config: ModelConfig, dtype: str = "float32"):
  """The params pytree as jax.ShapeDtypeStruct leaves, without allocating memory."""
  name = _dtype_name(dtype)
  return jax.eval_shape(lambda k: _init_params(config, k, name), jax.random.PRNGKey(0))


# ---------------------------------------------------------------------------------------------
# load / save
# ---------------------------------------------------------------------------------------------

def load_config(path_or_id) -> ModelConfig:
  directory = hub.resolve(path_or_id)
  cfg_path = os.path.join(directory, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{cfg_path} does not exist (a model directory needs config.json)")
  return ModelConfig.from_hf(cfg_path)


def load(path_or_id, *, dtype: str = "float32", mesh=None, model_axis: str = "model") -> Model:
  """Loads an HF-layout checkpoint (config.json + *.safetensors, sharded index too) strictly.

  path_or_id: a directory, an HF hub id ("owner/name", via the local HF cache), or "default"
  (the shipped model, synergy_jax/assets/default/). dtype: "float32" or "bfloat16".
  mesh: place each leaf straight from host memory onto the mesh, split over `model_axis`
  (see sharding.py), so a model larger than one device never sits on a single device.
  """
  name = _dtype_name(dtype)
  directory = hub.resolve(path_or_id)
  cfg = load_config(directory)
  tensors = convert.read_checkpoint(str(directory), cfg)
  params = convert.params_from_hf(tensors, cfg)
  del tensors
  dt = DTYPES[name]
  if mesh is None:
    params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, dt), params)
  else:
    from jax.sharding import NamedSharding
    from synergy_jax.models.sharding import param_specs
    specs = param_specs(params, mesh, model_axis)
    params = jax.tree_util.tree_map(
        lambda x, s: jax.device_put(np.asarray(x).astype(dt), NamedSharding(mesh, s)), params,
        specs)
  return Model(cfg, params, name)


def save(model: Model, directory) -> None:
  """Writes config.json + model.safetensors with HF tensor names (loadable by transformers)."""
  convert.write_checkpoint(model.params, model.config, os.fspath(directory))


def load_tokenizer(path_or_id):
  """The Hugging Face tokenizer of a model directory / hub id / "default".

  Call it with return_tensors="np" for numpy arrays.
  """
  path = hub.resolve(path_or_id)
  if os.fspath(path_or_id) == hub.DEFAULT_NAME:
    # Our own character tokenizer is fully described by tokenizer.json: load it with the fast
    # tokenizer class directly. (AutoTokenizer imports PyTorch whenever it is installed, which
    # costs seconds per process and is not needed at run time.)
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast.from_pretrained(os.fspath(path))
  from transformers import AutoTokenizer

  return AutoTokenizer.from_pretrained(os.fspath(path))


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------

def logits_fn(config: ModelConfig, *, remat: bool = False):
  """A pure, differentiable f(params, input_ids, attention_mask=None, head_mask=None) -> logits.

  input_ids (B, S) int; attention_mask (B, S) 0/1 (left or right padding; positions count real
  tokens only); head_mask (L, N) float, traced. Returns logits (B, S, V) float32. Not jitted:
  wrap it in your own jax.jit / jax.grad. remat=True recomputes layer activations in the
  backward pass (less memory, more compute).
  """

  def f(params, input_ids, attention_mask=None, head_mask=None):
    ids = jnp.asarray(input_ids)
    valid = (jnp.ones(ids.shape, bool) if attention_mask is None
             else jnp.asarray(attention_mask).astype(bool))
    positions = decoder.positions_from_mask(valid)
    logits, _, _, _ = decoder.run(config, params, ids, positions, valid, head_mask=head_mask,
                                  remat=remat)
    return logits

  return f


@functools.partial(jax.jit, static_argnums=(0,))
def _forward(cfg, params, ids, valid, head_mask, head_means):
  positions = decoder.positions_from_mask(valid)
  logits, _, _, _ = decoder.run(cfg, params, ids, positions, valid, head_mask=head_mask,
                                head_means=head_means)
  return logits


def forward(model: Model, input_ids, attention_mask=None, *, head_mask=None, head_means=None):
  """Logits (B, S, V) float32 for input_ids (B, S); see `logits_fn` for the arguments.

  head_means (L, N, K): with head_mask, the removed fraction of each head's output is replaced
  by this mean output (mean ablation).
  """
  ids = np.asarray(input_ids)
  if ids.ndim != 2:
    raise ValueError(f"input_ids must be (batch, seq), got shape {ids.shape}")
  valid = np.ones(ids.shape, bool) if attention_mask is None else np.asarray(attention_mask, bool)
  if valid.shape != ids.shape:
    raise ValueError(f"attention_mask shape {valid.shape} != input_ids shape {ids.shape}")
  check_head_mask(model.config, head_mask, head_means)
  return _forward(model.config, model.params, ids, valid, head_mask, head_means)


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
