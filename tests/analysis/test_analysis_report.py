"""Order parameters and the profile report on small hand-built and random atoms."""
import json

import numpy as np
import pytest

from synergy_jax import results
from synergy_jax.analysis import order, ranking, report, surrogates


def _atoms(sts, rtr, seed=0):
  n = sts.shape[0]
  a = np.random.default_rng(seed).normal(size=(n, n, 16))
  a[..., ranking.ATOM_INDEX["sts"]] = sts
  a[..., ranking.ATOM_INDEX["rtr"]] = rtr
  a[np.arange(n), np.arange(n)] = np.nan
  return a


def test_order_parameters_hand_example():
  # 3 layers × 1 head. Pairs (0,1): s=1, r=1 → .5; (0,2): s=0, r=1 → 0; (1,2): s=3, r=1 → .75.
  sts = np.array([[0, 1, 0], [1, 0, 3], [0, 3, 0]], float)
  rtr = np.ones((3, 3))
  op = order.order_parameters(_atoms(sts, rtr), 3, 1)
  assert op["balance"] == pytest.approx((0.5 + 0 + 0.75) / 3)
  # Head balances: h0 = .25, h1 = .625, h2 = .375; middle layer (depth .5) = h1.
  assert op["core_contrast"] == pytest.approx(0.625 - (0.25 + 0.375) / 2)
  # Head synergy .5, 2, 1.5 vs redundancy 1, 1, 1 → 2 of 3 heads.
  assert op["syn_gt_red"] == pytest.approx(2 / 3)
  two = order.order_parameters(_atoms(sts[:2, :2], rtr[:2, :2]), 2, 1)
  assert np.isnan(two["core_contrast"])
  with pytest.raises(ValueError, match="3 layers × 2 heads"):
    order.order_parameters(_atoms(sts, rtr), 3, 2)


def test_profile_report_end_to_end(tmp_path):
  rng = np.random.default_rng(0)
  L, H = 4, 3
  n = L * H
  acts = rng.normal(size=(2, n, 60))
  m = rng.uniform(size=(n, n))
  atoms = _atoms(m + m.T, (m + m.T)[::-1, ::-1].copy())

  def est(acts, *, acts_y=None, tau=1, **_):
    return atoms + rng.normal(scale=0.1, size=atoms.shape)

  sur = surrogates.surrogate_test(acts, atoms,
                                  null="circular", n_surrogates=20, seed=0, estimator=est)
  out, table, hs = report.profile_report(atoms, L, H, acts=acts, surrogate=sur, n_perm=50)
  assert len(out["layer_profile"]) == L
  assert sorted(table["synergy_rank"]) == list(range(1, n + 1))
  np.testing.assert_array_equal(table["layer"] * H + table["head"], np.arange(n))
  assert set(out["graph"]) == {"synergy", "redundancy"}
  assert out["surrogates"]["n_surrogates"] == 20
  assert "sts_z" in table and "autocorr_lag1" in table
  results.write_json(tmp_path / "results.json", out)
  results.write_csv(tmp_path / "head_scores.csv", table)
  back = json.loads((tmp_path / "results.json").read_text())
  assert back["units"]["n_units"] == n
  assert len((tmp_path / "head_scores.csv").read_text().splitlines()) == n + 1

