"""Run directories, atomic writers and a resumable cache of intermediate arrays.

Every file is written to a temporary name in the destination directory and then moved into place
with ``os.replace`` (atomic on POSIX within one file system), so a run killed mid-write never leaves
a truncated ``results.json`` or a half-written cache file behind.

Cache files are ``.npz`` archives named ``<name>-<hash>.npz`` where ``hash`` is a stable hash of a
JSON-able dict describing how the arrays were computed (model, prompts, estimator settings, ...).
A repeated or resumed run with the same key finds the file and skips the computation.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import pathlib
import shutil
import tempfile
import zipfile
from typing import Any, Callable, Mapping, Sequence

import numpy as np

PathLike = str | os.PathLike

_UMASK = os.umask(0)
os.umask(_UMASK)
_KEY_ENTRY = "__cache_key__"
_SINGLE_ENTRY = "__single_array__"
_TMP_SUFFIX = ".tmp"
STATUS_FILE = "status.json"
RESULTS_FILE = "results.json"


# --------------------------------------------------------------------------------------------------
# Atomic writing
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_path(path: PathLike):
  """Yields a temporary path next to ``path``; moves it onto ``path`` only if the body succeeds."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  # The writer's pid in the name lets a later run tell a dead writer's leftover from a live one's.
  fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX,
                             dir=path.parent)
  os.close(fd)
  os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are ordinary files
  try:
    yield pathlib.Path(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # another user's live process
    return True
  return True


def _tmp_writer_pid(name: str) -> int | None:
  """The writer pid in a temporary name ``.<file>.<pid>.<random>.tmp``; None if it has none."""
  if not (name.startswith(".") and name.endswith(_TMP_SUFFIX)):
    return None
  parts = name[:-len(_TMP_SUFFIX)].rsplit(".", 2)
  if len(parts) != 3 or not parts[1].isdigit():
    return None
  return int(parts[1])


def clean_stale_tmp(directory: PathLike) -> list[pathlib.Path]:
  """Removes the temporary files that killed writers left in ``directory`` (not recursive).

  Only names of this module's pattern (``.<file>.<pid>.<random>.tmp``) whose writer process is
  gone are removed, so a live run sharing the directory (e.g. a common cache) is not disturbed.
  Returns the removed paths.
  """
  directory = pathlib.Path(directory)
  if not directory.is_dir():
    return []
  removed = []
  for entry in directory.iterdir():
    pid = _tmp_writer_pid(entry.name)
    if pid is None or not entry.is_file() or (pid != os.getpid() and _pid_alive(pid)):
      continue
    with contextlib.suppress(FileNotFoundError):  # another cleaner got there first
      entry.unlink()
      removed.append(entry)
  return removed


def write_bytes(path: PathLike, data: bytes) -> pathlib.Path:
  """Writes ``data`` to ``path`` atomically and returns the path."""
  with _atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  return pathlib.Path(path)


def write_text(path: PathLike, text: str) -> pathlib.Path:
  """Writes a UTF-8 text file (e.g. ``summary.md``) atomically."""
  return write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
  """Converts numpy/jax arrays and scalars, tuples, paths and dataclass-like objects to JSON types.

  Non-finite floats (NaN, ±inf) become ``None`` (``null``): strict JSON has no NaN, and a missing
  value must read as missing rather than as a number.
  """
  if obj is None or isinstance(obj, (bool, str)):
    return obj
  if isinstance(obj, (int, np.integer)) and not isinstance(obj, np.bool_):
    return int(obj)
  if isinstance(obj, np.bool_):
    return bool(obj)
  if isinstance(obj, (float, np.floating)):
    f = float(obj)
    return f if math.isfinite(f) else None
  if isinstance(obj, pathlib.PurePath):
    return str(obj)
  if isinstance(obj, Mapping):
    out = {}
    for k, v in obj.items():
      if not isinstance(k, (str, int, float, bool)) and k is not None:
        raise ValueError(f"to_jsonable: dict key {k!r} of type {type(k).__name__} is not JSON-able")
      out[str(k)] = to_jsonable(v)
    return out
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "to_dict") and callable(obj.to_dict):
    return to_jsonable(obj.to_dict())
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return to_jsonable(dataclasses.asdict(obj))
  if hasattr(obj, "__array__"):
    arr = np.asarray(obj)
    if arr.dtype.kind in "biuf":
      return to_jsonable(arr.tolist())
    if arr.dtype.kind in "UO":
      return to_jsonable(arr.tolist())
  raise ValueError(f"to_jsonable: cannot convert object of type {type(obj).__name__} to JSON")


def write_json(path: PathLike, obj: Any, *, indent: int = 2) -> pathlib.Path:
  """Writes ``obj`` (after :func:`to_jsonable`) as JSON, atomically."""
  text = json.dumps(to_jsonable(obj), indent=indent, sort_keys=False, allow_nan=False)
  return write_text(path, text + "\n")


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
              *, columns: Sequence[str] | None = None) -> pathlib.Path:
  """Writes a table atomically.

  Args:
    rows: either a list of dicts (one per row) or a dict of equal-length columns.
    columns: column order; defaults to the first row's keys (or the dict's key order).
  """
  if isinstance(rows, Mapping):
    names = list(columns or rows.keys())
    lengths = {k: len(rows[k]) for k in names}
    if len(set(lengths.values())) > 1:
      raise ValueError(f"write_csv({path}): columns have different lengths {lengths}")
    n = next(iter(lengths.values()), 0)
    rows = [{k: rows[k][i] for k in names} for i in range(n)]
  else:
    rows = list(rows)
    names = list(columns or (rows[0].keys() if rows else []))
  buf = io.StringIO()
  writer = csv.DictWriter(buf, fieldnames=names, extrasaction="raise", lineterminator="\n")
  writer.writeheader()
  for i, row in enumerate(rows):
    missing = [k for k in names if k not in row]
    if missing:
      raise ValueError(f"write_csv({path}): row {i} lacks columns {missing}")
    writer.writerow({k: _csv_cell(row[k]) for k in names})
  return write_text(path, buf.getvalue())


def _csv_cell(v: Any) -> Any:
  if isinstance(v, (np.generic,)):
    v = v.item()
  if isinstance(v, float) and not math.isfinite(v):
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
  return v


def write_npz(path: PathLike, **arrays: Any) -> pathlib.Path:
  """Writes arrays to an uncompressed ``.npz`` archive atomically."""
  with _atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
      f.flush()
      os.fsync(f.fileno())
  return pathlib.Path(path)


def read_npz(path: PathLike) -> dict[str, np.ndarray]:
  """Reads every array of an ``.npz`` archive; a damaged file raises ValueError naming it."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"read_npz: {path} does not exist")
  try:
    with np.load(path, allow_pickle=False) as data:
      return {k: data[k] for k in data.files}
  except (zipfile.BadZipFile, ValueError, EOFError, OSError, KeyError) as err:
    raise ValueError(f"{path} is not a readable .npz archive ({type(err).__name__}: {err}); "
                     "delete it to recompute") from err


def save_figure(fig, path: PathLike, *, dpi: int = 120) -> pathlib.Path:
  """Saves a matplotlib figure as PNG (or the suffix's format), atomically."""
  path = pathlib.Path(path)
  fmt = path.suffix.lstrip(".") or "png"
  buf = io.BytesIO()
  fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight")
  return write_bytes(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------
# Run directories and flags
# --------------------------------------------------------------------------------------------------


def make_run_dir(out: PathLike | None = None, *, root: PathLike = "runs",
                 experiment: str = "run", now: datetime.datetime | None = None) -> pathlib.Path:
  """Creates and returns the run directory.

  ``out`` given: that directory (created if needed; an existing one is returned as it is:
  :func:`start_run` clears a previous run's files). Otherwise ``root/<experiment>-<YYYYmmdd-HHMMSS>`` in UTC, with ``-2``, ``-3``,
  ... appended if that name exists already.
  """
  if out is not None:
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
      raise ValueError(f"make_run_dir: --out={path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path
  now = now or datetime.datetime.now(datetime.timezone.utc)
  base = pathlib.Path(root) / f"{experiment}-{now.strftime('%Y%m%d-%H%M%S')}"
  path, k = base, 1
  while True:
    try:
      path.mkdir(parents=True, exist_ok=False)
      return path
    except FileExistsError:
      k += 1
      path = base.with_name(f"{base.name}-{k}")


def dump_flags(run_dir: PathLike, flags_obj: Any, *, name: str = "flags.json") -> pathlib.Path:
  """Writes the flags of a run to ``run_dir/flags.json``.

  ``flags_obj`` is a dict or an absl ``FlagValues`` (anything with ``flag_values_dict()``).
  Values JSON cannot hold are written as their ``repr``.
  """
  if hasattr(flags_obj, "flag_values_dict"):
    flags_obj = flags_obj.flag_values_dict()
  if not isinstance(flags_obj, Mapping):
    raise ValueError(f"dump_flags: expected a dict or absl FlagValues, got {type(flags_obj).__name__}")
  clean = {}
  for k, v in flags_obj.items():
    try:
      clean[str(k)] = to_jsonable(v)
    except ValueError:
      clean[str(k)] = repr(v)
  return write_json(pathlib.Path(run_dir) / name, clean)


def _utc_now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _inside(path: pathlib.Path, other: pathlib.Path) -> bool:
  """Whether ``other`` is ``path`` or lies below it."""
  return other == path or path in other.parents


def clear_run_dir(path: PathLike, *, keep: Sequence[PathLike] = ()) -> list[pathlib.Path]:
  """Empties a previous run's directory (it must hold that run's ``status.json``).

  Entries that are, or contain, a path in ``keep`` (e.g. a cache directory placed inside the run
  directory) are left alone. Returns the removed entries.

  Raises:
    ValueError: ``path`` holds files but no ``status.json``: it is not a synergy_jax run directory,
      and nothing in it is removed.
  """
  path = pathlib.Path(path).resolve()
  clean_stale_tmp(path)
  entries = sorted(path.iterdir())
  if entries and not (path / STATUS_FILE).exists():
    raise ValueError(f"--out={path} is not empty and holds no {STATUS_FILE}, so it is not the "
                     "directory of an earlier run; choose a new or empty folder (nothing there "
                     "was changed)")
  kept = [pathlib.Path(k).resolve() for k in keep]
  removed = []
  for entry in entries:
    if any(_inside(entry, k) for k in kept):
      continue
    if entry.is_dir() and not entry.is_symlink():
      shutil.rmtree(entry)
    else:
      entry.unlink()
    removed.append(entry)
  return removed


def start_run(path: PathLike, *, experiment: str, flags: Mapping[str, Any],
              keep: Sequence[PathLike] = ()) -> pathlib.Path:
  """Prepares ``path`` (an existing or new run directory) for a run of ``experiment``.

  Removes what a previous run left there (``clear_run_dir``), then writes ``status.json``
  (``"status": "running"``) and ``flags.json``. The run ends with :func:`complete_run` or
  :func:`end_run`; a run killed before either leaves ``"running"`` in ``status.json``.
  """
  path = pathlib.Path(path)
  path.mkdir(parents=True, exist_ok=True)
  clear_run_dir(path, keep=keep)
  write_json(path / STATUS_FILE, {"status": "running", "experiment": experiment,
                                  "started": _utc_now(), "pid": os.getpid()})
  dump_flags(path, dict(flags))
  return path


def end_run(path: PathLike, status: str, message: str = "") -> pathlib.Path:
  """Records a run that stopped early: ``status`` is "failed" or "interrupted"."""
  if status not in ("failed", "interrupted"):
    raise ValueError(f"end_run: status must be 'failed' or 'interrupted', got {status!r}")
  path = pathlib.Path(path)
  old = _read_json_or_empty(path / STATUS_FILE)
  return write_json(path / STATUS_FILE, {**old, "status": status, "ended": _utc_now(),
                                         "message": message})


def complete_run(path: PathLike) -> dict:
  """Marks a run complete: ``status.json`` says so, then ``results.json`` is rewritten, last of
  all files, with ``"status": "complete"`` first. Returns the results dict.

  Raises:
    FileNotFoundError: the run wrote no ``results.json``.
  """
  path = pathlib.Path(path)
  res_path = path / RESULTS_FILE
  if not res_path.exists():
    raise FileNotFoundError(f"{res_path}: the run finished without writing {RESULTS_FILE}")
  data = json.loads(res_path.read_text())
  data = {"status": "complete", **{k: v for k, v in data.items() if k != "status"}}
  old = _read_json_or_empty(path / STATUS_FILE)
  write_json(path / STATUS_FILE, {**old, "status": "complete", "ended": _utc_now()})
  write_json(res_path, data)
  return data


def _read_json_or_empty(path: pathlib.Path) -> dict:
  try:
    data = json.loads(path.read_text())
  except (FileNotFoundError, json.JSONDecodeError):
    return {}
  return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------------
# Config hashing and cache
# --------------------------------------------------------------------------------------------------


def canonical_json(key: Mapping[str, Any]) -> str:
  """A canonical JSON string of ``key``: sorted keys, no spaces, numpy types converted.

  Floats keep full precision (``repr``), tuples become lists, NaN becomes ``null``.
  """
  if not isinstance(key, Mapping):
    raise ValueError(f"config key must be a dict, got {type(key).__name__}")
  return json.dumps(to_jsonable(key), sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_hash(key: Mapping[str, Any], *, length: int = 16) -> str:
  """Stable hex hash (SHA-256 prefix) of a JSON-able dict; independent of key order."""
  return hashlib.sha256(canonical_json(key).encode("utf-8")).hexdigest()[:length]


def cache_path(cache_dir: PathLike, key: Mapping[str, Any], name: str) -> pathlib.Path:
  """Where :func:`cached` stores the arrays for ``key``: ``cache_dir/<name>-<hash>.npz``."""
  if not name or "/" in name or os.sep in name:
    raise ValueError(f"cache name {name!r} must be a plain, non-empty file stem")
  return pathlib.Path(cache_dir) / f"{name}-{config_hash(key)}.npz"


_CLEANED_DIRS: set = set()


def _clean_once(directory: pathlib.Path) -> None:
  """Removes dead writers' temporary files from a cache directory, once per process."""
  key = os.path.abspath(directory)
  if key not in _CLEANED_DIRS:
    clean_stale_tmp(directory)
    _CLEANED_DIRS.add(key)


def cached(cache_dir: PathLike, key_dict: Mapping[str, Any],
           compute_fn: Callable[[], Any], name: str):
  """Returns ``compute_fn()``, computing it only if no cache file for ``key_dict`` exists.

  Args:
    cache_dir: directory of cache files (created if needed).
    key_dict: JSON-able description of everything the result depends on.
    compute_fn: no-argument function returning an array or a dict ``{str: array}``.
    name: file stem, e.g. ``"activations"``.

  Returns:
    A numpy array, or a dict of numpy arrays — the same kind ``compute_fn`` returned.

  Raises:
    ValueError: the cache file exists but is damaged or was written for another key (the message
      names the file); delete it to recompute.
  """
  path = cache_path(cache_dir, key_dict, name)
  _clean_once(path.parent)
  canon = canonical_json(key_dict)
  if path.exists():
    data = read_npz(path)
    stored = data.pop(_KEY_ENTRY, None)
    if stored is None or str(stored) != canon:
      raise ValueError(f"cache file {path} does not hold the key it is named for "
                       f"(stored {None if stored is None else str(stored)[:200]!r}); delete it")
    if _SINGLE_ENTRY in data:
      return data[_SINGLE_ENTRY]
    return data
  result = compute_fn()
  if isinstance(result, Mapping):
    arrays = {}
    for k, v in result.items():
      if not isinstance(k, str) or k.startswith("__"):
        raise ValueError(f"cached({name}): result key {k!r} must be a str not starting with '__'")
      arrays[k] = np.asarray(v)
    out = dict(arrays)
  else:
    arrays = {_SINGLE_ENTRY: np.asarray(result)}
    out = arrays[_SINGLE_ENTRY]
  for k, v in arrays.items():
    if v.dtype == object:
      raise ValueError(f"cached({name}): entry {k!r} is an object array; only numeric arrays")
  write_npz(path, **arrays, **{_KEY_ENTRY: np.asarray(canon)})
  return out
