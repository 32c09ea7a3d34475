"""The analysis functions on a ragged unit table (heads and experts, layers without units),
against references computed here by explicit loops over units, and the head-grid call form
giving bit-identical results."""
import numpy as np
import pytest

from synergy_jax.analysis import order, profile, ranking, report, stats, uncertainty
from synergy_jax.analysis.units import Units, as_units, concat
from synergy_jax.pipeline import specs

# 4 layers (depths 0, 1/3, 2/3, 1): 2 heads in layers 0 and 1; experts (2 routed + 1 shared) in
# layers 1 and 3; layer 2 has no units.
HEADS = Units([0, 0, 1, 1], [0, 1, 0, 1], ["head"] * 4, [False] * 4, 4)
EXPERTS = Units.experts(4, (1, 3), num_routed=2, num_shared=1)
RAGGED = concat(HEADS, EXPERTS)  # U = 10


def _scores(seed=0, nan_at=(3,)):
  s = np.random.default_rng(seed).normal(size=RAGGED.size)
  s[list(nan_at)] = np.nan
  return s


def _scaled(s):
  lo, hi = np.nanmin(s), np.nanmax(s)
  return (s - lo) / (hi - lo)


def test_table_helpers():
  assert RAGGED.names == ["L0 H0", "L0 H1", "L1 H0", "L1 H1", "L1 E0", "L1 E1", "L1 S0",
                          "L3 E0", "L3 E1", "L3 S0"]
  by = RAGGED.by_layer(np.arange(10.0))
  assert by.shape == (4, 5)
  np.testing.assert_array_equal(by[1], [2, 3, 4, 5, 6])
  assert np.isnan(by[2]).all() and np.isnan(by[0, 2:]).all()
  grid = Units.grid(3, 2)
  np.testing.assert_array_equal(grid.by_layer(np.arange(6.0)), np.arange(6.0).reshape(3, 2))
  assert as_units(3, 2) == grid and as_units(grid) is grid
  with pytest.raises(ValueError, match="needs num_heads"):
    as_units(3)
  with pytest.raises(ValueError, match="not both"):
    as_units(grid, 2)
  with pytest.raises(ValueError, match=r"shape \(10,\)"):
    RAGGED.by_layer(np.zeros(9))
  assert RAGGED.record(6) == {"unit": 6, "name": "L1 S0", "kind": "expert", "layer": 1,
                              "index": 2, "shared": True}
  assert RAGGED.record(1, "partner_")["partner_head"] == 1
  summ = RAGGED.summary()
  assert summ["which"] == "heads+experts" and summ["counts"] == {"head": 4, "expert": 6,
                                                                 "shared": 2}
  assert "num_heads" not in summ and Units.grid(2, 3).summary()["num_heads"] == 3
  assert RAGGED.layout() == "4 heads + 6 experts (2 shared) in 4 layers"


def test_layer_profile_by_explicit_loops():
  s = _scores()
  prof = profile.layer_profile(s, RAGGED)
  scaled = _scaled(s)
  for l in range(4):
    vals = [scaled[u] for u in range(RAGGED.size)
            if RAGGED.layer[u] == l and np.isfinite(scaled[u])]
    assert prof.n_valid[l] == len(vals)
    if not vals:
      assert np.isnan([prof.mean[l], prof.sd[l], prof.min[l], prof.max[l]]).all()
      continue
    np.testing.assert_allclose([prof.mean[l], prof.sd[l], prof.min[l], prof.max[l]],
                               [np.mean(vals), np.std(vals), min(vals), max(vals)], rtol=1e-12)
  np.testing.assert_allclose(prof.depth, [0, 1 / 3, 2 / 3, 1])
  assert list(prof.n_valid) == [2, 4, 0, 3]  # unit 3 (L1 H1) is NaN


def test_core_contrast_and_depth_trend_by_explicit_loops():
  s = _scores(1, nan_at=())
  scaled = _scaled(s)
  mid = [u for u in range(RAGGED.size) if RAGGED.layer[u] in (1, 2)]  # depths 1/3, 2/3
  rest = [u for u in range(RAGGED.size) if u not in mid]
  assert profile.core_contrast(s, RAGGED) == pytest.approx(
      np.mean(scaled[mid]) - np.mean(scaled[rest]), rel=1e-12)
  depth = np.array([RAGGED.layer[u] / 3 for u in range(RAGGED.size)])
  tr = stats.depth_trend(s, RAGGED, n_perm=20, n_boot=20)
  assert tr.curvature == pytest.approx(np.polyfit(depth, s, 2)[0], rel=1e-9)
  assert tr.n_heads == RAGGED.size
  with pytest.raises(ValueError, match="finite scores in only 2 layers"):
    stats.depth_trend(s[4:], EXPERTS, n_perm=5, n_boot=5)  # experts sit in layers 1 and 3


def test_order_parameters_on_ragged_units():
  rng = np.random.default_rng(2)
  n = RAGGED.size
  atoms = rng.uniform(0.1, 1.0, size=(n, n, len(ranking.ATOMS)))
  atoms = (atoms + atoms.transpose(1, 0, 2)) / 2  # symmetric: unit i as x or as y alike
  atoms[np.arange(n), np.arange(n)] = np.nan
  op = order.order_parameters(atoms, RAGGED)
  sts, rtr = atoms[..., ranking.ATOM_INDEX["sts"]], atoms[..., ranking.ATOM_INDEX["rtr"]]
  bal = [np.mean([sts[i, j] / (sts[i, j] + rtr[i, j]) for j in range(n) if j != i])
         for i in range(n)]
  mid = [u for u in range(n) if RAGGED.layer[u] in (1, 2)]
  rest = [u for u in range(n) if u not in mid]
  assert op["core_contrast"] == pytest.approx(np.mean(np.take(bal, mid))
                                              - np.mean(np.take(bal, rest)), rel=1e-12)
  with pytest.raises(ValueError, match=r"has 9 units.*4 heads \+ 6 experts"):
    order.order_parameters(atoms[:9, :9], RAGGED)


def test_grid_form_is_bit_identical_to_the_table_form():
  rng = np.random.default_rng(3)
  s = rng.normal(size=12)
  s[5] = np.nan
  grid = Units.grid(4, 3)
  a, b = profile.layer_profile(s, 4, 3), profile.layer_profile(s, grid)
  for k in ("mean", "sd", "min", "max", "n_valid"):
    np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
  assert profile.core_contrast(s, 4, 3) == profile.core_contrast(s, grid)
  assert stats.depth_trend(s, 4, 3, n_perm=30, n_boot=30).to_dict() == \
      stats.depth_trend(s, grid, n_perm=30, n_boot=30).to_dict()
  per = rng.uniform(0.1, 1, size=(4, 12, 12, 2))
  ci_a = uncertainty.layer_profile_ci(per, 4, 3, n_boot=20)
  ci_b = uncertainty.layer_profile_ci(per, grid, n_boot=20)
  for k in ci_a:
    np.testing.assert_array_equal(ci_a[k].samples, ci_b[k].samples)


def test_layer_profile_ci_keeps_every_layer():
  rng = np.random.default_rng(4)
  per = rng.uniform(0.1, 1, size=(5, RAGGED.size, RAGGED.size, 2))
  ci = uncertainty.layer_profile_ci(per, RAGGED, n_boot=30)["rank_difference"]
  assert ci.estimate.shape == ci.low.shape == (4,)
  assert np.isnan(ci.estimate[2]) and np.isfinite(np.delete(ci.estimate, 2)).all()


def test_head_table_and_degenerate_records_name_units():
  rng = np.random.default_rng(5)
  n = RAGGED.size
  atoms = rng.uniform(0.1, 1.0, size=(n, n, len(ranking.ATOMS)))
  atoms[np.arange(n), np.arange(n)] = np.nan
  table = report.head_table(ranking.head_scores(atoms), RAGGED)
  assert list(table)[:7] == ["unit", "layer", "name", "kind", "index", "shared", "synergy"]
  assert list(table["name"]) == RAGGED.names and list(table["shared"]) == [0] * 6 + [1, 0, 0, 1]
  grid_table = report.head_table(ranking.head_scores(atoms[:4, :4]), 2)  # old form: num_heads
  np.testing.assert_array_equal(grid_table["head"], [0, 1, 0, 1])

  class P:  # the fields of a phiid.degenerate problem
    def __init__(self, unit, partner=None):
      self.unit, self.partner, self.prompt, self.reason = unit, partner, 0, "constant past"
  recs = specs.degenerate_records([P(7), P(2, 6)], RAGGED)
  assert recs[0]["name"] == "L3 E0" and recs[0]["kind"] == "expert" and "head" not in recs[0]
  assert recs[1]["partner"] == 6 and recs[1]["partner_name"] == "L1 S0"
  assert specs.degenerate_summary(recs) == {"n_units": 1, "units": ["L3 E0"], "n_pairs": 1,
                                            "pairs": ["L1 H0 × L1 S0"]}
  old = specs.degenerate_records([P(5)], 2)  # num_heads form: unit 5 = layer 2, head 1
  assert (old[0]["layer"], old[0]["head"], old[0]["name"]) == (2, 1, "L2 H1")
