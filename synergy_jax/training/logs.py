"""A run's ``log.csv``: one row per logged step, written once, kept consistent with checkpoints.

Rows are appended (and fsynced) as steps complete. On resume from checkpoint s the log is
rewritten atomically to its header and the rows of steps ≤ s, so rows of steps that the resumed
run repeats are never duplicated (including the step-0 evaluation row).
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

from synergy_jax import results


def _rows(path: str, columns: Sequence[str]) -> list[dict[str, str]]:
  if not os.path.exists(path):
    return []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    if reader.fieldnames != list(columns):
      raise ValueError(f"log {path!r} has columns {reader.fieldnames}, expected {list(columns)}")
    # a row cut by a kill mid-append has missing cells (None): it is dropped
    return [row for row in reader if row.get("step") and None not in row.values()]


def truncate(path: str | os.PathLike, columns: Sequence[str], last_step: int) -> list[int]:
  """Keeps the header and the rows with step ≤ last_step (atomic rewrite); returns their steps."""
  path = os.fspath(path)
  kept = [r for r in _rows(path, columns) if int(float(r["step"])) <= last_step]
  buf = io.StringIO()
  writer = csv.DictWriter(buf, list(columns), lineterminator="\n")
  writer.writeheader()
  writer.writerows(kept)
  results.write_text(path, buf.getvalue())
  return [int(float(r["step"])) for r in kept]


def append(path: str | os.PathLike, columns: Sequence[str], row: dict[str, Any]) -> None:
  """Appends one row (unknown keys raise ValueError naming them; missing cells stay empty)."""
  extra = sorted(set(row) - set(columns))
  if extra:
    raise ValueError(f"log row has columns {extra} that {os.fspath(path)!r} does not have")
  buf = io.StringIO()
  csv.DictWriter(buf, list(columns), lineterminator="\n").writerow(row)
  with open(os.fspath(path), "a", newline="") as f:
    f.write(buf.getvalue())
    f.flush()
    os.fsync(f.fileno())


def read(path: str | os.PathLike) -> list[dict[str, float]]:
  """Rows of a run's log.csv as dicts of floats (missing values left out)."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"training log {path!r} does not exist")
  with open(path, newline="") as f:
    return [{k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)]
