"""Property-based tests: shapes, dtypes, batch axes, jit/vmap and argument errors."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from synergy_jax import phiid

# Few examples over a small set of lengths: every new shape is a new compilation on a 2-core CI box.
SETTINGS = settings(max_examples=5, deadline=None, derandomize=True)


def _data(seed, shape):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal(shape)
  return a + 0.5 * np.roll(a, 1, axis=-1)


@SETTINGS
@given(batch=st.lists(st.integers(1, 2), min_size=0, max_size=2), t=st.sampled_from([8, 20]),
       tau=st.integers(1, 3), redundancy=st.sampled_from(["mmi", "ccs"]),
       kind=st.sampled_from(["gaussian", "discrete"]), seed=st.integers(0, 1000))
def test_phiid_shapes_and_batch_axes(batch, t, tau, redundancy, kind, seed):
  shape = tuple(batch) + (t,)
  x, y = _data(seed, shape), _data(seed + 1, shape)
  out = phiid.phiid(x, y, tau=tau, redundancy=redundancy, kind=kind)
  assert tuple(out) == phiid.ATOMS
  for v in out.values():
    assert v.shape == tuple(batch) and v.dtype == jnp.float32
  loc = phiid.phiid(x, y, tau=tau, redundancy=redundancy, kind=kind, local=True)
  for v in loc.values():
    assert v.shape == tuple(batch) + (t - tau,)
  # The batch is the same as a loop over its members.
  flat_x, flat_y = x.reshape(-1, t), y.reshape(-1, t)
  for k in range(flat_x.shape[0]):
    one = phiid.phiid(flat_x[k], flat_y[k], tau=tau, redundancy=redundancy, kind=kind)
    for name in phiid.ATOMS:
      np.testing.assert_allclose(np.asarray(out[name]).reshape(-1)[k], np.asarray(one[name]),
                                 rtol=1e-4, atol=1e-5)


def test_phiid_jit_and_vmap_agree_with_eager():
  x, y = _data(0, (4, 50)), _data(1, (4, 50))
  f = lambda a, b: phiid.phiid(a, b, tau=2, redundancy="ccs")
  eager = f(x, y)
  jitted = jax.jit(f)(x, y)
  vmapped = jax.vmap(f)(x, y)
  for name in phiid.ATOMS:
    np.testing.assert_allclose(np.asarray(jitted[name]), np.asarray(eager[name]), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(vmapped[name]), np.asarray(eager[name]), rtol=1e-5,
                               atol=1e-6)


def test_phiid_float64_under_x64():
  x, y = _data(0, (30,)), _data(1, (30,))
  with jax.enable_x64(True):
    out = phiid.phiid(x, y)
    assert all(v.dtype == jnp.float64 for v in out.values())
  assert all(v.dtype == jnp.float32 for v in phiid.phiid(x, y).values())


@SETTINGS
@given(p=st.integers(1, 2), n=st.integers(2, 4), t=st.sampled_from([8, 12]), tau=st.integers(1, 3),
       redundancy=st.sampled_from(["mmi", "ccs"]), pool=st.sampled_from(["mean", "concat"]),
       block=st.integers(1, 6), seed=st.integers(0, 1000))
def test_all_pairs_shape_dtype_diagonal(p, n, t, tau, redundancy, pool, block, seed):
  acts = _data(seed, (p, n, t))
  out = phiid.all_pairs(acts, tau=tau, redundancy=redundancy, pool=pool, block_size=block)
  assert out.shape == (n, n, 16) and out.dtype == jnp.float32
  out = np.asarray(out)
  assert np.isnan(out[np.arange(n), np.arange(n)]).all()
  off = ~np.eye(n, dtype=bool)
  assert np.isfinite(out[off]).all()
  # Independent of the block size.
  other = np.asarray(phiid.all_pairs(acts, tau=tau, redundancy=redundancy, pool=pool,
                                     block_size=n))
  np.testing.assert_allclose(out[off], other[off], rtol=1e-5, atol=1e-6)


@SETTINGS
@given(ndim=st.sampled_from([1, 2, 4]), seed=st.integers(0, 100))
def test_all_pairs_rejects_wrong_rank(ndim, seed):
  acts = _data(seed, (2,) * (ndim - 1) + (12,))
  with pytest.raises(ValueError, match=re.escape("must be 3-D")):
    phiid.all_pairs(acts)


@SETTINGS
@given(t=st.integers(1, 10), tau=st.integers(-2, 6))
def test_short_series_and_bad_tau_raise(t, tau):
  acts = _data(0, (1, 2, t))
  # Gaussian: T ≥ τ + 5 (phiid.min_series_length; 5 lagged samples for a full-rank 4×4 matrix).
  if tau >= 1 and t >= tau + 5:
    assert phiid.all_pairs(acts, tau=tau).shape == (2, 2, 16)
    return
  expected = f"tau={tau}" if tau < 1 else f"T={t} is too short for tau={tau}"
  with pytest.raises(ValueError, match=re.escape(expected)):
    phiid.all_pairs(acts, tau=tau)
  with pytest.raises(ValueError, match=re.escape(expected)):
    phiid.phiid(acts[0, 0], acts[0, 1], tau=tau)


@SETTINGS
@given(unit=st.integers(0, 3), prompt=st.integers(0, 2), step=st.integers(0, 9),
       bad=st.sampled_from([np.nan, np.inf, -np.inf, "constant"]))
def test_degenerate_unit_error_names_unit_and_prompt(unit, prompt, step, bad):
  acts = _data(unit + 10 * prompt, (3, 4, 10))
  if bad == "constant":
    acts[prompt, unit] = 1.5
    reason = "constant past"
  else:
    acts[prompt, unit, step] = bad
    reason = "nan/inf"
  with pytest.raises(ValueError, match=re.escape(f"unit {unit}, prompt {prompt} of acts: {reason}")):
    phiid.all_pairs(acts)
  problems = phiid.check_units(acts)
  assert [(p.unit, p.prompt, p.reason) for p in problems] == [(unit, prompt, reason)]


def test_phiid_argument_errors():
  x = np.arange(10.0)
  for kwargs, pattern in [({"redundancy": "x"}, "redundancy='x'"), ({"kind": "y"}, "kind='y'"),
                          ({"num_states": 3}, "num_states=3 only applies")]:
    with pytest.raises(ValueError, match=re.escape(pattern)):
      phiid.phiid(x, x[::-1].copy(), **kwargs)
  with pytest.raises(ValueError, match="differ"):
    phiid.phiid(x, x[:9])
