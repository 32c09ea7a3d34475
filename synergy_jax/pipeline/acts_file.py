"""Recorded activity from a file: profile a (P, U, T) array without a model.

The file is a NumPy ``.npz`` with keys ``acts`` (P prompts/trials, U units, T time steps, real),
``num_layers`` and ``num_heads`` (integers with U = num_layers · num_heads; units are numbered
unit = layer · num_heads + head). Activity can come from another framework, another model type, or
brain recordings (use num_heads = units per region and num_layers = regions along a hierarchy).
"""
from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

KEYS = ("acts", "num_layers", "num_heads")


@dataclasses.dataclass(frozen=True)
class RecordedActs:
  """acts (P, U, T) float64; num_layers, num_heads with U = num_layers · num_heads; path."""
  acts: np.ndarray
  num_layers: int
  num_heads: int
  path: pathlib.Path


def _integer(data, key: str, path) -> int:
  v = np.asarray(data[key])
  if v.shape != () or v.dtype.kind not in "iu" or int(v) < 1:
    raise ValueError(f"{path}: key {key!r} must be a positive integer scalar, got "
                     f"{v.dtype} of shape {v.shape}" + (f" = {v}" if v.size == 1 else ""))
  return int(v)


def load_acts(path) -> RecordedActs:
  """Reads and checks a recorded-activity file (see module docstring).

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: not an .npz archive, a missing key, a non-3-D or non-real ``acts``, non-integer
      sizes, or U ≠ num_layers · num_heads (each message names the file and the culprit).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"--acts file {path} does not exist")
  try:
    data = np.load(path, allow_pickle=False)
  except (ValueError, OSError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a NumPy .npz archive ({e})") from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise ValueError(f"{path} holds a single array, not an .npz archive with keys {KEYS}")
  with data:
    missing = [k for k in KEYS if k not in data.files]
    if missing:
      raise ValueError(f"{path} lacks key(s) {missing}; it has {sorted(data.files)} "
                       f"(need {list(KEYS)})")
    acts = np.asarray(data["acts"])
    num_layers = _integer(data, "num_layers", path)
    num_heads = _integer(data, "num_heads", path)
  if acts.ndim != 3:
    raise ValueError(f"{path}: 'acts' must be (prompts, units, time), got shape {acts.shape}")
  if acts.dtype.kind not in "fiu":
    raise ValueError(f"{path}: 'acts' must hold real numbers, got dtype {acts.dtype}")
  if acts.shape[1] != num_layers * num_heads:
    raise ValueError(f"{path}: 'acts' has {acts.shape[1]} units but num_layers × num_heads = "
                     f"{num_layers} × {num_heads} = {num_layers * num_heads}")
  return RecordedActs(acts.astype(np.float64), num_layers, num_heads, path)
