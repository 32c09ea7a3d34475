"""Discrete (plug-in) ΦID estimator on a joint probability table of (x_p, y_p, x_f, y_f).

Series are integer states in [0, K). Float series are binarised at their mean first (state 1
where x > mean(x) over the whole series, else 0), giving K = 2. The plug-in joint distribution
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


def binarise(v):
  """(..., T) real series → int32 states: 1 where v > mean over T, else 0."""
  return (v > jnp.mean(v, axis=-1, keepdims=True)).astype(jnp.int32)


def joint_table(x, y, tau, num_states, dtype=None):
  """Plug-in joint distribution of one pair.

  Args:
    x, y: (..., T) integer states in [0, num_states).
    tau: lag (static int ≥ 1).
    num_states: K (static int).
    dtype: float dtype of the table (default: jax's default float).
  Returns:
    (..., K, K, K, K) probabilities over (x_p, y_p, x_f, y_f), summing to 1.
  """
  k = num_states
  state = ((x[..., :-tau] * k + y[..., :-tau]) * k + x[..., tau:]) * k + y[..., tau:]
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


def phiid_discrete(x, y, tau=1, redundancy="mmi", local=False, num_states=None):
  """Plug-in ΦID of one pair along the last axis.

  Args:
    x, y: (..., T) series. With ``num_states=None`` they are binarised at their mean; otherwise
      they must hold integers in [0, num_states).
    tau: lag (static int ≥ 1).
    redundancy: "mmi" or "ccs".
    local: return local atoms (..., T − tau, 16) instead of averages (..., 16).
    num_states: K (static int) or None.
  Returns:
    atoms in ATOMS order, nats.
  """
  if num_states is None:
    x, y, num_states = binarise(x), binarise(y), 2
  x, y = jnp.asarray(x).astype(jnp.int32), jnp.asarray(y).astype(jnp.int32)
  p = joint_table(x, y, tau, num_states)
  if not local:
    return lattice.atoms_from_lattice_values(average_lattice_values(p, redundancy))
  k = num_states
  vals = jnp.stack(table_lattice_values(p, redundancy), axis=-1)  # (..., K, K, K, K, 16)
  vals = vals.reshape(vals.shape[:-5] + (k ** 4, 16))
  state = ((x[..., :-tau] * k + y[..., :-tau]) * k + x[..., tau:]) * k + y[..., tau:]
  # Gather each sample's joint state: (..., S) indices into (..., K⁴, 16).
  per_sample = jnp.take_along_axis(vals, state[..., None], axis=-2)  # (..., S, 16)
  return lattice.atoms_from_lattice_values(per_sample)
