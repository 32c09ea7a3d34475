"""The float32 parity bound of float32_bounds.py passes a float32 result with rounding-sized error
and fails one with a small real error, a NaN, or a reference too inaccurate to calibrate on."""
import numpy as np
import pytest

import float32_bounds as B


def _case(seed=0):
  rs = np.random.RandomState(seed)
  w = rs.randn(64, 48)
  x = rs.randn(48, 5)
  ref64 = w @ x
  ref32 = w.astype(np.float32) @ x.astype(np.float32)  # a float32 evaluation of the same sums
  # another float32 order: the sum over the inner axis taken in reverse
  ours = np.einsum("ik,kj->ij", w[:, ::-1].astype(np.float32), x[::-1].astype(np.float32))
  return ours, ref32, ref64


def test_rounding_sized_error_passes():
  ours, ref32, ref64 = _case()
  assert np.abs(ref32 - ref64).max() > 0  # float32 really rounded
  ratio = B.assert_within_reference_rounding(ours, ref32, ref64, what="product")
  assert 0 < ratio <= 1


def test_small_real_error_fails():
  ours, ref32, ref64 = _case()
  bad = ours.copy()
  bad[3, 2] += 1e-5 * np.abs(ref64).max()  # 1e-5 of the scale: ~80 float32 ulps
  with pytest.raises(AssertionError, match="product: ours is .* off the float64 reference"):
    B.assert_within_reference_rounding(bad, ref32, ref64, what="product")


def test_nan_fails():
  ours, ref32, ref64 = _case()
  ours[0, 0] = np.nan
  with pytest.raises(AssertionError, match="product: ours is not finite"):
    B.assert_within_reference_rounding(ours, ref32, ref64, what="product")


def test_inaccurate_reference_cannot_widen_the_bound():
  ours, ref32, ref64 = _case()
  sloppy = ref32 + 1e-3 * np.abs(ref64).max()
  with pytest.raises(AssertionError, match="product: the float32 reference is off"):
    B.assert_within_reference_rounding(ours + 1e-3, sloppy, ref64, what="product")
  with pytest.raises(AssertionError, match="all zero"):
    B.assert_within_reference_rounding(np.zeros(3), np.zeros(3), np.zeros(3), what="zeros")
