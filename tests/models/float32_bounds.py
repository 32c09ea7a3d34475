"""Float32 parity bounds measured on the reference's own rounding, in the same run.

Two float32 evaluations of one function (ours and transformers', or ours sharded and unsharded)
differ by the sum of their rounding errors. Those depend on the order the machine's kernels sum in
(an AVX2 CPU blocks its dot products differently from an AVX-512 one) and grow with the size of the
values and the depth of the computation, so an absolute tolerance fitted on one machine fails on
another: a routed expert norm of ~65 is within one or two ulps (7.6e-6 each) of a 1e-5 atol.

Here the scale comes from the reference itself: it runs once in float64 (the truth, to float32's
eyes) and once in float32 on the same inputs, and E = max |ref32 - ref64| over the array is how much
rounding this computation picks up on this machine. Ours must be within FACTOR * E of the float64
result (never below FACTOR ulps of the array's largest value, in case the reference happens to be
exact). FACTOR = 4: ours and the reference are float32 evaluations of the same sums in other
orders, so their errors are of one size; measured on a 2-core AMD EPYC (AVX2, 2026-12-03) the ratio
max|ours - ref64| / E was 1.0-2.4 over the MoE block tests and 0.8-1.7 over the sharded scores.

A guard keeps the bound meaningful: E must stay below 1e-4 of the array's largest value (the
float32 reference is itself accurate), so a broken reference cannot widen the bound into a test
that passes on anything.
"""
import numpy as np

FACTOR = 4.0
EPS32 = float(np.finfo(np.float32).eps)
MAX_REFERENCE_ERROR = 1e-4  # of the array's largest |value|


def reference_rounding_bound(ref32, ref64, *, what: str, factor: float = FACTOR) -> float:
  """factor * max(max|ref32 - ref64|, eps32 * max|ref64|); checks both are finite and alike."""
  r32 = np.asarray(ref32, np.float64)
  r64 = np.asarray(ref64, np.float64)
  assert r32.shape == r64.shape, (what, r32.shape, r64.shape)
  assert np.isfinite(r32).all() and np.isfinite(r64).all(), f"{what}: reference is not finite"
  top = float(np.abs(r64).max())
  assert top > 0, f"{what}: reference is all zero (the comparison would test nothing)"
  e = float(np.abs(r32 - r64).max())
  assert e <= MAX_REFERENCE_ERROR * top, (
      f"{what}: the float32 reference is off its float64 run by {e:.3g} of values up to "
      f"{top:.3g}; a bound from it would mean nothing")
  return factor * max(e, EPS32 * top)


def assert_within_reference_rounding(got, ref32, ref64, *, what: str,
                                     factor: float = FACTOR) -> float:
  """max|got - ref64| <= reference_rounding_bound(...); returns the ratio of the two."""
  g = np.asarray(got, np.float64)
  r64 = np.asarray(ref64, np.float64)
  assert g.shape == r64.shape, (what, g.shape, r64.shape)
  assert np.isfinite(g).all(), f"{what}: ours is not finite"
  bound = reference_rounding_bound(ref32, ref64, what=what, factor=factor)
  err = float(np.abs(g - r64).max())
  assert err <= bound, (
      f"{what}: ours is {err:.3g} off the float64 reference, more than {factor:g}x the float32 "
      f"reference's own error ({bound / factor:.3g})")
  return err / bound
