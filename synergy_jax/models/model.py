"""The model's life cycle: init, load, save, forward, logits_fn (the `Model` module: module.py).

Every compute function is a pure function of (params, inputs) with the `ModelConfig` static; a
`Model` is split into that params state once per call (`model.params`) and rebuilt around it
inside the jitted function (`Model(config, params)`), so compiled programs are the same whether
a caller holds the module or the dict.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models import convert, decoder, files, hub
from synergy_jax.models.config import ModelConfig, read_json
from synergy_jax.models.module import DTYPES, ForwardResult, Model, check_head_mask  # noqa: F401
from synergy_jax.models.module import dtype_name as _dtype_name


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
    shape = convert.stacked_shape(w, cfg) + w.shape
    if w.init == "normal":
      x = cfg.initializer_range * jax.random.normal(jax.random.fold_in(key, idx), shape,
                                                    jnp.float32)
    elif w.init == "ones":
      x = jnp.ones(shape, jnp.float32)
    elif w.init == "zeros":
      x = jnp.zeros(shape, jnp.float32)
    else:
      raise ValueError(f"weight {w.hf}: unknown init {w.init!r}")
    tensors[idx] = x  # by position: segments share HF name templates ("model.layers.{i}.…")
  params: dict[str, Any] = {}
  for idx, w in enumerate(convert.weights_of(cfg)):
    for k, leaf in zip(w.keys, w.to_params(tensors[idx])):
      path = convert.leaf_path(w, k)
      dest = params
      for key in path[:-1]:
        dest = dest.setdefault(key, {})
      dest[path[-1]] = leaf.astype(DTYPES[dtype_name])
  return params


def init(config: ModelConfig, seed: int = 0, *, dtype: str = "float32") -> Model:
  """A randomly initialised model (HF-like initialisation; see `_init_params`)."""
  name = _dtype_name(dtype)
  return Model(config, _init_params(config, jax.random.PRNGKey(seed), name), name)


def param_shapes(config: ModelConfig, dtype: str = "float32"):
  """The params pytree as jax.ShapeDtypeStruct leaves, without allocating memory."""
  name = _dtype_name(dtype)
  return jax.eval_shape(lambda k: _init_params(config, k, name), jax.random.PRNGKey(0))


def abstract(config: ModelConfig, dtype: str = "float32") -> Model:
  """The Model with jax.ShapeDtypeStruct weights (`nnx.eval_shape`; no memory allocated)."""
  name = _dtype_name(dtype)
  return nnx.eval_shape(lambda: Model(config, None, name))


# ---------------------------------------------------------------------------------------------
# load / save
# ---------------------------------------------------------------------------------------------

def load_config(path_or_id) -> ModelConfig:
  """The ModelConfig of a model directory; errors name config.json and the key at fault."""
  directory = hub.resolve(path_or_id)
  cfg_path = os.path.join(directory, "config.json")
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f"{cfg_path} does not exist (a model directory needs config.json)")
  return ModelConfig.from_hf(cfg_path)


def load(path_or_id, *, dtype: str = "float32", mesh=None, model_axis: str = "model") -> Model:
  """Loads an HF-layout checkpoint (config.json + *.safetensors, sharded index too) strictly.

  path_or_id: a directory, an HF hub id ("owner/name", via the local HF cache), or "default"
  (the shipped model, synergy_jax/assets/default/). dtype: "float32" or "bfloat16" (tensors
  are cast to it; see files.py for the dtypes accepted and the checks made on every tensor).
  mesh: place each leaf straight from host memory onto the mesh, split over `model_axis`
  (see sharding.py), so a model larger than one device never sits on a single device.

  The checkpoint fills an abstract model (`nnx.eval_shape`): every parameter exactly once, with
  its shape checked against the template (convert.fill).
  """
  name = _dtype_name(dtype)
  directory = hub.resolve(path_or_id)
  cfg = load_config(directory)
  graphdef, state = nnx.split(abstract(cfg, name))
  template = nnx.to_pure_dict(state)
  tensors = files.read_checkpoint(str(directory), cfg, DTYPES[name])
  if mesh is None:
    def place(path, leaf, like):
      return jnp.asarray(leaf, like.dtype)
  else:
    from jax.sharding import NamedSharding
    from synergy_jax.models.sharding import param_specs
    specs = param_specs(template, mesh, model_axis, config=cfg)

    def place(path, leaf, like):
      s = specs
      for k in path:
        s = s[k]
      return jax.device_put(np.asarray(leaf, like.dtype), NamedSharding(mesh, s))
  params = convert.fill(template, tensors, cfg, place)
  del tensors
  nnx.replace_by_pure_dict(state, params)
  return nnx.merge(graphdef, state)


def save(model: Model, directory) -> None:
  """Writes config.json + model.safetensors with HF tensor names (loadable by transformers)."""
  files.write_checkpoint(model.params, model.config, os.fspath(directory))


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "spiece.model")


def load_tokenizer(path_or_id):
  """The Hugging Face tokenizer of a model directory / hub id / "default".

  Call it with return_tensors="np" for numpy arrays. FileNotFoundError if the directory holds
  no tokenizer file; ValueError naming the directory (and file) if it cannot be loaded.
  """
  path = hub.resolve(path_or_id)
  present = [f for f in _TOKENIZER_FILES if os.path.exists(os.path.join(path, f))]
  if not present:
    raise FileNotFoundError(f"{path}: no tokenizer files (looked for {list(_TOKENIZER_FILES)})")
  for name in ("tokenizer_config.json", "special_tokens_map.json"):
    if os.path.exists(os.path.join(path, name)):
      read_json(os.path.join(path, name), "tokenizer settings")
  if "tokenizer.json" in present:
    read_json(os.path.join(path, "tokenizer.json"), "tokenizer")
  try:
    if os.fspath(path_or_id) == hub.DEFAULT_NAME:
      # Our own character tokenizer is fully described by tokenizer.json: load it with the fast
      # tokenizer class directly. (AutoTokenizer imports PyTorch whenever it is installed, which
      # costs seconds per process and is not needed at run time.)
      from transformers import PreTrainedTokenizerFast
      return PreTrainedTokenizerFast.from_pretrained(os.fspath(path))
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.fspath(path))
  except Exception as e:  # tokenizers raises plain Exceptions for broken files; re-raised, named
    raise ValueError(f"{path}: the tokenizer ({', '.join(present)}) cannot be loaded: "
                     f"{type(e).__name__}: {e}") from e


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
    logits, _, _, _ = decoder.run(Model(config, params), ids, positions, valid,
                                  head_mask=head_mask, remat=remat)
    return logits

  return f


@functools.partial(jax.jit, static_argnums=(0,))
def _forward(cfg, params, ids, valid, head_mask, head_means):
  positions = decoder.positions_from_mask(valid)
  logits, _, _, _ = decoder.run(Model(cfg, params), ids, positions, valid,
                                head_mask=head_mask, head_means=head_means)
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
