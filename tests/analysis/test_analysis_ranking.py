"""Per-head scores, rank differences, balance and unit orders against hand-computed values."""
import numpy as np
import pytest
import scipy.stats

from synergy_jax.analysis import ranking, stats


def _atoms(sts, rtr):
  """(N, N, 16) atoms with given sts and rtr matrices, other atoms random, diagonal NaN."""
  n = sts.shape[0]
  a = np.random.default_rng(0).normal(size=(n, n, 16))
  a[:, :, ranking.ATOM_INDEX["sts"]] = sts
  a[:, :, ranking.ATOM_INDEX["rtr"]] = rtr
  a[np.arange(n), np.arange(n)] = np.nan
  return a


def test_atom_names_are_phiids_not_a_copy():
  from synergy_jax import phiid
  assert ranking.ATOMS is phiid.ATOMS
  assert [ranking.ATOM_INDEX[a] for a in ("rtr", "xtx", "sts")] == [0, 5, 15]


def test_rankdata_matches_scipy_with_ties_and_nan():
  x = np.array([3.0, 1.0, np.nan, 3.0, 2.0, 3.0, -1.0])
  r = stats.rankdata(x)
  ok = ~np.isnan(x)
  np.testing.assert_allclose(r[ok], scipy.stats.rankdata(x[ok], method="average"))
  assert np.isnan(r[2])
  # Hand check: -1 → 1, 1 → 2, 2 → 3, three 3s share ranks 4, 5, 6 → 5.
  np.testing.assert_allclose(r[ok], [5, 2, 5, 3, 5, 1])


def test_head_scores_hand_example():
  sts = np.array([[0, 1.0, 2.0], [1.0, 0, 4.0], [2.0, 4.0, 0]])
  rtr = np.array([[0, 3.0, 1.0], [3.0, 0, 0.0], [1.0, 0.0, 0]])
  hs = ranking.head_scores(_atoms(sts, rtr))
  np.testing.assert_allclose(hs.synergy, [1.5, 2.5, 3.0])
  np.testing.assert_allclose(hs.redundancy, [2.0, 1.5, 0.5])
  np.testing.assert_allclose(hs.synergy_rank, [1, 2, 3])
  np.testing.assert_allclose(hs.redundancy_rank, [3, 2, 1])
  np.testing.assert_allclose(hs.rank_score, [-2, 0, 2])
  # Balance per pair: (0,1): 1/4, (0,2): 2/3, (1,2): 4/4 = 1.
  np.testing.assert_allclose(hs.balance, [(0.25 + 2 / 3) / 2, (0.25 + 1) / 2, (2 / 3 + 1) / 2])
  assert hs.excluded == ()


def test_asymmetric_matrix_averages_both_roles():
  sts = np.array([[0, 1.0], [3.0, 0]])
  hs = ranking.head_scores(_atoms(sts, np.ones((2, 2))))
  np.testing.assert_allclose(hs.synergy, [2.0, 2.0])


def test_nan_units_excluded_and_reported():
  n = 4
  sts = np.arange(16, dtype=float).reshape(4, 4)
  sts = sts + sts.T
  rtr = np.ones((n, n))
  rtr[2, :] = np.nan
  rtr[:, 2] = np.nan
  hs = ranking.head_scores(_atoms(sts, rtr))
  assert hs.excluded == (2,)
  assert np.isnan(hs.rank_score[2])
  ok = [0, 1, 3]
  assert sorted(hs.synergy_rank[ok]) == [1, 2, 3]  # ranks among included units only


def test_rank_score_is_permutation_difference():
  rng = np.random.default_rng(1)
  s, r = rng.normal(size=20), rng.normal(size=20)
  score, rs, rr, excl = ranking.rank_difference(s, r)
  assert sorted(rs) == list(range(1, 21)) and sorted(rr) == list(range(1, 21))
  np.testing.assert_allclose(score, scipy.stats.rankdata(s) - scipy.stats.rankdata(r))


def test_pair_balance_negative_rules():
  sts = np.array([[0, -0.5, 1.0], [-0.5, 0, 0.0], [1.0, 0.0, 0]])
  rtr = np.array([[0, 1.0, 1.0], [1.0, 0, 0.0], [1.0, 0.0, 0]])
  a = _atoms(sts, rtr)
  b = ranking.pair_balance(a, negative="clip")
  assert b[0, 1] == 0.0 and b[0, 2] == 0.5
  assert np.isnan(b[1, 2])  # no synergy and no redundancy: undefined, not 0 or 0.5
  assert np.all(np.isnan(np.diag(b)))
  bn = ranking.pair_balance(a, negative="nan")
  assert np.isnan(bn[0, 1]) and bn[0, 2] == 0.5
  with pytest.raises(ValueError, match="negative"):
    ranking.pair_balance(a, negative="abs")


def test_orders_and_selection():
  score = np.array([0.5, np.nan, 2.0, 0.5, -1.0])
  np.testing.assert_array_equal(ranking.synergistic_order(score), [2, 0, 3, 4, 1])
  np.testing.assert_array_equal(ranking.redundant_order(score), [4, 0, 3, 2, 1])
  ro = ranking.random_orders(5, 3, seed=7)
  assert ro.shape == (3, 5)
  for row in ro:
    assert sorted(row) == list(range(5))
  np.testing.assert_array_equal(ro, ranking.random_orders(5, 3, seed=7))
  assert not np.array_equal(ro, ranking.random_orders(5, 3, seed=8))
  assert ranking.n_selected(0.5, 5) == 3  # halves round up
  assert ranking.n_selected(0.25, 10) == 3
  assert ranking.n_selected(0.0, 7) == 0 and ranking.n_selected(1.0, 7) == 7
  with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
    ranking.n_selected(1.5, 2)


def test_bad_shape_raises():
  with pytest.raises(ValueError, match="U, U, 16"):
    ranking.head_scores(np.zeros((3, 4, 16)))
