"""The unit table: order of heads and experts, names, depth, validation, file round trip."""
import numpy as np
import pytest

from synergy_jax.analysis import units as U


def test_grid_order_is_layer_major():
  t = U.Units.grid(3, 4)
  assert t.size == 12 and t.grid_shape == (3, 4)
  assert t.layer.tolist() == [0] * 4 + [1] * 4 + [2] * 4
  assert t.index.tolist() == [0, 1, 2, 3] * 3
  assert t.name(6) == "L1 H2"
  np.testing.assert_allclose(t.depth, np.repeat([0.0, 0.5, 1.0], 4))


def test_experts_routed_then_shared_per_moe_layer():
  t = U.Units.experts(num_layers=4, moe_layers=(1, 3), num_routed=3, num_shared=2)
  assert t.size == 10 and t.grid_shape is None
  assert t.layer.tolist() == [1] * 5 + [3] * 5
  assert t.index.tolist() == [0, 1, 2, 3, 4] * 2
  assert t.shared.tolist() == [False, False, False, True, True] * 2
  assert t.names[:5] == ["L1 E0", "L1 E1", "L1 E2", "L1 S0", "L1 S1"]
  assert t.name(7) == "L3 E2"
  assert t.describe() == "10 experts (4 shared)"
  np.testing.assert_allclose(t.depth, np.repeat([1 / 3, 1.0], 5))


def test_heads_per_layer_only_for_the_full_head_grid():
  assert U.Units.grid(3, 4).heads_per_layer("run.npz") == 4
  experts = U.Units.experts(num_layers=4, moe_layers=(1, 3), num_routed=3, num_shared=2)
  with pytest.raises(ValueError, match=r"run.npz: its units are 10 experts \(4 shared\), not the "
                     r"full head grid"):
    experts.heads_per_layer("run.npz")


class _Moe:
  moe_layers, num_experts, num_shared_experts = (0, 2), 4, 1


class _Cfg:
  model_type, num_layers, num_heads, moe = "mixtral", 3, 2, _Moe()


def test_of_config_heads_then_experts():
  both = U.Units.of_config(_Cfg(), "heads+experts")
  assert both.size == 3 * 2 + 2 * 5
  assert both.names[:6] == ["L0 H0", "L0 H1", "L1 H0", "L1 H1", "L2 H0", "L2 H1"]
  assert both.names[6:11] == ["L0 E0", "L0 E1", "L0 E2", "L0 E3", "L0 S0"]
  assert both.names[11] == "L2 E0"
  assert U.Units.of_config(_Cfg(), "experts") == both.subset(np.arange(6, 16))
  assert U.Units.of_config(_Cfg(), "heads") == U.Units.grid(3, 2)


def test_of_config_refuses_experts_of_a_dense_model():
  class Dense:
    model_type, num_layers, num_heads, moe = "llama", 2, 2, None
  with pytest.raises(ValueError, match="llama model has no experts"):
    U.Units.of_config(Dense(), "experts")
  with pytest.raises(ValueError, match="units must be one of heads\\|experts"):
    U.Units.of_config(Dense(), "neurons")


def test_validation_names_the_unit():
  with pytest.raises(ValueError, match="unit 1 sits in layer 5"):
    U.Units([0, 5], [0, 0], ["head", "head"], [False, False], 3)
  with pytest.raises(ValueError, match="unit 1 .*appears twice"):
    U.Units([0, 0], [1, 1], ["head", "head"], [False, False], 3)
  with pytest.raises(ValueError, match="unit 0 is a head marked shared"):
    U.Units([0], [0], ["head"], [True], 1)
  with pytest.raises(ValueError, match="unit 0 has kind 'neuron'"):
    U.Units([0], [0], ["neuron"], [False], 1)
  with pytest.raises(ValueError, match="unit 12 is out of range"):
    U.Units.grid(3, 4).subset([12])


def test_arrays_round_trip_and_missing_key():
  t = U.Units.of_config(_Cfg(), "heads+experts")
  assert U.Units.from_arrays(t.to_arrays()) == t
  arrays = t.to_arrays()
  del arrays["unit_kind"]
  with pytest.raises(ValueError, match="acts.npz: unit table lacks key\\(s\\) \\['unit_kind'\\]"):
    U.Units.from_arrays(arrays, "acts.npz")
  cols = t.columns()
  assert cols["name"][10] == "L0 S0" and bool(cols["shared"][10])
