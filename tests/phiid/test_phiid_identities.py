"""Identities of the ΦID lattice, the analytic VAR(1) case and the independent-AR(1) pitfall."""
import jax
import numpy as np
import pytest
from scipy import linalg
from scipy import signal

import phiid_reference as ref
from synergy_jax import phiid

ATOMS = phiid.ATOMS
SWAP = {"r": "r", "x": "y", "y": "x", "s": "s"}


def _series(seed, t=400):
  """A coupled nonlinear pair: y follows x with a lag and a product term."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal(t)
  for s in range(1, t):
    x[s] += 0.5 * x[s - 1]
  y = 0.7 * np.roll(x, 1) + 0.4 * x * np.roll(x, 2) + rng.standard_normal(t)
  return x, y


def _vec(d):
  return np.array([float(d[name]) for name in ATOMS])


def _mi_from_cov(cov, a, b):
  """Gaussian MI (nats) between index sets a and b of a covariance matrix."""
  ld = lambda idx: np.linalg.slogdet(cov[np.ix_(idx, idx)])[1]
  return 0.5 * (ld(a) + ld(b) - ld(a + b))


PAST = {"x": [0], "y": [1], "s": [0, 1]}
FUT = {"x": [2], "y": [3], "s": [2, 3]}


def _mmi_atoms_from_cov(cov):
  """MMI atoms of a 4×4 covariance of (x_p, y_p, x_f, y_f), via the reference lattice solve."""
  mi = {a + b: _mi_from_cov(cov, PAST[a], FUT[b]) for a in "xys" for b in "xys"}
  r = dict(mi)
  r["rx"], r["ry"] = min(mi["xx"], mi["yx"]), min(mi["xy"], mi["yy"])
  r["rs"], r["xr"] = min(mi["xs"], mi["ys"]), min(mi["xx"], mi["xy"])
  r["yr"], r["sr"] = min(mi["yx"], mi["yy"]), min(mi["sx"], mi["sy"])
  r["rr"] = min(mi["xx"], mi["xy"], mi["yx"], mi["yy"])
  rhs = np.array([r[n[0] + n[2]] for n in ref.NAMES])
  return np.linalg.solve(ref.lattice_matrix(), rhs)


@pytest.mark.parametrize("kind, redundancy", [("gaussian", "mmi"), ("gaussian", "ccs"),
                                              ("discrete", "mmi"), ("discrete", "ccs")])
@pytest.mark.parametrize("tau", [1, 2])
def test_atoms_sum_to_tdmi_and_partial_sums_give_each_mi(kind, redundancy, tau):
  x, y = _series(tau)
  with jax.enable_x64(True):
    atoms = _vec(phiid.phiid(x, y, tau=tau, redundancy=redundancy, kind=kind))
  if kind == "gaussian":
    cov = np.corrcoef(np.stack([x[:-tau], y[:-tau], x[tau:], y[tau:]]))
    mi = {a + b: _mi_from_cov(cov, PAST[a], FUT[b]) for a in "xys" for b in "xys"}
  else:
    # Default scheme: each lagged vector binarised at its own mean.
    px, py, fx, fy = ref.lagged_columns(x[None], y[None], tau, "discrete")
    table = ref.discrete_local_mi_table(np.r_[px, fx], np.r_[py, fy], len(px))
    mi = {k: v.mean() for k, v in table.items()}
  np.testing.assert_allclose(atoms.sum(), mi["ss"], rtol=0, atol=1e-10)
  # Lattice partial sums: I(a_p; b_f) is the sum of the atoms a' t b' with a' ≤ a and b' ≤ b.
  below = {"x": "rx", "y": "ry", "s": "rxys"}
  for name, value in mi.items():
    part = sum(atoms[ATOMS.index(p + "t" + f)] for p in below[name[0]] for f in below[name[1]])
    np.testing.assert_allclose(part, value, rtol=0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("kind, redundancy", [("gaussian", "mmi"), ("gaussian", "ccs"),
                                              ("discrete", "mmi"), ("discrete", "ccs")])
def test_swapping_sources_permutes_atoms(kind, redundancy):
  x, y = _series(3)
  with jax.enable_x64(True):
    xy = phiid.phiid(x, y, redundancy=redundancy, kind=kind)
    yx = phiid.phiid(y, x, redundancy=redundancy, kind=kind)
  for name in ATOMS:
    swapped = SWAP[name[0]] + "t" + SWAP[name[2]]
    np.testing.assert_allclose(float(yx[swapped]), float(xy[name]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("redundancy", ["mmi", "ccs"])
def test_affine_maps_change_nothing(redundancy):
  x, y = _series(4)
  with jax.enable_x64(True):
    base = _vec(phiid.phiid(x, y, redundancy=redundancy))
    moved = _vec(phiid.phiid(3.0 * x + 2.0, -0.5 * y + 7.0, redundancy=redundancy))
    disc = _vec(phiid.phiid(x, y, redundancy=redundancy, kind="discrete"))
    disc_moved = _vec(phiid.phiid(4.0 * x - 1.0, 0.1 * y + 3.0, redundancy=redundancy,
                                  kind="discrete"))
  np.testing.assert_allclose(moved, base, rtol=0, atol=1e-10)
  np.testing.assert_allclose(disc_moved, disc, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind, redundancy", [("gaussian", "mmi"), ("gaussian", "ccs"),
                                              ("discrete", "mmi"), ("discrete", "ccs")])
@pytest.mark.parametrize("tau", [1, 3])
def test_mean_of_local_atoms_equals_average(kind, redundancy, tau):
  x, y = _series(5)
  with jax.enable_x64(True):
    avg = phiid.phiid(x, y, tau=tau, redundancy=redundancy, kind=kind)
    loc = phiid.phiid(x, y, tau=tau, redundancy=redundancy, kind=kind, local=True)
  for name in ATOMS:
    assert loc[name].shape == (len(x) - tau,)
    np.testing.assert_allclose(np.asarray(loc[name]).mean(), float(avg[name]), rtol=0, atol=1e-12)


def test_local_atoms_match_reference():
  x, y = _series(6, t=120)
  for redundancy in ("mmi", "ccs"):
    _, expected = ref.reference_pair(x, y, 2, redundancy)
    with jax.enable_x64(True):
      loc = phiid.phiid(x, y, tau=2, redundancy=redundancy, local=True)
    got = np.stack([np.asarray(loc[n]) for n in ATOMS], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_white_noise_tdmi_vanishes_as_t_grows():
  rng = np.random.default_rng(7)
  tdmi = {}
  with jax.enable_x64(True):
    for t in (100, 20000):
      x, y = rng.standard_normal((2, 8, t))
      atoms = phiid.phiid(x, y)  # batch of 8 independent pairs
      tdmi[t] = np.mean(sum(np.asarray(v) for v in atoms.values()))
  # Plug-in Gaussian TDMI is biased by about (number of correlations) / (2 T) = 4 / (2T) nats.
  assert tdmi[100] > tdmi[20000] > 0
  assert tdmi[20000] < 5e-4


def _simulate_var1(coef, noise_cov, t, seed):
  rng = np.random.default_rng(seed)
  chol = np.linalg.cholesky(noise_cov)
  eps = rng.standard_normal((t + 200, 2)) @ chol.T
  z = np.zeros((t + 200, 2))
  for s in range(1, t + 200):
    z[s] = coef @ z[s - 1] + eps[s]
  return z[200:, 0], z[200:, 1]


def test_var1_converges_to_closed_form():
  """Stationary VAR(1) z_{t+1} = A z_t + ε: Σ = A Σ Aᵀ + Σ_ε and Cov(z_{t+1}, z_t) = A Σ."""
  coef = np.array([[0.5, 0.4], [-0.3, 0.6]])
  noise = np.array([[1.0, 0.3], [0.3, 1.0]])
  sigma = linalg.solve_discrete_lyapunov(coef, noise)
  cov = np.block([[sigma, sigma @ coef.T], [coef @ sigma, sigma]])
  expected = _mmi_atoms_from_cov(cov)
  errors = {}
  with jax.enable_x64(True):
    for t in (500, 200000):
      x, y = _simulate_var1(coef, noise, t, seed=t)
      errors[t] = np.abs(_vec(phiid.phiid(x, y)) - expected).max()
  assert errors[200000] < errors[500]
  assert errors[200000] < 0.01, errors


def test_independent_ar1_gives_large_mmi_sts():
  """Known MMI pitfall, exposed on purpose: two independent AR(1) series with φ = 0.9.

  Every cross-MI is 0 so every MMI redundancy that involves a cross term is 0, while
  I(x_p; x_f) = I(y_p; y_f) = h = −½ log(1 − φ²). The lattice then gives xtx = yty = h and
  sts = I(x_p y_p; x_f y_f) − … = 2h = −log(1 − φ²) ≈ 1.66 nats: "synergy" between series that
  never interact. Compare sts against surrogates (all_pairs(acts_y=...)) before reading it.
  """
  phi = 0.9
  rng = np.random.default_rng(8)
  t = 200000
  x, y = signal.lfilter([1.0], [1.0, -phi], rng.standard_normal((2, t)), axis=-1)
  with jax.enable_x64(True):
    atoms = phiid.phiid(x, y)
  h = -0.5 * np.log(1 - phi ** 2)
  assert float(atoms["sts"]) > 1.0
  # Sampling error: sd(ĥ) ≈ φ/(1−φ²) · sqrt((1−φ²)/T) ≈ 0.0045 nats, so sts = 2ĥ within ~4 sd.
  np.testing.assert_allclose(float(atoms["sts"]), 2 * h, atol=0.04)
  np.testing.assert_allclose(float(atoms["xtx"]), h, atol=0.02)
  np.testing.assert_allclose(float(atoms["rtr"]), 0.0, atol=0.01)
