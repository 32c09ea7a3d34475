"""Unit ↔ (layer, head) mapping, layer profiles and the synergistic-core contrast."""
import numpy as np
import pytest

from synergy_jax.analysis import profile


def test_unit_mapping_roundtrip_and_errors():
  assert profile.unit_to_layer_head(13, num_heads=4) == (3, 1)
  layer, head = profile.unit_to_layer_head(np.arange(12), num_heads=4, num_layers=3)
  np.testing.assert_array_equal(profile.layer_head_to_unit(layer, head, 3, 4), np.arange(12))
  with pytest.raises(ValueError, match="unit 12 .*3 layers × 4 heads"):
    profile.unit_to_layer_head(12, num_heads=4, num_layers=3)
  with pytest.raises(ValueError, match="head 4"):
    profile.layer_head_to_unit(0, 4, 3, 4)


def test_layer_profile_hand_example():
  # 3 layers × 2 heads; scaled scores = (s - 0) / 10.
  s = np.array([0.0, 10.0, 5.0, 5.0, 2.0, np.nan])
  lp = profile.layer_profile(s, 3, 2)
  np.testing.assert_allclose(lp.depth, [0, 0.5, 1])
  np.testing.assert_allclose(lp.mean, [0.5, 0.5, 0.2])
  np.testing.assert_allclose(lp.sd, [0.5, 0.0, 0.0])
  np.testing.assert_allclose(lp.min, [0.0, 0.5, 0.2])
  np.testing.assert_allclose(lp.max, [1.0, 0.5, 0.2])
  np.testing.assert_array_equal(lp.n_valid, [2, 2, 1])
  with pytest.raises(ValueError, match=r"shape \(6,\)"):
    profile.layer_profile(np.zeros(5), 3, 2)


def test_minmax_constant_is_nan():
  assert np.all(np.isnan(profile.minmax_scale(np.ones(4))))


def test_core_contrast():
  # 4 layers: depths 0, 1/3, 2/3, 1 → middle = layers 1 and 2 (closed band).
  np.testing.assert_array_equal(profile.middle_layers(4), [False, True, True, False])
  s = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.5])  # 4 layers × 2 heads
  # scaled = s; middle mean = 1, periphery mean = (0 + 0 + 0 + .5)/4 = .125.
  assert profile.core_contrast(s, 4, 2) == pytest.approx(0.875)
  with pytest.raises(ValueError, match="middle"):
    profile.core_contrast(np.arange(4.0), 2, 2)
