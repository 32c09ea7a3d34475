"""Nothing silent: the minimum series length, dtype-aware unit checks, singular pairs, masks."""
import json
import re

import jax
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.phiid import PhiidConfig


def _acts(seed, p=2, n=5, t=30):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  a[..., 1:] += 0.4 * a[..., :-1]
  return a


LENGTH_CASES = [PhiidConfig(tau=3, preprocess="diff"),
                PhiidConfig(tau=2, kind="copula", preprocess="detrend", bias_correction=True),
                PhiidConfig(kind="discrete", discretise="quantile", num_states=3)]


@pytest.mark.parametrize("config", LENGTH_CASES)
def test_min_series_length_is_exact(config):
  """At T = min_series_length the atoms are finite; one step shorter every entry point raises
  naming T, τ and the kind."""
  t = phiid.min_series_length(config)
  acts = _acts(1, t=t)
  with jax.enable_x64(True):
    atoms = np.asarray(phiid.all_pairs(acts, config=config))
  assert np.isfinite(atoms[~np.eye(5, dtype=bool)]).all()
  short = acts[..., :t - 1]
  pattern = re.escape(f"T={t - 1} is too short for tau={config.tau} with kind={config.kind!r}")
  for call in (lambda: phiid.all_pairs(short, config=config),
               lambda: phiid.phiid(short[0, 0], short[0, 1], config=config),
               lambda: phiid.local_head_atoms(short, config),
               lambda: phiid.degenerate(short, config)):
    with pytest.raises(ValueError, match=pattern):
      call()


def test_gaussian_minimum_is_the_rank_bound():
  """Independently of our code: S lagged samples of 4 centred variables have rank ≤ S − 1, so
  the 4×4 correlation matrix is singular below S = 5 and full rank at S = 5."""
  rng = np.random.default_rng(2)
  for s, rank in [(4, 3), (5, 4)]:
    x, y = rng.standard_normal((2, s + 1))
    cols = np.stack([x[:-1], y[:-1], x[1:], y[1:]])
    assert np.linalg.matrix_rank(cols - cols.mean(axis=1, keepdims=True)) == rank
  assert phiid.min_series_length(PhiidConfig(tau=1)) == 6


@pytest.mark.parametrize("unit_values, reason", [
    (lambda r: 50.0 + 1e-6 * r, "near-constant past in float32"),
    (lambda r: 1e-30 * r, "past scale too small in float32"),
    (lambda r: 1e25 * r, "past scale too large in float32"),
])
def test_float32_collapse_is_named_and_float64_is_fine(unit_values, reason):
  acts = _acts(3)
  acts[1, 2] = unit_values(np.random.default_rng(4).standard_normal(30))
  problems = phiid.degenerate(acts, PhiidConfig(), dtype=np.float32)
  assert [(p.unit, p.prompt, p.reason) for p in problems] == [(2, 1, reason)]
  with pytest.raises(ValueError, match=re.escape(f"unit 2, prompt 1 of acts: {reason}")):
    phiid.all_pairs(acts.astype(np.float32), dtype=np.float32)
  with jax.enable_x64(True):
    assert phiid.degenerate(acts, PhiidConfig(), dtype=np.float64) == []
    atoms = np.asarray(phiid.all_pairs(acts, dtype=np.float64))
  assert np.isfinite(atoms[~np.eye(5, dtype=bool)]).all()


def test_collinear_and_lagged_copy_pairs_are_named_and_masked_exactly():
  acts = _acts(5)
  acts[0, 3] = -2.0 * acts[0, 1] + 7.0  # y = a x + b in prompt 0 only
  acts[1, 4, :-1] = acts[1, 0, 1:]  # unit 4 is unit 0 one step ahead in prompt 1: y_p = x_f
  problems = phiid.degenerate(acts, PhiidConfig(redundancy="ccs"))
  assert [(p.unit, p.partner, p.prompt) for p in problems] == [(0, 4, 1), (1, 3, 0)]
  assert all(p.reason.startswith("collinear") for p in problems)
  json.dumps([p.as_dict() for p in problems])  # JSON-ready for the run's degenerate record
  with pytest.raises(ValueError, match=re.escape("units 1 and 3 (pair), prompt 0")):
    phiid.all_pairs(acts)
  with pytest.warns(UserWarning, match=re.escape("pairs [(0, 4), (1, 3)]")):
    got = np.asarray(phiid.all_pairs(acts, on_degenerate="mask", block_size=2))
  nan = np.isnan(got).all(axis=-1)
  expected = np.eye(5, dtype=bool)
  for i, j in [(0, 4), (1, 3)]:
    expected[i, j] = expected[j, i] = True
  np.testing.assert_array_equal(nan, expected)
  assert np.isfinite(got[~expected]).all()


def test_pooled_pair_problem_has_no_prompt():
  acts = _acts(6)
  acts[:, 3] = 3.0 * acts[:, 1] - 1.0  # collinear in every prompt
  problems = phiid.degenerate(acts, PhiidConfig(pool="concat"))
  assert [(p.unit, p.partner, p.prompt) for p in problems] == [(1, 3, None)]


def test_constant_discrete_states_are_named_not_zero():
  """Whole-series binarisation can leave a lagged vector constant (its MIs would be exactly 0)."""
  acts = _acts(7)
  acts[0, 2] = np.r_[np.linspace(0.0, 1.0, 29), 100.0]  # past below the series mean: states 0
  config = PhiidConfig(kind="discrete", discretise="series")
  problems = phiid.degenerate(acts, config)
  assert [(p.unit, p.prompt, p.reason) for p in problems] == [(2, 0, "constant past states")]


def test_phiid_discrete_rejects_states_outside_the_alphabet():
  x = np.array([0, 1, 2, 1, 0, 2, 1, 0])
  y = np.array([1, 0, 2, 3, 0, 1, 2, 0])  # 3 is outside 0..2
  with pytest.raises(ValueError, match=re.escape("trg: values outside the integer states")):
    phiid.phiid(x, y, kind="discrete", num_states=3)
  with pytest.raises(ValueError, match=re.escape("unit 1, prompt 0 of acts: values outside")):
    phiid.all_pairs(np.stack([x, y])[None], kind="discrete", num_states=3)
  # Inside a jit the values cannot be inspected: the atoms are NaN, never a wrong number.
  f = jax.jit(lambda a, b: phiid.phiid(a, b, kind="discrete", num_states=3)["sts"])
  assert np.isnan(float(f(x, y)))


def test_phiid_constant_series_raises_or_masks():
  x = np.linspace(0.0, 1.0, 12) ** 2
  y = np.full(12, 2.0)
  with pytest.raises(ValueError, match=re.escape("trg: constant past")):
    phiid.phiid(x, y)
  with pytest.warns(UserWarning, match="trg: constant past"):
    out = phiid.phiid(x, y, on_degenerate="mask")
  assert all(np.isnan(float(v)) for v in out.values())
