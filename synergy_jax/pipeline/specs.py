"""``--model`` strings → a model and its tokenizer.

Accepted forms:
  "default"          the model shipped in synergy_jax/assets/default/ (trained by synergy_jax)
  "PATH"             a local Hugging Face model directory (config.json + *.safetensors)
  "owner/name"       a hub id, resolved through the local Hugging Face cache
  "random:BASE"      BASE's architecture with fresh weights (seeded): the untrained baseline
"""
from __future__ import annotations

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax import models

RANDOM_PREFIX = "random:"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A resolved --model: the model, its tokenizer and a label for tables and figures."""
  model: "models.Model"
  tokenizer: object
  label: str
  base: str
  random_init: bool
  seed: int


def resolve_model(spec: str, *, dtype: str = "float32", seed: int = 0) -> ModelSpec:
  """Loads the model named by ``spec`` (see module docstring).

  Raises:
    ValueError: an empty spec or an empty base after "random:".
    FileNotFoundError: the directory / hub id / shipped model cannot be found (from models.load).
  """
  if not isinstance(spec, str) or not spec.strip():
    raise ValueError(f"--model must be a non-empty string, got {spec!r}")
  spec = spec.strip()
  if spec.startswith(RANDOM_PREFIX):
    base = spec[len(RANDOM_PREFIX):]
    if not base:
      raise ValueError(f"--model={spec!r}: name a base model after 'random:', e.g. random:default")
    config = models.load_config(base)
    model = models.init(config, seed, dtype=dtype)
    return ModelSpec(model, models.load_tokenizer(base), f"random:{base}", base, True, seed)
  model = models.load(spec, dtype=dtype)
  return ModelSpec(model, models.load_tokenizer(spec), spec, spec, False, seed)


def random_counterpart(spec: str) -> str:
  """The --model string of ``spec``'s random-init baseline ("random:default" for "default")."""
  return spec if spec.startswith(RANDOM_PREFIX) else RANDOM_PREFIX + spec


def model_fingerprint(model: "models.Model") -> str:
  """A short hash of a model's config and weights, for cache keys.

  Hashes the config and, per parameter leaf, its path, shape, dtype, float64 sum and sum of
  squares, and its first and last 64 values: retrained or perturbed weights give a new key, at the
  cost of one reduction per leaf (no copy of multi-GB weights to the host).
  """
  h = hashlib.sha256(repr(model.config).encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(model.params)[0]:
    flat = jnp.ravel(leaf).astype(jnp.float32)
    stats = jnp.concatenate([jnp.stack([flat.sum(), (flat * flat).sum()]), flat[:64], flat[-64:]])
    h.update(f"{jax.tree_util.keystr(path)}:{leaf.shape}:{leaf.dtype}:".encode())
    h.update(np.asarray(jax.device_get(stats), np.float64).tobytes())
  return h.hexdigest()[:16]
