"""Small helpers for the experiments' markdown summaries and logs (one number format everywhere)."""
from __future__ import annotations

import math

# How fmt writes a value that is not a finite number (None, NaN, ±inf), by name:
#   "n/a":    all of them as "n/a", so a missing value never prints as a number (summaries);
#   "signed": None and NaN as "n/a", ±inf as "∞" / "−∞" (an infinite bound is an answer, e.g. a
#             Hedges' g of two runs that do not overlap);
#   "float":  Python's "nan" / "inf" / "-inf" (None "n/a"), which float() reads back (CSV logs).
NONFINITE = ("n/a", "signed", "float")


def fmt(x, nd: int = 3, spec: str = "g", *, nonfinite: str = "n/a") -> str:
  """``x`` with ``nd`` digits (``spec`` "g": significant, "f": after the point); a value that is
  not a finite number is written as ``nonfinite`` says (see ``NONFINITE``); anything ``float()``
  cannot read (a label) as ``str(x)``."""
  if nonfinite not in NONFINITE:
    raise ValueError(f"fmt: nonfinite must be one of {NONFINITE}, got {nonfinite!r}")
  if x is None:
    return "n/a"
  try:
    v = float(x)
  except (TypeError, ValueError):
    return str(x)
  if math.isfinite(v):
    return f"{v:.{nd}{spec}}"
  if nonfinite == "float":
    return str(v)  # "nan", "inf", "-inf"
  if nonfinite == "signed" and math.isinf(v):
    return "∞" if v > 0 else "−∞"
  return "n/a"
