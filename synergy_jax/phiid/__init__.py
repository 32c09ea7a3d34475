"""Integrated Information Decomposition (ΦID) of pairs of time series, in JAX.

For two series x, y and a lag τ, the time-delayed mutual information
I(x_t, y_t; x_{t+τ}, y_{t+τ}) is split into 16 atoms (``ATOMS``; Mediano et al., PNAS 2025;
Luppi et al., Nat. Neurosci. 2022): ``"atb"`` is information carried by past node a and
received by future node b, with r = redundancy, x / y = unique to x / y, s = synergy. Values in
nats.

Public API (every estimate is described by one frozen ``PhiidConfig``):
  ATOMS                               the 16 atom names in lattice order.
  PhiidConfig(tau, redundancy, kind, pool, preprocess, bias_correction, num_states, discretise,
              smooth_min)
  phiid(src, trg, config=...)         one pair (any leading batch axes; jit-able, vmap-able).
  all_pairs(acts, config=...)         (P, U, T) → (U, U, 16) for every ordered pair of units.
  local_head_atoms(acts, config, heads)  (P, H, 16, T' − τ) per-token atoms of each unit,
                                      averaged over its partners.
  degenerate(acts, config, dtype)     list of ``Problem`` (unit, partner, prompt, reason,
                                      series): everything that cannot be estimated.
  min_series_length(config)           the fewest time steps the estimator can use.
  check_units(acts, tau)              legacy: unit problems of the default estimator.

Known pitfall (exposed, not hidden): under MMI, two *independent* autocorrelated series get a
large synergy. For independent AR(1) series with the same coefficient φ, every cross mutual
information is 0 and I(x_p; x_f) = I(y_p; y_f) = h = −½ log(1 − φ²), so the MMI lattice gives
xtx = yty = rts = str = h, xts = yts = stx = sty = −h and sts = 2h = −log(1 − φ²) (1.66 nats at
φ = 0.9) — "synergy" between series that never interact. Compare ``sts`` with circular-shift
surrogates (``all_pairs(..., acts_y=shifted)``) before calling a pair synergistic; see
tests/phiid/test_phiid_identities.py::test_independent_ar1_gives_large_mmi_sts.

Estimators (``kinds.KIND_TABLE``, one entry each): "gaussian" (``gaussian.py``; standardised
series, local Gaussian log-densities), "copula" (normal scores of the ranks, then Gaussian; Ince
et al., Hum. Brain Mapp. 2017) and plug-in "discrete" (``discrete.py``); redundancy "mmi" or
"ccs" (``lattice.lattice_values``); optional analytic bias correction (``bias.py``) and
detrending / differencing (``transforms.py``).
Differentiable (docs/differentiable_phiid.md): ``jax.grad`` of ``phiid`` and ``all_pairs``
(Gaussian kind) with respect to the activity is finite and exact away from MMI ties and CCS sign
changes; masked entries get zero gradient; ``smooth_min`` gives a soft MMI minimum.
The slow independent reference used by the tests and experiments/bench_phiid.py lives in
tests/phiid/phiid_reference.py (plain NumPy/SciPy, a Python loop over pairs).
"""
from synergy_jax.phiid import bias
from synergy_jax.phiid import kinds
from synergy_jax.phiid.checks import Problem
from synergy_jax.phiid.checks import min_series_length
from synergy_jax.phiid.config import PhiidConfig
from synergy_jax.phiid.report import check_units
from synergy_jax.phiid.report import degenerate
from synergy_jax.phiid.kinds import KIND_TABLE
from synergy_jax.phiid.lattice import ATOMS
from synergy_jax.phiid.lattice import LATTICE
from synergy_jax.phiid.lattice import MOBIUS
from synergy_jax.phiid.local import local_head_atoms
from synergy_jax.phiid.one_pair import phiid
from synergy_jax.phiid.pairs import all_pairs
from synergy_jax.phiid.pairs import auto_block_size

__all__ = ["ATOMS", "KIND_TABLE", "LATTICE", "MOBIUS", "PhiidConfig", "Problem", "all_pairs",
           "auto_block_size", "bias", "check_units", "degenerate", "kinds", "local_head_atoms",
           "min_series_length", "phiid"]
