"""Per-prompt estimates and the prompt bootstrap: per-prompt pair values equal one-prompt
all_pairs calls and average to the pool="mean" atoms; scores equal the atoms' head scores;
intervals behave as a bootstrap must."""
import jax
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import ranking, uncertainty
from synergy_jax.phiid import lattice

IDX = [lattice.ATOMS.index("sts"), lattice.ATOMS.index("rtr")]


def _acts(p=8, n=6, t=40, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  a[:, 2, 1:] += 0.8 * a[:, 1, :-1]
  return a


def test_prompt_pairs_equal_one_prompt_calls_and_average_to_atoms():
  with jax.enable_x64(True):
    acts = _acts()
    cfg = phiid.PhiidConfig()
    pp = uncertainty.prompt_pairs(acts, cfg)
    one = np.stack([np.asarray(phiid.all_pairs(acts[q:q + 1], config=cfg))[:, :, IDX]
                    for q in range(acts.shape[0])])
    full = np.asarray(phiid.all_pairs(acts, config=cfg))
  assert pp.shape == (8, 6, 6, 2) and pp.dtype == np.float32
  off = ~np.eye(6, dtype=bool)
  np.testing.assert_allclose(pp[:, off], one[:, off], rtol=1e-6, atol=1e-7)
  assert np.all(np.isnan(pp[:, ~off]))
  np.testing.assert_allclose(uncertainty.prompt_mean(pp)[off], full[:, :, IDX][off], rtol=1e-5,
                             atol=1e-6)


def test_scores_from_pairs_match_head_scores():
  acts = _acts()
  atoms = np.asarray(phiid.all_pairs(acts), np.float64)
  hs = ranking.head_scores(atoms)
  sc = uncertainty.scores_from_pairs(atoms[:, :, IDX])
  np.testing.assert_allclose(sc["rank_difference"], hs.rank_score)
  np.testing.assert_allclose(sc["balance"], hs.balance)
  assert "excess" not in sc
  null = np.zeros((6, 6, 2))
  null[..., 0] = 10.0  # a constant null shift moves no rank
  np.testing.assert_allclose(uncertainty.scores_from_pairs(atoms[:, :, IDX], null)["excess"],
                             hs.rank_score)


def test_layer_profile_ci_and_reliability():
  rng = np.random.default_rng(1)
  layers, heads, p = 3, 2, 12
  n = layers * heads
  base = rng.uniform(0.1, 1.0, size=(n, n, 2))
  identical = np.broadcast_to(base, (p, n, n, 2)).copy()
  identical[:, np.arange(n), np.arange(n)] = np.nan
  ci = uncertainty.layer_profile_ci(identical, layers, heads, n_boot=30, seed=0)
  for s in ("rank_difference", "balance"):  # every resample is the same: zero-width intervals
    np.testing.assert_allclose(ci[s].low, ci[s].estimate)
    np.testing.assert_allclose(ci[s].high, ci[s].estimate)
    assert np.all(np.isfinite(ci[s].estimate))
  assert "excess" not in ci
  noisy = identical + 0.3 * rng.standard_normal(identical.shape)
  ci = uncertainty.layer_profile_ci(noisy, layers, heads, null_mean=np.zeros((n, n, 2)),
                                    n_boot=200, seed=0)
  for s in ("rank_difference", "balance", "excess"):
    c = ci[s]
    assert c.samples.shape == (200, layers) and np.all(c.low <= c.high)
    assert np.all(c.high - c.low > 0) and c.to_dict()["n_boot"] == 200
  rel = uncertainty.reliability(identical, n_splits=4)
  assert rel["rank_difference"]["rho"] == pytest.approx(1.0)
  with pytest.raises(ValueError, match=r"\(P, 6, 6, 2\)"):
    uncertainty.layer_profile_ci(noisy[:, :5, :5], layers, heads)
