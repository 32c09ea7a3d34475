"""Discrete (plug-in) ΦID against a case worked out by hand."""
import jax
import numpy as np
import pytest

import phiid_reference as ref
from synergy_jax import phiid

L = np.log(2.0)


def test_hand_computed_plug_in_case():
  """x = 0,0,1,1,0 and y = 0,1,1,0,0 with tau = 1: four equiprobable samples (x_p, y_p, x_f, y_f)
  = (0,0,0,1), (0,1,1,1), (1,1,1,0), (1,0,0,0).

  By counting: I(x_p;x_f) = I(y_p;y_f) = 0; I(x_p;y_f) = I(y_p;x_f) = log 2 (y_f = 1 − x_p and
  x_f = y_p); every MI with a pair on one side is log 2; I(past; future) = log 4 (each determines
  the other). MMI: Red(x_p,y_p→x_f) = min(0, log 2) = 0, likewise →y_f, x_f←, y_f←; Red(x_p,y_p →
  x_f y_f) = Red(x_f,y_f → x_p y_p) = log 2; double redundancy min(0, log2, log2, 0) = 0.
  Möbius inversion of that lattice (worked out on paper) leaves
  rts = xty = ytx = str = log 2, xts = yts = stx = sty = −log 2, sts = 2 log 2, others 0.
  """
  x = np.array([0, 0, 1, 1, 0])
  y = np.array([0, 1, 1, 0, 0])
  expected = dict.fromkeys(phiid.ATOMS, 0.0)
  expected.update(rts=L, xty=L, ytx=L, str=L, xts=-L, yts=-L, stx=-L, sty=-L, sts=2 * L)
  with jax.enable_x64(True):
    got_int = phiid.phiid(x, y, kind="discrete", num_states=2)
    got_bin = phiid.phiid(x.astype(float) * 3 + 1, y.astype(float), kind="discrete")
    acts = np.stack([x, y])[None]
    pairs = np.asarray(phiid.all_pairs(acts, kind="discrete", num_states=2))
  for name in phiid.ATOMS:
    assert float(got_int[name]) == pytest.approx(expected[name], abs=1e-12), name
    assert float(got_bin[name]) == pytest.approx(expected[name], abs=1e-12), name
    assert pairs[0, 1, phiid.ATOMS.index(name)] == pytest.approx(expected[name], abs=1e-12)


def test_binarised_at_the_mean():
  """Whole-series binarisation (discretise="series") against the plug-in reference."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal(200)
  y = np.roll(x, 1) + 0.5 * rng.standard_normal(200)
  bx, by = (x > x.mean()).astype(int), (y > y.mean()).astype(int)
  with jax.enable_x64(True):
    got = phiid.phiid(x, y, config=phiid.PhiidConfig(kind="discrete", discretise="series",
                                                      redundancy="ccs"))
  expected, _ = ref.reference_pair(bx, by, 1, "ccs", "discrete")
  np.testing.assert_allclose([float(got[n]) for n in phiid.ATOMS], expected, rtol=0, atol=1e-12)


def test_local_discrete_atoms_match_reference():
  rng = np.random.default_rng(1)
  x = rng.integers(0, 3, 150)
  y = (np.roll(x, 1) + rng.integers(0, 2, 150)) % 3
  for redundancy in ("mmi", "ccs"):
    with jax.enable_x64(True):
      loc = phiid.phiid(x, y, tau=2, kind="discrete", num_states=3, redundancy=redundancy,
                        local=True)
    _, expected = ref.reference_pair(x, y, 2, redundancy, "discrete")
    got = np.stack([np.asarray(loc[n]) for n in phiid.ATOMS], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
