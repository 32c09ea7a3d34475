"""Row-block functions of the all-pairs discrete (plug-in) estimator.

Axis legend: P prompts, B a block of x-side units, M y-side units, S lagged samples, K states;
u and v index the K² joint (past, future) states of one unit.

Inputs are one-hot codes of each unit's lagged (past, future) state pair, (P, units, K², S); a
matrix product per block counts the joint states of every pair and the plug-in lattice is
evaluated on the (P, B, M, K, K, K, K) tables.
"""
import jax
import jax.numpy as jnp
from jax import lax

from synergy_jax.phiid import discrete

_HIGHEST = lax.Precision.HIGHEST


def one_hot_lags(past, future, k, dtype):
  """(P, U, S) int past and future states → (P, U, K², S) one-hot of past·K + future."""
  return jnp.moveaxis(jax.nn.one_hot(past * k + future, k * k, dtype=dtype), -1, -2)


def _tables(ux, uy, pool, k):
  """Joint probabilities (P', B, M, K, K, K, K) over (x_p, y_p, x_f, y_f); P' = P or 1."""
  if pool == "mean":
    counts = jnp.einsum("pbus,pmvs->pbmuv", ux, uy, precision=_HIGHEST)
  else:
    counts = jnp.einsum("pbus,pmvs->bmuv", ux, uy, precision=_HIGHEST)[None]
  counts = counts.reshape(counts.shape[:3] + (k, k, k, k))  # axes x_p, x_f, y_p, y_f
  probs = jnp.transpose(counts, (0, 1, 2, 3, 5, 4, 6))  # → x_p, y_p, x_f, y_f
  return probs / jnp.sum(probs, axis=(-4, -3, -2, -1), keepdims=True)


def average_block(xs, ys, *, pool, redundancy, num_states):
  """Average lattice values (B, M, 16) (nats) and −1 for every pair (a plug-in table is never
  singular). xs = (one-hot,) (P, B, K², S); ys = (one-hot,) (P, M, K², S)."""
  probs = _tables(xs[0], ys[0], pool, num_states)
  vals = jnp.mean(discrete.average_lattice_values(probs, redundancy), axis=0)
  return vals, -jnp.ones(vals.shape[:2], jnp.int32)


def local_block(xs, ys, weights, *, pool, redundancy, num_states):
  """Per-sample lattice values of each x-unit averaged over partners: (P, B, S, 16), nats.

  Each sample's local values are read from its pair's table at the sample's joint state;
  weights (B, M) as in ``blocks_gaussian.local_block``.
  """
  k = num_states
  ux, uy = xs[0], ys[0]
  probs = _tables(ux, uy, pool, k)  # (P' , B, M, K, K, K, K)

  def one_prompt(q):
    table = probs[q if pool == "mean" else 0]
    vals = jnp.stack(discrete.table_lattice_values(table, redundancy), axis=-1)
    # joint index (x_p, y_p, x_f, y_f) of each sample from the two one-hot codes
    cx = jnp.argmax(ux[q], axis=1)  # (B, S): x_p·K + x_f
    cy = jnp.argmax(uy[q], axis=1)  # (M, S)
    xp, xf = cx // k, cx % k
    yp, yf = cy // k, cy % k
    idx = ((xp[:, None] * k + yp[None]) * k + xf[:, None]) * k + yf[None]  # (B, M, S)
    flat = vals.reshape(vals.shape[:2] + (k ** 4, 16))  # (B, M, K⁴, 16)
    per_sample = jnp.take_along_axis(flat, idx[..., None], axis=2)  # (B, M, S, 16)
    use = (weights > 0)[..., None, None]
    # b: x-units, m: partners, s: samples, a: lattice slots.
    return jnp.einsum("bmsa,bm->bsa", jnp.where(use, per_sample, 0), weights,
                      precision=_HIGHEST)

  return lax.map(one_prompt, jnp.arange(ux.shape[0]))


def row_bytes(num_prompts, num_units, num_samples, num_states, itemsize, local=False):
  """Memory model: ~24 tables of (P, B, M, K⁴) per block, plus (B, M, S, 16) for local values."""
  per = num_prompts * num_units * num_states ** 4 * 24 * itemsize
  if local:
    per += num_units * num_samples * 16 * 2 * itemsize
  return per
