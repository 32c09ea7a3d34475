"""Small helpers for the experiments' markdown summaries (one number format everywhere)."""
from __future__ import annotations

import math


def fmt(x, nd: int = 3, spec: str = "g") -> str:
  """``x`` with ``nd`` digits (``spec`` "g": significant, "f": after the point); "n/a" for None,
  NaN or ±inf, so a missing value never prints as a number."""
  if x is None:
    return "n/a"
  try:
    v = float(x)
  except (TypeError, ValueError):
    return str(x)
  return "n/a" if not math.isfinite(v) else f"{v:.{nd}{spec}}"
