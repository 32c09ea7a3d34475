"""Recorded activity from a file: profile a (P, U, T) array without a model.

The file is a NumPy ``.npz`` with key ``acts`` (P prompts/trials, U units, T time steps, real)
and either
  - ``num_layers`` and ``num_heads`` (integers with U = num_layers · num_heads; units are
    numbered unit = layer · num_heads + head), or
  - a unit table, the keys of ``analysis.units.Units.to_arrays`` (``unit_layer``, ``unit_index``,
    ``unit_kind``, ``unit_shared``, ``num_layers``: one entry per unit, e.g. experts, or a
    ragged set of units per layer).
Activity can come from another framework, another model type, or brain recordings (use
num_heads = units per region and num_layers = regions along a hierarchy).
"""
from __future__ import annotations

import dataclasses
import pathlib
import zipfile

import numpy as np

from synergy_jax.analysis.units import ARRAY_KEYS, Units

KEYS = ("acts", "num_layers", "num_heads")
TABLE_KEYS = ARRAY_KEYS  # unit_layer, unit_index, unit_kind, unit_shared, num_layers


@dataclasses.dataclass(frozen=True)
class RecordedActs:
  """acts (P, U, T) float64; units: the table of the U units; path."""
  acts: np.ndarray
  units: Units
  path: pathlib.Path

  @property
  def num_layers(self) -> int:
    return self.units.num_layers

  @property
  def num_heads(self) -> int:
    """Units per layer of a head-grid file (ValueError for any other unit table)."""
    return self.units.heads_per_layer(str(self.path))


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
      sizes, a bad unit table, or U ≠ the number of units (each message names the file and the
      culprit).
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
    table = "unit_layer" in data.files
    need = ("acts",) + TABLE_KEYS if table else KEYS
    missing = [k for k in need if k not in data.files]
    if missing:
      raise ValueError(f"{path} lacks key(s) {missing}; it has {sorted(data.files)} "
                       f"(need {list(KEYS)}, or 'acts' and a unit table {list(TABLE_KEYS)})")
    acts = np.asarray(data["acts"])
    units = _table(data, path) if table else Units.grid(_integer(data, "num_layers", path),
                                                        _integer(data, "num_heads", path))
  if acts.ndim != 3:
    raise ValueError(f"{path}: 'acts' must be (prompts, units, time), got shape {acts.shape}")
  if acts.dtype.kind not in "fiu":
    raise ValueError(f"{path}: 'acts' must hold real numbers, got dtype {acts.dtype}")
  if acts.shape[1] != units.size:
    what = ("num_layers × num_heads = " + " × ".join(map(str, units.grid_shape)) + " = "
            if not table else "its unit table ('unit_layer', ...) lists ")
    raise ValueError(f"{path}: 'acts' has {acts.shape[1]} units but {what}{units.size}")
  return RecordedActs(acts.astype(np.float64), units, path)


def _table(data, path) -> Units:
  """The unit table of an acts file; errors name the file and the key."""
  for key in ("unit_layer", "unit_index"):
    if np.asarray(data[key]).dtype.kind not in "iu":
      raise ValueError(f"{path}: key {key!r} must hold integers, got {data[key].dtype}")
  _integer(data, "num_layers", path)
  try:
    return Units.from_arrays({k: np.asarray(data[k]) for k in TABLE_KEYS}, str(path))
  except ValueError as e:
    raise ValueError(f"{path}: bad unit table: {e}") from e
