"""Input validation for the ΦID estimators: every problem names its argument, unit and prompt.

Unit checks run in the compute dtype on the preprocessed lagged vectors (past v[:T'−τ] and
future v[τ:] of each prompt), so a unit that is fine in float64 but collapses in float32 is named.
Each (prompt, unit) gets a code (``REASONS[code]``; 0 = usable), the first that applies of:

  nan/inf                       a value is not finite (after the cast to the compute dtype)
  constant past / future        max == min
  past / future scale too large the centred sum of squares overflows
  past / future scale too small the centred sum of squares is below n · (smallest normal number)
  near-constant past / future   std ≤ NEAR_CONSTANT_ULPS · ε · max |v|: the spread is a few ulps
                                of the values' magnitude, so rounding decides the standardised
                                series (ε: machine epsilon of the dtype)
  values outside the integer states   (discretise="given") a state is not an integer in [0, K)

Estimator-specific checks (an affine past→future map, constant discrete states) are in ``kinds``.
"""
import dataclasses

import jax.numpy as jnp
import numpy as np

ON_DEGENERATE = ("raise", "mask")
# Spread in units of ε·max|v| at or below which a series is too close to constant for the dtype:
# its standardised values then carry rounding errors above 1/1024.
NEAR_CONSTANT_ULPS = 1024

REASONS = ("ok", "nan/inf", "constant past", "constant future", "past scale too large",
           "future scale too large", "past scale too small", "future scale too small",
           "near-constant past", "near-constant future",
           # from kinds (estimator-specific):
           "future an affine function of the past", "constant past states",
           "constant future states", "values outside the integer states [0, num_states)")
REASON_CODE = {r: k for k, r in enumerate(REASONS)}
# Reasons that depend on the dtype's range or precision get " in <dtype>" appended.
DTYPE_REASONS = frozenset(REASONS[4:10])


@dataclasses.dataclass(frozen=True)
class Problem:
  """One quantity that cannot be estimated.

  unit: index of the unit (x side for a pair). prompt: prompt index, or None when the problem is
  in samples pooled over prompts (pool="concat"). reason: what is wrong. series: "acts" or
  "acts_y" (which input holds ``unit``). partner: for a pair problem the y-side unit (in acts_y
  when given, else acts), otherwise None. ``as_dict()`` is JSON-ready.
  """
  unit: int
  prompt: int | None
  reason: str
  series: str = "acts"
  partner: int | None = None

  def __str__(self):
    where = "pooled prompts" if self.prompt is None else f"prompt {self.prompt}"
    if self.partner is None:
      return f"unit {self.unit}, {where} of {self.series}: {self.reason}"
    return f"units {self.unit} and {self.partner} (pair), {where}: {self.reason}"

  def as_dict(self):
    return dataclasses.asdict(self)


def check_choice(name, value, choices):
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {choices}")


def check_tau(tau):
  if isinstance(tau, bool) or not isinstance(tau, (int, np.integer)):
    raise ValueError(f"tau={tau!r} must be a Python int ≥ 1")
  if tau < 1:
    raise ValueError(f"tau={tau} must be ≥ 1")


def min_lagged_samples(config):
  """Fewest lagged samples S per prompt the estimator can use.

  Gaussian and copula: the 4×4 correlation matrix of (x_p, y_p, x_f, y_f) is estimated after
  removing the mean, so S samples span at most S − 1 dimensions and the matrix is singular (MIs
  infinite) unless S − 1 ≥ 4; the bias correction ψ((S − 4)/2) needs S > 4 as well: S ≥ 5.
  Discrete: a lagged vector can only visit all K states with S ≥ K samples: S ≥ max(K, 2).
  """
  if config.kind == "discrete":
    return max(config.num_states or 2, 2)
  return 5


def min_series_length(config):
  """Fewest time steps T per prompt for ``config``: S_min + τ, plus 1 for preprocess="diff"
  (first differences are one step shorter). Detrending keeps the length (the fitted line is
  removed from the whole series, not from the lagged vectors)."""
  return min_lagged_samples(config) + config.tau + (1 if config.preprocess == "diff" else 0)


def check_length(num_steps, config):
  """ValueError naming T, τ and the estimator when a series is shorter than the minimum."""
  check_tau(config.tau)
  need = min_series_length(config)
  if num_steps < need:
    extra = ", preprocess='diff'" if config.preprocess == "diff" else ""
    raise ValueError(
        f"time axis T={num_steps} is too short for tau={config.tau} with kind={config.kind!r}"
        f"{extra}: the estimator needs T ≥ {need} ({min_lagged_samples(config)} lagged samples "
        f"per prompt; see phiid.min_series_length)")


def check_shape(acts, name="acts"):
  shape = np.shape(acts)
  if len(shape) != 3:
    raise ValueError(f"{name} must be 3-D (prompts P, units U, time T); got shape {shape}")
  if shape[0] < 1 or shape[1] < 1:
    raise ValueError(f"{name} has shape {shape}: need at least one prompt and one unit")
  return shape


def raw_codes(series, tau):
  """(P, U) int32 codes (``REASONS``) of the raw-value checks; in-graph, in series' dtype.

  series: (P, U, T') preprocessed, already in the compute dtype (floating).
  """
  dtype = series.dtype
  finfo = jnp.finfo(dtype)
  code = jnp.where(jnp.all(jnp.isfinite(series), axis=-1), 0, REASON_CODE["nan/inf"])
  t = series.shape[-1]
  for side, seg in (("past", series[..., :t - tau]), ("future", series[..., tau:])):
    n = seg.shape[-1]
    centred = seg - jnp.mean(seg, axis=-1, keepdims=True)
    ss = jnp.sum(centred * centred, axis=-1)
    top = jnp.max(jnp.abs(seg), axis=-1)
    tests = (
        (jnp.max(seg, axis=-1) == jnp.min(seg, axis=-1), f"constant {side}"),
        (~jnp.isfinite(ss), f"{side} scale too large"),
        (ss < n * finfo.tiny, f"{side} scale too small"),
        (jnp.sqrt(ss / (n - 1)) <= NEAR_CONSTANT_ULPS * finfo.eps * top, f"near-constant {side}"),
    )
    for bad, reason in tests:
      code = jnp.where((code == 0) & bad, REASON_CODE[reason], code)
  return code.astype(jnp.int32)


def reason_text(code, dtype):
  reason = REASONS[code]
  return f"{reason} in {np.dtype(dtype).name}" if reason in DTYPE_REASONS else reason


def unit_problems(codes, name, dtype, pooled=False):
  """(P', U) codes → Problems sorted by unit then prompt (prompt None when ``pooled``)."""
  codes = np.asarray(codes)
  out = [Problem(int(u), None if pooled else int(q), reason_text(int(codes[q, u]), dtype), name)
         for q, u in zip(*np.nonzero(codes))]
  return sorted(out, key=lambda pr: (pr.unit, -1 if pr.prompt is None else pr.prompt))


def describe(problems, limit=10):
  """Short text listing the first ``limit`` problems."""
  text = "; ".join(str(pr) for pr in problems[:limit])
  if len(problems) > limit:
    text += f"; ... ({len(problems) - limit} more)"
  return text


SINGULAR = "collinear: the 4×4 correlation matrix of (x_p, y_p, x_f, y_f) is singular"


def pair_problems(first, bad_x, bad_y, same, pooled, dtype, series="acts"):
  """Pairs whose correlation matrix is singular, from the (U, M) map of the first singular prompt
  (−1: none), leaving out pairs with a degenerate unit (already reported). With one set of units
  (``same``) each unordered pair is listed once, smaller unit first."""
  first = np.asarray(first)
  ok = (first >= 0) & ~np.asarray(bad_x)[:, None] & ~np.asarray(bad_y)[None, :]
  if same:
    ok &= np.triu(np.ones(first.shape, bool), 1)
  reason = f"{SINGULAR} in {np.dtype(dtype).name}"
  return [Problem(int(i), None if pooled else int(first[i, j]), reason, series, int(j))
          for i, j in zip(*np.nonzero(ok))]
