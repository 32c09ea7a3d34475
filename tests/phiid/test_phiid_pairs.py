"""all_pairs against the plain per-pair NumPy reference, sharding, masks and errors."""
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import phiid_reference as ref
from synergy_jax import phiid


def planted(seed=0, num_prompts=2, num_steps=40):
  """(P, 6, T) series with planted structure (unit: what it is).

  0: white noise; 1: lagged copy of 0 plus noise (coupling); 2: product of 0 and 1 plus noise;
  3: AR(1) with φ = 0.8; 4: near-copy of 3 (noise 0.1 of its scale); 5: noise on a large offset
  (float32 standardisation stress).
  """
  rng = np.random.default_rng(seed)
  p, t = num_prompts, num_steps
  a = rng.standard_normal((p, 6, t))
  a[:, 1] += 0.8 * np.roll(a[:, 0], 1, axis=-1)
  a[:, 2] = a[:, 0] * a[:, 1] + 0.3 * a[:, 2]
  for s in range(1, t):
    a[:, 3, s] += 0.8 * a[:, 3, s - 1]
  a[:, 4] = a[:, 3] + 0.1 * a[:, 3].std() * a[:, 4]
  a[:, 5] = 50.0 + 0.5 * a[:, 5]
  return a


@pytest.mark.parametrize("tau", [1, 2])
@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_matches_reference_float64(tau, redundancy):
  acts = planted(tau)
  expected = ref.reference_all_pairs(acts, tau, redundancy)
  with jax.enable_x64(True):
    # block_size=2: three row blocks, so the half-grid ("band") path with x/y exchange is used.
    # (The full-grid path is checked by the float32, concat and acts_y tests.)
    got = np.asarray(phiid.all_pairs(acts, tau=tau, redundancy=redundancy, block_size=2))
  assert got.dtype == np.float64
  np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def pair_condition(acts, tau):
  """(U, U) condition number of each pair's 4 × 4 correlation matrix of (x past, y past,
  x future, y future), prompts pooled (NumPy, float64; the diagonal is 1). Every pair's matrix is
  a 4 × 4 block of one (2U × 2U) correlation matrix of all units' pasts and futures."""
  u = acts.shape[1]
  past = acts[:, :, :-tau].transpose(1, 0, 2).reshape(u, -1)
  future = acts[:, :, tau:].transpose(1, 0, 2).reshape(u, -1)
  c = np.corrcoef(np.concatenate([past, future]))  # (2U, 2U)
  i, j = np.meshgrid(np.arange(u), np.arange(u), indexing="ij")
  idx = np.stack([i, j, i + u, j + u], axis=-1)  # (U, U, 4): x past, y past, x future, y future
  kappa = np.linalg.cond(c[idx[..., :, None], idx[..., None, :]])  # (U, U)
  return np.where(np.eye(u, dtype=bool), 1.0, kappa)


@pytest.mark.parametrize("tau", [1, 2])
@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_matches_reference_float32(tau, redundancy):
  """float32: every atom within 200 · eps32 · κ of the pair's largest |atom| (atoms can be
  exactly 0), κ the condition number of the pair's joint correlation matrix: a float32
  solution's error grows with κ (units 3 and 4 are near-copies, κ ≈ 10²), and the constant covers
  the float32 standardisation of unit 5 (offset 100 sd) and the sums over samples. On
  well-conditioned pairs this is 2.4e-5, four times tighter than the former flat 1e-4 (which the
  pair (3, 4) at tau = 2 exceeded on an AVX2 machine: 1.06e-4, κ-scaled 16 · eps32 · κ)."""
  acts = planted(10 + tau)
  expected = ref.reference_all_pairs(acts, tau, redundancy)
  got = np.asarray(phiid.all_pairs(acts.astype(np.float32), tau=tau, redundancy=redundancy))
  assert got.dtype == np.float32
  off = ~np.eye(6, dtype=bool)
  err = np.abs(got - expected)[off]  # (pairs, 16)
  scale = np.abs(expected[off]).max(axis=-1, keepdims=True)
  bound = 200 * np.finfo(np.float32).eps * pair_condition(acts, tau)[off][:, None] * scale
  assert np.all(np.isfinite(got[off])) and np.all(err <= bound), np.max(err / bound)


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_concat_pool_matches_reference(redundancy):
  acts = planted(3, num_prompts=3, num_steps=20)
  expected = ref.reference_all_pairs(acts, 2, redundancy, pool="concat")
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(acts, tau=2, redundancy=redundancy, pool="concat"))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_acts_y_computes_diagonal_and_matches_reference():
  acts = planted(4)
  shifted = np.roll(acts, 7, axis=-1)  # circular-shift surrogate
  expected = ref.reference_all_pairs(acts, 1, "mmi", acts_y=shifted)
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(acts, acts_y=shifted, block_size=5))
  assert not np.isnan(got).any()
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def _swap_permutation():
  """Index map: atom "atb" with x and y exchanged in both past and future."""
  swap = {"r": "r", "x": "y", "y": "x", "s": "s"}
  return [phiid.ATOMS.index(swap[n[0]] + "t" + swap[n[2]]) for n in phiid.ATOMS]


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_transpose_swaps_sources(redundancy):
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(planted(5), redundancy=redundancy, block_size=6))
  perm = _swap_permutation()
  np.testing.assert_allclose(got.transpose(1, 0, 2)[..., perm], got, rtol=0, atol=1e-12)


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_sharded_equals_one_device(redundancy):
  assert len(jax.devices()) == 8, "tests/conftest.py should give 8 simulated CPU devices"
  acts = planted(6, num_steps=30)
  mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(4, 2), ("a", "b"))
  with jax.enable_x64(True):
    one = np.asarray(phiid.all_pairs(acts, redundancy=redundancy, block_size=1))
    sharded = np.asarray(phiid.all_pairs(acts, redundancy=redundancy, block_size=1, mesh=mesh))
    auto = np.asarray(phiid.all_pairs(acts, redundancy=redundancy, block_size=1, mesh="auto"))
  if redundancy == "mmi":
    np.testing.assert_array_equal(sharded, one)
    np.testing.assert_array_equal(auto, one)
  else:
    # The per-sample sums over S can be split over threads differently per device (XLA CPU
    # partitions loop fusions by thread count, and the vector width sets the summation tree), so
    # CCS agrees to the rounding of those sums: S = P (T - tau) = 58 local terms of at most a few
    # nats each, i.e. |error| <= S * eps64 * max|term| ~ 58 * 2.2e-16 * 5 = 6e-14 in absolute
    # terms whatever an atom's own size (seen: 2e-16 on AVX-512, 2.3e-15 on AVX2 for atoms of
    # 0.004-0.01, where a relative tolerance alone is meaningless).
    np.testing.assert_array_equal(np.isnan(sharded), np.isnan(one))
    np.testing.assert_allclose(sharded, one, rtol=0, atol=1e-13, equal_nan=True)
    np.testing.assert_allclose(auto, one, rtol=0, atol=1e-13, equal_nan=True)


def test_inside_user_jit_matches_eager():
  acts = jnp.asarray(planted(7), jnp.float32)

  @jax.jit
  def mean_sts(a):
    atoms = phiid.all_pairs(a, tau=1)
    return jnp.nanmean(atoms[..., phiid.ATOMS.index("sts")], axis=1)

  eager = np.nanmean(np.asarray(phiid.all_pairs(acts))[..., phiid.ATOMS.index("sts")], axis=1)
  np.testing.assert_allclose(np.asarray(mean_sts(acts)), eager, rtol=1e-6)


def test_inside_jit_degenerate_units_become_nan():
  acts = planted(8).astype(np.float32)
  acts[1, 2] = 3.0
  got = np.asarray(jax.jit(phiid.all_pairs)(acts))
  assert np.isnan(got[2]).all() and np.isnan(got[:, 2]).all()
  assert np.isfinite(got[0, 1]).all()


def test_discrete_all_pairs_matches_reference():
  acts = planted(9, num_steps=60)
  binary = (acts > acts.mean(axis=-1, keepdims=True)).astype(np.int64)
  for redundancy in ("mmi", "ccs"):
    expected = np.full((6, 6, 16), np.nan)
    for i in range(6):
      for j in range(6):
        if i != j:
          expected[i, j] = np.mean([ref.reference_pair(binary[q, i], binary[q, j], 1, redundancy,
                                                       "discrete")[0] for q in range(2)], axis=0)
    series = phiid.PhiidConfig(kind="discrete", discretise="series", redundancy=redundancy)
    with jax.enable_x64(True):
      got = np.asarray(phiid.all_pairs(acts, config=series))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  with jax.enable_x64(True):  # integer states given directly
    ints = np.asarray(phiid.all_pairs(binary, kind="discrete", redundancy="ccs", num_states=2))
  np.testing.assert_allclose(ints, expected, rtol=0, atol=1e-12)


def test_discrete_three_states_matches_reference():
  rng = np.random.default_rng(3)
  states = rng.integers(0, 3, size=(1, 3, 80))
  states[0, 1, 1:] = states[0, 0, :-1]  # unit 1 copies unit 0 one step later
  with jax.enable_x64(True):
    got = np.asarray(phiid.all_pairs(states, kind="discrete", num_states=3))
  for i, j in [(0, 1), (1, 2), (2, 0)]:
    expected = ref.reference_pair(states[0, i], states[0, j], 1, "mmi", "discrete")[0]
    np.testing.assert_allclose(got[i, j], expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- degenerate input and errors


def test_constant_unit_raises_naming_unit_and_prompt():
  acts = planted(0)
  acts[1, 4] = 2.5
  with pytest.raises(ValueError, match=r"unit 4, prompt 1 of acts: constant past"):
    phiid.all_pairs(acts)


def test_nan_unit_raises_naming_unit_and_prompt():
  acts = planted(0)
  acts[0, 2, 5] = np.inf
  with pytest.raises(ValueError, match=r"unit 2, prompt 0 of acts: nan/inf"):
    phiid.all_pairs(acts)


def test_constant_future_only_is_caught():
  acts = planted(0)
  acts[0, 3, 1:] = 1.0  # the past x[:-1] varies, the future x[1:] does not
  problems = phiid.check_units(acts)
  assert [(p.unit, p.prompt, p.reason) for p in problems] == [(3, 0, "constant future")]


def test_mask_mode_returns_nan_rows_and_columns_and_warns():
  acts = planted(0)
  acts[1, 4] = 2.5
  acts[0, 1, 3] = np.nan
  with pytest.warns(UserWarning, match=re.escape("masking units [1, 4]")):
    got = np.asarray(phiid.all_pairs(acts, on_degenerate="mask"))
  for u in (1, 4):
    assert np.isnan(got[u]).all() and np.isnan(got[:, u]).all()
  keep = [0, 2, 3, 5]
  clean = np.asarray(phiid.all_pairs(acts[:, keep]))
  # the kept pairs are the same computation over a different grid (other blocks, other
  # summation order): equal to float32 rounding of the pair's terms, judged against the pair's
  # largest |atom| (atoms near 0 differ by ~3e-8 absolute, 1.7e-4 relative, on AVX2)
  sub = got[np.ix_(keep, keep)]
  np.testing.assert_array_equal(np.isnan(sub), np.isnan(clean))
  off = ~np.eye(len(keep), dtype=bool)
  scale = np.abs(clean[off]).max(axis=-1, keepdims=True)
  assert np.all(np.abs(sub[off] - clean[off]) <= 64 * np.finfo(np.float32).eps * scale)
  # and exactly the same logic in float64, where reordering costs ~1e-16
  with jax.enable_x64(True), pytest.warns(UserWarning, match=re.escape("masking units [1, 4]")):
    got64 = np.asarray(phiid.all_pairs(acts, on_degenerate="mask"))
  with jax.enable_x64(True):
    clean64 = np.asarray(phiid.all_pairs(acts[:, keep]))
  np.testing.assert_allclose(got64[np.ix_(keep, keep)], clean64, rtol=0, atol=1e-13,
                             equal_nan=True)
  assert [(p.unit, p.prompt) for p in phiid.check_units(acts)] == [(1, 0), (4, 1)]


def test_acts_y_problem_names_acts_y():
  acts = planted(0)
  other = planted(1)
  other[0, 5] = 0.0
  with pytest.raises(ValueError, match=r"unit 5, prompt 0 of acts_y"):
    phiid.all_pairs(acts, acts_y=other)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"tau": 0}, "tau=0"),
    ({"tau": 38}, "T=40 is too short for tau=38"),
    ({"tau": 1.0}, "tau=1.0"),
    ({"redundancy": "pid"}, "redundancy='pid'"),
    ({"kind": "knn"}, "kind='knn'"),
    ({"pool": "sum"}, "pool='sum'"),
    ({"on_degenerate": "ignore"}, "on_degenerate='ignore'"),
    ({"block_size": 0}, "block_size=0"),
    ({"mesh": "all"}, "mesh='all'"),
    ({"acts_y": np.zeros((2, 5, 40))}, "acts_y has shape"),
    ({"num_states": 2}, "num_states=2 only applies"),
])
def test_bad_arguments_raise(kwargs, pattern):
  with pytest.raises(ValueError, match=re.escape(pattern)):
    phiid.all_pairs(planted(0), **kwargs)


def test_non_3d_raises():
  with pytest.raises(ValueError, match=re.escape("acts must be 3-D")):
    phiid.all_pairs(np.zeros((6, 40)))


def test_discrete_states_out_of_range_raise():
  states = np.zeros((1, 2, 10), dtype=np.int64)
  states[0, 0, ::2] = 1
  states[0, 1, ::3] = 1
  states[0, 1, 4] = 4
  with pytest.raises(ValueError, match=r"unit 1, prompt 0 of acts: values outside the integer"):
    phiid.all_pairs(states, kind="discrete", num_states=3)


def test_no_warning_for_clean_input():
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    phiid.all_pairs(planted(0), on_degenerate="mask")


def _local_mis_both_ways(acts, dtype):
  """(gaussian.local_mis, blocks_ccs.local_mis) of every pair of (U, T) ``acts`` in ``dtype``:
  dicts name → (U, U, S)."""
  from synergy_jax.phiid import blocks_ccs, gaussian, transforms
  past, future = (transforms.standardise(jnp.asarray(v, dtype)) for v in
                  transforms.lag(jnp.asarray(acts, dtype), 1))
  zs = (past[:, None], past[None], future[:, None], future[None])
  corrs = gaussian.correlations(zs)
  old = gaussian.local_mis(corrs, zs)
  terms = blocks_ccs.pair_terms(corrs, gaussian.average_mis(*corrs), (past, future),
                                (past, future))
  new = {k: jnp.moveaxis(v, 0, -1) for k, v in blocks_ccs.local_mis(terms).items()}
  shape = (past.shape[0], past.shape[0], past.shape[1])  # xx, yy depend on one unit only
  return ({k: np.broadcast_to(np.asarray(v), shape) for k, v in old.items()},
          {k: np.broadcast_to(np.asarray(v), shape) for k, v in new.items()})


def test_ccs_chain_local_mis_equal_forward_substitution():
  """blocks_ccs's shared-chain local MIs equal gaussian.local_mis (per-sample forward
  substitution of every sub-matrix) at every pair and sample (float64), and in float32 they are
  no further from the float64 values than the forward substitution is (near-copies included)."""
  acts = planted(7, num_prompts=1, num_steps=60)[0]  # (6, T)
  off = ~np.eye(6, dtype=bool)
  with jax.enable_x64(True):
    truth, new64 = _local_mis_both_ways(acts, np.float64)
    old32, new32 = _local_mis_both_ways(acts, np.float32)
  for name, want in truth.items():
    assert new64[name].dtype == np.float64 and new32[name].dtype == np.float32
    assert np.isfinite(want[off]).all() and np.isfinite(new64[name][off]).all(), name
    assert np.isfinite(new32[name][off]).all(), name
    scale = np.abs(want[off]).max()
    np.testing.assert_allclose(new64[name][off], want[off], rtol=0, atol=1e-12 * scale,
                               err_msg=name)
    err_new = np.abs(new32[name][off] - want[off]).max()
    err_old = np.abs(old32[name][off] - want[off]).max()
    assert err_new <= 2 * err_old + 1e-6 * scale, (name, err_new, err_old)
