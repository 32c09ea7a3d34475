"""Input validation for the ΦID estimators: every problem names its argument, unit and prompt."""
import dataclasses

import numpy as np

REDUNDANCIES = ("mmi", "ccs")
KINDS = ("gaussian", "discrete")
POOLS = ("mean", "concat")
ON_DEGENERATE = ("raise", "mask")


@dataclasses.dataclass(frozen=True)
class Problem:
  """One degenerate (unit, prompt): ``reason`` is "nan/inf", "constant past" or "constant future".

  ``series`` is "acts" or "acts_y" (which input holds the unit).
  """
  unit: int
  prompt: int
  reason: str
  series: str = "acts"

  def __str__(self):
    return f"unit {self.unit}, prompt {self.prompt} of {self.series}: {self.reason}"


def check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {choices}")


def check_tau(tau, num_steps):
  """tau must be an int ≥ 1 and leave at least 3 lagged samples (T > tau + 2)."""
  if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)):
    raise ValueError(f"tau={tau!r} must be a Python int ≥ 1")
  if tau < 1:
    raise ValueError(f"tau={tau} must be ≥ 1")
  if num_steps <= tau + 2:
    raise ValueError(f"time axis T={num_steps} is too short for tau={tau}: need T > tau + 2 "
                     f"(at least 3 lagged samples)")


def check_shape(acts, name="acts"):
  shape = np.shape(acts)
  if len(shape) != 3:
    raise ValueError(f"{name} must be 3-D (prompts P, units N, time T); got shape {shape}")
  if shape[0] < 1 or shape[1] < 1:
    raise ValueError(f"{name} has shape {shape}: need at least one prompt and one unit")
  return shape


def check_units(acts, tau=1, *, name="acts"):
  """Degenerate (unit, prompt) combinations of concrete activations.

  Args:
    acts: (P, N, T) array-like (NumPy or a concrete JAX array).
    tau: lag; a unit is degenerate in a prompt when any value is NaN/inf, or its past
      ``x[:T - tau]`` or its future ``x[tau:]`` is constant (then its correlations are undefined).
    name: how the array is named in the problems ("acts" or "acts_y").
  Returns:
    list of ``Problem(unit, prompt, reason, series)``, sorted by unit then prompt; empty when all
    units are usable. Shape and tau errors raise ValueError.
  """
  p, n, t = check_shape(acts, name)
  check_tau(tau, t)
  a = np.asarray(acts)
  bad_val = ~np.isfinite(a).all(axis=-1)  # (P, N)
  past, fut = a[..., :t - tau], a[..., tau:]
  const_past = (past.max(axis=-1) == past.min(axis=-1)) & ~bad_val
  const_fut = (fut.max(axis=-1) == fut.min(axis=-1)) & ~bad_val & ~const_past
  problems = []
  for mask, reason in ((bad_val, "nan/inf"), (const_past, "constant past"),
                       (const_fut, "constant future")):
    for q, u in zip(*np.nonzero(mask)):
      problems.append(Problem(int(u), int(q), reason, name))
  return sorted(problems, key=lambda pr: (pr.unit, pr.prompt))


def describe(problems, limit=10):
  """Short text listing the first ``limit`` problems."""
  text = "; ".join(str(pr) for pr in problems[:limit])
  if len(problems) > limit:
    text += f"; ... ({len(problems) - limit} more)"
  return text
