"""Typed results from results.json: a frozen dataclass's fields picked from a JSON dict, the missing
key named (the readers of the experiments' typed summaries use this)."""
from __future__ import annotations

import dataclasses
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

