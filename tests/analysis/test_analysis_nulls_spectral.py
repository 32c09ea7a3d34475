"""The spectral trial-shuffling null of pooled Gaussian MMI atoms equals the per-surrogate kernel and
one phiid.all_pairs call per surrogate (designs of odd and even prompt counts, τ = 1 and 2, a
half-used last pair, a degenerate unit), and says why where it does not apply."""
import dataclasses

import jax
import numpy as np
import pytest

from synergy_jax import phiid
from synergy_jax.analysis import nulls, nulls_spectral

STS, RTR = phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")
FIELDS = ("s1", "s2", "cnt", "ge", "null_head")


def _acts(p, n, t, seed=0, degenerate=True):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t)) + 3.0  # an offset: the centring must be right
  a[:, 1, 2:] += 0.8 * a[:, 0, :-2]  # a coupled pair at lag 2
  a[:, 2, 1:] += 0.7 * a[:, 2, :-1]  # an autocorrelated unit
  if degenerate:
    a[:, 4, :] = 1.5  # a constant unit: masked everywhere
  return a


def _observed(acts, config):
  o = np.asarray(phiid.all_pairs(acts, config=config, on_degenerate="mask"))[:, :, [STS, RTR]]
  return np.where(np.eye(acts.shape[1], dtype=bool)[..., None], np.nan, o)


def _tied_counts(acts, obs, design, config):
  """(U, U, K) number of surrogates whose value equals the observed one to 1e-9 (relative)."""
  out = np.zeros(obs.shape, int)
  for s in range(design.n_surrogates):
    y = nulls.surrogate_acts(acts, design, s)
    v = np.asarray(phiid.all_pairs(acts, acts_y=y, config=config,
                                   on_degenerate="mask"))[:, :, [STS, RTR]]
    out += np.abs(v - obs) <= 1e-9 * np.abs(obs)
  return out


def _close(a, b, rtol=1e-10, atol=1e-12, what=""):
  np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=what)
  np.testing.assert_allclose(np.nan_to_num(a), np.nan_to_num(b), rtol=rtol, atol=atol,
                             err_msg=what)


@pytest.mark.filterwarnings("ignore:.*masking")
@pytest.mark.parametrize("p,tau,n_sur", [(9, 1, 11), (8, 1, 13), (7, 2, 9)])
def test_spectral_equals_per_surrogate_kernel_and_all_pairs(p, tau, n_sur):
  with jax.enable_x64(True):
    acts = _acts(p, 6, 24)
    cfg = phiid.PhiidConfig(pool="concat", tau=tau)
    obs = _observed(acts, cfg)
    design = nulls.draw_design("trial", n_sur, p, 24, tau=tau, seed=3)
    assert len(design.orders) >= 2  # more surrogates than one relabelling gives
    spec = nulls.null_moments(acts, obs, design, cfg, spectral=True)
    kern = nulls.null_moments(acts, obs, design, cfg, spectral=False)
    slow = nulls.null_moments(acts, obs, design, cfg, force_slow=True)
    tied = _tied_counts(acts, obs, design, cfg)
  for f in FIELDS:
    a, b, c = getattr(spec, f), getattr(kern, f), getattr(slow, f)
    if f == "ge":
      # A surrogate whose value is the observed one (rtr set by within-unit MIs, which trial
      # shuffling keeps) is counted as ≥ or not by rounding; other counts must agree.
      assert not np.any(tied[..., 0])  # sts is never tied
      for got in (a, b):
        assert np.all(np.abs(got - c) <= tied), np.argwhere(np.abs(got - c) > tied)
      continue
    _close(a, b, what=f"{f} spectral vs per-surrogate kernel")
    _close(a, c, what=f"{f} spectral vs one all_pairs call per surrogate")
  assert spec.null_head.shape == (n_sur, 6, 2)
  assert np.all(np.isnan(spec.null_head[:, 4])) and np.all(spec.cnt[4] == 0)
  assert np.all(np.isfinite(spec.null_head[:, [0, 1, 2, 3, 5]]))
  assert spec.cnt[0, 1, 0] == n_sur
  sd = np.sqrt(spec.s2[0, 1] / spec.cnt[0, 1] - (spec.s1[0, 1] / spec.cnt[0, 1]) ** 2)
  assert np.all(sd > 0)


def test_float32_error_is_that_of_the_per_surrogate_kernel():
  """In float32 both kernels round; the spectral one must not round much worse (against float64)."""
  acts = _acts(12, 8, 40, seed=5, degenerate=False)
  cfg = phiid.PhiidConfig(pool="concat")
  design = nulls.draw_design("trial", 20, 12, 40, seed=0)
  with jax.enable_x64(True):
    obs = _observed(acts, cfg)
    exact = nulls.null_moments(acts, obs, design, cfg, spectral=False)
  spec = nulls.null_moments(acts, obs, design, cfg, spectral=True, dtype=np.float32)
  kern = nulls.null_moments(acts, obs, design, cfg, spectral=False, dtype=np.float32)
  for f in ("s1", "null_head"):
    e_spec = np.nanmax(np.abs(getattr(spec, f) - getattr(exact, f)))
    e_kern = np.nanmax(np.abs(getattr(kern, f) - getattr(exact, f)))
    assert np.isfinite(e_spec) and np.isfinite(e_kern)
    assert e_spec <= 10 * e_kern + 1e-6, (f, e_spec, e_kern)


def test_default_uses_spectral_only_where_it_applies(monkeypatch):
  calls = []
  real = nulls_spectral.moments
  monkeypatch.setattr(nulls_spectral, "moments", lambda *a, **k: calls.append(1) or real(*a, **k))
  with jax.enable_x64(True):
    acts = _acts(6, 5, 20, degenerate=False)
    cfg = phiid.PhiidConfig(pool="concat")
    obs = _observed(acts, cfg)
    trial = nulls.draw_design("trial", 6, 6, 20, seed=0)
    nulls.null_moments(acts, obs, trial, cfg)
    assert calls == [1]
    nulls.null_moments(acts, _observed(acts, phiid.PhiidConfig()), trial, phiid.PhiidConfig())
    nulls.null_moments(acts, obs, nulls.draw_design("pair_shift", 6, 6, 20, seed=0), cfg)
    assert calls == [1]  # pool="mean" and shift designs take the per-surrogate kernel
    monkeypatch.setattr(nulls_spectral, "SPECTRA_BUDGET_BYTES", 100)
    small = nulls.null_moments(acts, obs, trial, cfg)
    assert calls == [1]  # over budget: the per-surrogate kernel, same numbers
    monkeypatch.undo()
    again = nulls.null_moments(acts, obs, trial, cfg, spectral=True)
  for f in FIELDS:
    _close(getattr(small, f), getattr(again, f), what=f)


def test_why_not_names_the_reason():
  acts = _acts(6, 5, 20, degenerate=False)
  trial = nulls.draw_design("trial", 4, 6, 20, seed=0)
  obs = np.zeros((5, 5, 2))
  cases = [(phiid.PhiidConfig(), trial, "pool='concat'"),
           (phiid.PhiidConfig(pool="concat", redundancy="ccs"), trial, "Gaussian MMI"),
           (phiid.PhiidConfig(pool="concat"), nulls.draw_design("circular", 4, 6, 20), "trial"),
           (phiid.PhiidConfig(pool="concat"), dataclasses.replace(trial, rotations=None), "trial")]
  for cfg, design, msg in cases:
    with pytest.raises(ValueError, match=msg):
      nulls.null_moments(acts, obs, design, cfg, spectral=True)
  with pytest.raises(ValueError, match="force_slow"):
    nulls.null_moments(acts, obs, trial, phiid.PhiidConfig(pool="concat"), spectral=True,
                       force_slow=True)


def test_rotation_plan_describes_prompt_map():
  d = nulls.draw_design("trial", 25, 7, 30, seed=4)
  assert d.orders.shape == (5, 7) and d.rotations.shape == (25, 2)
  for s in range(25):
    order, k = d.orders[d.rotations[s, 0]], d.rotations[s, 1]
    for j in range(7):  # prompt order[j] meets the y of prompt order[j + k]
      assert d.prompt_map[s, order[j]] == order[(j + k) % 7]
  ks, rows = nulls_spectral.rotation_slots(d)
  assert ks.shape == (5, 3) and sorted(rows[rows >= 0].tolist()) == list(range(25))
  bad = dataclasses.replace(d, prompt_map=d.prompt_map[::-1].copy())
  with pytest.raises(ValueError, match="surrogate 0: prompt_map is not rotation"):
    nulls_spectral.rotation_slots(bad)
