"""Typed results and results.json: a run's results file read (file or run directory), a frozen
dataclass's fields picked from its dict with a missing key named, and a dataclass written without
its not-yet-set fields (the experiments' typed summaries and their readers use these)."""
from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Mapping


def field_values(cls: type, data: Any, where: str) -> dict:
  """{field: data[field]} for each field of the dataclass ``cls``; a field with a default may be
  absent (an older file), other keys of ``data`` are ignored (e.g. results.json's "status").

  Raises:
    ValueError: ``data`` is not a dict or lacks a required field; names ``where`` and the key.
  """
  if not isinstance(data, Mapping):
    raise ValueError(f"{where}: expected a JSON object for {cls.__name__}, got "
                     f"{type(data).__name__}")
  out = {}
  for f in dataclasses.fields(cls):
    if f.name in data:
      out[f.name] = data[f.name]
    elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
      raise ValueError(f"{where}: missing key {f.name!r} ({cls.__name__})")
  return out


def read_results(path, what: str) -> tuple[pathlib.Path, dict]:
  """(file, dict) of a run's results.json; ``path`` is the file or its run directory.

  Raises:
    FileNotFoundError: no such file (names it and ``what``, e.g. "ablation").
    ValueError: the file is not valid JSON (names it).
  """
  path = pathlib.Path(path)
  path = path / "results.json" if path.is_dir() else path
  if not path.exists():
    raise FileNotFoundError(f"no {what} results at {path}")
  try:
    return path, json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from e


def to_dict_unset_absent(obj, *names: str) -> dict:
  """``dataclasses.asdict(obj)`` without the fields ``names`` that are None (values a run sets at
  its end, such as "wall_s", are absent from the JSON until then rather than null)."""
  out = dataclasses.asdict(obj)
  for name in names:
    if out[name] is None:
      del out[name]
  return out
