"""Reading and writing Hugging Face checkpoint files, with every failure naming its file.

Reading validates what it reads (issue 14): the safetensors index and headers, every tensor's
dtype (floating point only) and values (finite, checked per tensor; the error names the tensor,
its file and the index of the first bad value), and, when a compute dtype is given, that the
values stay finite after the cast to it (float32 weights beyond the bfloat16 range, float64
weights beyond float32's).

dtypes: float16, bfloat16 and float32 tensors load as they are and are cast to the requested
compute dtype; float64 tensors are cast the same way, explicitly (we compute in float32 or
bfloat16 only), so a float64 checkpoint loads with float32 precision; integer, boolean and
complex tensors (quantised or corrupted checkpoints) are an error naming the tensor.
"""
from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np
from jax import numpy as jnp

from synergy_jax.models import convert
from synergy_jax.models.config import FAMILIES, ModelConfig, read_json

_FLOAT_KINDS = ("float16", "bfloat16", "float32", "float64")


def safetensors_files(directory: str) -> list[str]:
  """The weight files of an HF directory (sharded index or single file)."""
  index = os.path.join(directory, "model.safetensors.index.json")
  if os.path.exists(index):
    data = read_json(index, "safetensors index")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str)
                                                   for v in weight_map.values()):
      raise ValueError(f"{index}: key 'weight_map' must map tensor names to file names, got "
                       f"{type(weight_map).__name__}")
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


def _safe_open(path: str):
  from safetensors import SafetensorError, safe_open
  try:
    return safe_open(path, "numpy")
  except (SafetensorError, OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable safetensors file (truncated or corrupt header?): "
                     f"{type(e).__name__}: {e}") from e


def _get_tensor(f, path: str, stored: str) -> np.ndarray:
  from safetensors import SafetensorError
  try:
    return f.get_tensor(stored)
  except (SafetensorError, OSError, ValueError, TypeError) as e:
    raise ValueError(f"{path}: tensor {stored!r} cannot be read (truncated or corrupt data?): "
                     f"{type(e).__name__}: {e}") from e


def _first_bad(x: np.ndarray) -> tuple[tuple[int, ...], float]:
  idx = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
  return idx, x[idx]


def check_tensor(name: str, source: str, x: np.ndarray, dtype=None) -> np.ndarray:
  """x, or x cast to dtype, after checking dtype and finiteness; ValueError naming the tensor.

  name: HF tensor name; source: its file (for messages); dtype: the compute dtype or None.
  """
  kind = np.dtype(x.dtype).name
  if kind not in _FLOAT_KINDS:
    raise ValueError(f"{source}: tensor {name!r} has dtype {kind}; only floating-point weights "
                     f"{list(_FLOAT_KINDS)} can be loaded (integer/boolean tensors mean a "
                     "quantised or corrupted checkpoint)")
  if not np.all(np.isfinite(x)):
    idx, value = _first_bad(x)
    raise ValueError(f"{source}: tensor {name!r} holds a non-finite value {value} at index {idx}")
  if dtype is None:
    return x
  with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected just below
    y = np.asarray(x.astype(jnp.dtype(dtype)))
  if not np.all(np.isfinite(y)):
    idx, _ = _first_bad(y)
    raise ValueError(f"{source}: tensor {name!r} value {x[idx]} at index {idx} overflows the "
                     f"compute dtype {jnp.dtype(dtype).name}")
  return y


def read_checkpoint(directory: str, cfg: ModelConfig, dtype=None) -> dict[str, np.ndarray]:
  """Reads, strictly checks and validates the HF tensors of `directory` (numpy arrays; cast to
  `dtype` when given)."""
  check_saved_pair(directory)
  files = safetensors_files(directory)
  rename = FAMILIES[cfg.family].rename or (lambda n: n)
  where: dict[str, str] = {}
  stored_as: dict[str, str] = {}  # canonical name -> name in the file
  shapes: dict[str, tuple[int, ...]] = {}
  for path in files:
    with _safe_open(path) as f:
      for stored in f.keys():
        name = rename(stored)
        if name in where:
          raise ValueError(f"tensor {name!r} appears twice: as {stored_as[name]!r} in "
                           f"{where[name]} and as {stored!r} in {path}")
        where[name], stored_as[name] = path, stored
        shapes[name] = tuple(f.get_slice(stored).get_shape())
  names = convert.check_tensors(shapes, cfg, directory)
  tensors = {}
  by_file: dict[str, list[str]] = {}
  for n in names:
    by_file.setdefault(where[n], []).append(n)
  for path, ns in by_file.items():
    with _safe_open(path) as f:
      for n in ns:
        tensors[n] = check_tensor(n, path, _get_tensor(f, path, stored_as[n]), dtype)
  return tensors


# config.json key holding the SHA-256 of the model.safetensors written with it. Two files cannot be
# replaced in one atomic step, so a save killed between them would leave new weights beside an
# old config (or the reverse); the recorded hash makes such a torn pair an error on load.
WEIGHTS_SHA_KEY = "synergy_jax_weights_sha256"


def _file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 22), b""):
      h.update(chunk)
  return h.hexdigest()


def check_saved_pair(directory: str) -> None:
  """ValueError naming both files when config.json records a weights hash (models.save writes
  one) that model.safetensors does not match: an interrupted save, or files mixed by hand."""
  config_path = os.path.join(directory, "config.json")
  want = read_json(config_path, "config").get(WEIGHTS_SHA_KEY)
  if want is None:
    return
  weights = os.path.join(directory, "model.safetensors")
  if not os.path.exists(weights) or _file_sha256(weights) != want:
    raise ValueError(f"{weights} does not match {config_path} ({WEIGHTS_SHA_KEY}): the two were "
                     f"not written by the same save (an interrupted models.save?); save again")


def write_checkpoint(params, cfg: ModelConfig, directory: str):
  """Writes model.safetensors, then config.json with the weights' SHA-256 (HF naming), each
  atomically; loading checks the pair (``check_saved_pair``)."""
  from safetensors.numpy import save

  from synergy_jax import results
  tensors = convert.params_to_hf(params, cfg)
  data = save(tensors, metadata={"format": "pt"})
  results.write_bytes(os.path.join(directory, "model.safetensors"), data)
  hf = cfg.to_hf()
  hf[WEIGHTS_SHA_KEY] = hashlib.sha256(data).hexdigest()
  leaf = jax.tree_util.tree_leaves(params)[0]
  hf["torch_dtype"] = str(np.dtype(leaf.dtype)) if np.dtype(leaf.dtype) != np.dtype(
      jnp.bfloat16) else "bfloat16"
  results.write_text(os.path.join(directory, "config.json"),
                     json.dumps(hf, indent=2, sort_keys=True))
