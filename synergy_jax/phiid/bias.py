"""Analytic small-sample bias of Gaussian entropies and mutual informations (nats).

Derivation (the Gaussian entropy correction used by Ince et al., Hum. Brain Mapp. 2017, for
Gaussian-copula MI; the Wishart log-determinant moment is standard, e.g. Anderson, An
Introduction to Multivariate Statistical Analysis). For n independent samples of a d-dimensional Gaussian with covariance Σ, the
mean-centred scatter matrix W = Σ_t (z_t − z̄)(z_t − z̄)ᵀ is Wishart with n − 1 degrees of freedom,
and E[log |W|] = log |Σ| + d log 2 + Σ_{i=1}^{d} ψ((n − i) / 2). Our covariances use ddof=1,
Ĉ = W / (n − 1), so the plug-in entropy Ĥ = ½ log |Ĉ| + (d/2) log(2πe) has

  E[Ĥ] − H = g(d, n) = ½ d (log 2 − log(n − 1)) + ½ Σ_{i=1}^{d} ψ((n − i) / 2).

A mutual information I(A; B) = H(A) + H(B) − H(A, B) between blocks of sizes d_A and d_B is then
biased by

  b(d_A, d_B, n) = g(d_A) + g(d_B) − g(d_A + d_B)
                 = ½ [Σ_{i≤d_A} ψ((n−i)/2) + Σ_{i≤d_B} ψ((n−i)/2) − Σ_{i≤d_A+d_B} ψ((n−i)/2)]

(the log terms cancel), which is > 0 and ≈ d_A d_B / (2n) for large n. Correlation matrices give
the same mutual information as covariance matrices (the variances cancel), so the correction
applies unchanged to our standardised series. The corrected value is plug-in − b; every one of
the nine mutual informations of the ΦID lattice (and so, through the lattice, every atom) is
corrected. n is the number of lagged samples the correlations are estimated from (T' − τ per
prompt, or P (T' − τ) pooled for pool="concat"); n ≥ 5 is needed (ψ((n − 4)/2) with n > 4).

Under MMI the redundancies are minima over mutual informations of equal block sizes, so
subtracting b commutes with the minimum and the lattice value of slot "atb" is corrected by
b(dim a, dim b) with dim r = dim x = dim y = 1 and dim s = 2 (``lattice_offsets``).
"""
import math

import numpy as np

from synergy_jax.phiid import lattice

_EULER = 0.57721566490153286061


def digamma_half_integer(z):
  """ψ(z) for z a positive integer or half-integer, exactly from its finite sums:
  ψ(k) = −γ + Σ_{j<k} 1/j and ψ(k + ½) = −γ − 2 log 2 + Σ_{j=1}^{k} 2/(2j − 1)."""
  twice = round(2 * z)
  if twice < 1 or abs(2 * z - twice) > 1e-12:
    raise ValueError(f"digamma_half_integer needs a positive (half-)integer, got {z}")
  if twice % 2 == 0:
    k = twice // 2
    return -_EULER + math.fsum(1.0 / j for j in range(1, k))
  k = twice // 2
  return -_EULER - 2 * math.log(2.0) + math.fsum(2.0 / (2 * j - 1) for j in range(1, k + 1))


def _psi_sum(d, n):
  return math.fsum(digamma_half_integer((n - i) / 2) for i in range(1, d + 1))


def mi_bias(dim_a, dim_b, n):
  """b(d_A, d_B, n): expected plug-in excess of a Gaussian MI estimated from n samples (nats)."""
  if n <= dim_a + dim_b:
    raise ValueError(f"bias correction of a {dim_a}+{dim_b}-dimensional Gaussian MI needs more "
                     f"than {dim_a + dim_b} samples; got n={n}")
  return 0.5 * (_psi_sum(dim_a, n) + _psi_sum(dim_b, n) - _psi_sum(dim_a + dim_b, n))


_DIM = {"r": 1, "x": 1, "y": 1, "s": 2}


def mi_offsets(n):
  """dict MI name (``lattice.MI_NAMES``) → b for its block sizes with n samples (floats, nats)."""
  return {name: mi_bias(_DIM[name[0]], _DIM[name[1]], n) for name in lattice.MI_NAMES}


def lattice_offsets(n):
  """(16,) float64 biases of the MMI lattice values in ATOMS slot order (see module docstring)."""
  return np.array([mi_bias(_DIM[atom[0]], _DIM[atom[2]], n) for atom in lattice.ATOMS])
