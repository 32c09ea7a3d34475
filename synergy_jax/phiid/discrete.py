"""Discrete (plug-in) ΦID estimator on a joint probability table of (x_p, y_p, x_f, y_f).

Series are integer states in [0, K) (``transforms`` and ``kinds`` make them from real series).
The plug-in joint distribution
p(x_p, y_p, x_f, y_f) counts the T − tau lagged samples; a local mutual information is
log p(a, b) / (p(a) p(b)) at each joint state, and averages are p-weighted sums over states
(exactly the mean of the local values over samples). All values in nats.
"""
import jax
import jax.numpy as jnp

from synergy_jax.phiid import lattice

# Axes of the (..., K, K, K, K) table: x_p, y_p, x_f, y_f.
_PAST_AXES = {"x": (0,), "y": (1,), "s": (0, 1)}
_FUTURE_AXES = {"x": (2,), "y": (3,), "s": (2, 3)}


def _joint_index(states, k):
  """Joint state index ((x_p K + y_p) K + x_f) K + y_f of lagged states, (..., S)."""
  xp, yp, xf, yf = states
  return ((xp * k + yp) * k + xf) * k + yf


def lagged_table(states, num_states, dtype=None):
  """(x_p, y_p, x_f, y_f) int states, each (..., S) → (..., K, K, K, K) plug-in probabilities."""
  k = num_states
  state = _joint_index(states, k)
  dtype = dtype or jax.dtypes.canonicalize_dtype(jnp.float64)
  counts = jnp.sum(jax.nn.one_hot(state, k ** 4, dtype=dtype), axis=-2)  # (..., K⁴)
  probs = counts / state.shape[-1]
  return probs.reshape(probs.shape[:-1] + (k, k, k, k))


def _marginal(p, keep):
  """Sum a (..., K, K, K, K) table over the state axes not in ``keep``, keeping dims."""
  drop = tuple(ax - 4 for ax in range(4) if ax not in keep)
  return jnp.sum(p, axis=drop, keepdims=True) if drop else p


def local_mi_tables(p):
  """dict MI name → (..., K, K, K, K) local MI at every joint state (0 where p = 0), nats."""
  safe_log = lambda q: jnp.log(jnp.where(q > 0, q, 1.0))
  out = {}
  for name in lattice.MI_NAMES:
    a, b = _PAST_AXES[name[0]], _FUTURE_AXES[name[1]]
    val = safe_log(_marginal(p, a + b)) - safe_log(_marginal(p, a)) - safe_log(_marginal(p, b))
    out[name] = jnp.where(p > 0, val, 0.0)
  return out


def table_lattice_values(p, redundancy):
  """Local redundancy-function values on the table: tuple of 16 arrays (..., K, K, K, K)."""
  mean = lambda v: jnp.sum(p * v, axis=(-4, -3, -2, -1), keepdims=True)
  return lattice.lattice_values(local_mi_tables(p), redundancy, mean)


def average_lattice_values(p, redundancy):
  """(..., 16) average redundancy-function values (nats) from a joint table."""
  vals = table_lattice_values(p, redundancy)
  return jnp.stack([jnp.sum(p * v, axis=(-4, -3, -2, -1)) for v in vals], axis=-1)


def pair_atoms(states, num_states, redundancy, local, dtype=None):
  """Plug-in ΦID of lagged states (x_p, y_p, x_f, y_f), each (..., S) int in [0, K).

  Returns (..., 16) average atoms or (..., S, 16) local atoms in ATOMS order, nats.
  """
  k = num_states
  p = lagged_table(states, k, dtype)
  if not local:
    return lattice.atoms_from_lattice_values(average_lattice_values(p, redundancy))
  vals = jnp.stack(table_lattice_values(p, redundancy), axis=-1)  # (..., K, K, K, K, 16)
  vals = vals.reshape(vals.shape[:-5] + (k ** 4, 16))
  # Gather each sample's joint state: (..., S) indices into (..., K⁴, 16).
  per_sample = jnp.take_along_axis(vals, _joint_index(states, k)[..., None], axis=-2)
  return lattice.atoms_from_lattice_values(per_sample)
