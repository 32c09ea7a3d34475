"""Integrated Information Decomposition (ΦID) of pairs of time series, in JAX.

For two series x, y and a lag τ, the time-delayed mutual information
I(x_t, y_t; x_{t+τ}, y_{t+τ}) is split into 16 atoms (``ATOMS``; Mediano et al., PNAS 2025;
Luppi et al., Nat. Neurosci. 2022): ``"atb"`` is information carried by past node a and
received by future node b, with r = redundancy, x / y = unique to x / y, s = synergy. Values in
nats.

Public API:
  ATOMS                       the 16 atom names in lattice order.
  phiid(src, trg, ...)        one pair (any leading batch axes; jit-able, vmap-able).
  all_pairs(acts, ...)        (P, N, T) → (N, N, 16) for every ordered pair of units.
  check_units(acts, tau)      list of degenerate (unit, prompt) problems.

Known pitfall (exposed, not hidden): under MMI, two *independent* autocorrelated series get a
large synergy. For independent AR(1) series with the same coefficient φ, every cross mutual
information is 0 and I(x_p; x_f) = I(y_p; y_f) = h = −½ log(1 − φ²), so the MMI lattice gives
xtx = yty = rts = str = h, xts = yts = stx = sty = −h and sts = 2h = −log(1 − φ²) (1.66 nats at
φ = 0.9) — "synergy" between series that never interact. Compare ``sts`` with circular-shift
surrogates (``all_pairs(..., acts_y=shifted)``) before calling a pair synergistic; see
tests/phiid/test_phiid_identities.py::test_independent_ar1_gives_large_mmi_sts.

Estimators: Gaussian (``gaussian.py``; standardised series, local Gaussian log-densities) and
plug-in discrete (``discrete.py``); redundancy "mmi" or "ccs" (``lattice.lattice_values``).
The slow independent reference used by the tests and experiments/bench_phiid.py lives in
tests/phiid/phiid_reference.py (plain NumPy/SciPy, a Python loop over pairs).
"""
import functools

import jax
import jax.numpy as jnp

from synergy_jax.phiid import checks
from synergy_jax.phiid.checks import Problem
from synergy_jax.phiid.config import PhiidConfig
from synergy_jax.phiid.discrete import phiid_discrete
from synergy_jax.phiid.gaussian import phiid_gaussian
from synergy_jax.phiid.lattice import ATOMS
from synergy_jax.phiid.lattice import LATTICE
from synergy_jax.phiid.lattice import MOBIUS
from synergy_jax.phiid.pairs import all_pairs
from synergy_jax.phiid.pairs import auto_block_size


def check_units(acts, tau=1):
  """Degenerate (unit, prompt) combinations of (P, N, T) activity.

  Returns a list of ``Problem(unit, prompt, reason, series)`` (reason "nan/inf", "constant past"
  or "constant future"); empty when every unit is usable. Raises ValueError for a non-3-D array
  or a bad tau.
  """
  return checks.check_units(acts, tau)


def phiid(src, trg, *, tau=1, redundancy="mmi", kind="gaussian", local=False, num_states=None):
  """ΦID of one pair of series: ``src`` is source x, ``trg`` is source y.

  Both series play both roles: their past (t) is decomposed against their joint future (t + τ).
  (The names follow common ΦID code; neither series is a "target".)

  Args:
    src: (..., T) series x; leading axes are batch axes (as are vmapped axes).
    trg: (..., T) series y, same shape.
    tau: lag (static int ≥ 1), T > tau + 2.
    redundancy: "mmi" or "ccs".
    kind: "gaussian" (standardised series, Gaussian log-densities) or "discrete" (plug-in;
      binarised at the mean unless ``num_states`` is given).
    local: per-sample (local) atoms instead of their averages.
    num_states: discrete alphabet size K (integers in [0, K)); kind="discrete" only.
  Returns:
    dict atom name → array of shape (...) (averages) or (..., T − tau) (local), nats. The mean of
    the local atoms over the last axis equals the averages. Constant or NaN series give NaN.
  """
  checks.check_choice("redundancy", redundancy, checks.REDUNDANCIES)
  checks.check_choice("kind", kind, checks.KINDS)
  src, trg = jnp.asarray(src), jnp.asarray(trg)
  if src.shape != trg.shape:
    raise ValueError(f"src shape {src.shape} and trg shape {trg.shape} differ")
  if src.ndim < 1:
    raise ValueError("src and trg need a time axis (last axis)")
  checks.check_tau(tau, src.shape[-1])
  if kind == "gaussian" and num_states is not None:
    raise ValueError(f"num_states={num_states} only applies to kind='discrete'")
  if kind == "gaussian" and not jnp.issubdtype(src.dtype, jnp.floating):
    src, trg = src.astype(float), trg.astype(float)
  atoms = _phiid_core(src, trg, tau=tau, redundancy=redundancy, kind=kind, local=local,
                      num_states=num_states)
  return {name: atoms[..., k] for k, name in enumerate(ATOMS)}


@functools.partial(jax.jit, static_argnames=("tau", "redundancy", "kind", "local", "num_states"))
def _phiid_core(src, trg, *, tau, redundancy, kind, local, num_states):
  """(..., T) pair → (..., 16) or (..., T − tau, 16) atoms; one compilation per shape/options."""
  if kind == "gaussian":
    return phiid_gaussian(src, trg, tau, redundancy, local)
  return phiid_discrete(src, trg, tau, redundancy, local, num_states)


__all__ = ["ATOMS", "LATTICE", "MOBIUS", "PhiidConfig", "Problem", "all_pairs", "auto_block_size",
           "check_units", "phiid", "phiid_discrete", "phiid_gaussian"]
