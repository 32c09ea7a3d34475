"""Local (per-token) ΦID of each unit as source x, averaged over its partners: when synergy happens.

Axis legend: P prompts, U units, H selected units ("heads"), B a block of them, S = T' − τ lagged
samples (tokens), A the 16 atoms.

For unit i and partner j the local atoms at sample t are the terms whose mean over t is the pair's
average atoms (``phiid(..., local=True)``; per prompt, or over the pooled samples for
pool="concat"). ``local_head_atoms`` averages them over the usable partners j ≠ i, block by block
of units, so no (U, U, S) array is ever formed: a block holds (B, U, S) temporaries.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from synergy_jax.phiid import checks
from synergy_jax.phiid import report
from synergy_jax.phiid import kinds
from synergy_jax.phiid import lattice
from synergy_jax.phiid import pairs
from synergy_jax.phiid import units
from synergy_jax.phiid.config import PhiidConfig

NO_PARTNER = "no usable partner"


@functools.partial(jax.jit, static_argnames=("config", "block", "dtype"))
def local_core(acts, heads, weights, *, config, block, dtype):
  """(P, U, T) activity, (Hpad,) unit indices, (Hpad, U) partner weights → (P, Hpad, 16, S)."""
  kind = kinds.kind_of(config)
  past, future, _, _, _ = units.prepared(acts, config, dtype)
  xs = kind.encode(past, future, config, dtype)

  def one_block(r):
    rows = lax.dynamic_slice_in_dim(heads, r, block)
    xb = tuple(jnp.take(v, rows, axis=1) for v in xs)
    w = lax.dynamic_slice_in_dim(weights, r, block, axis=0).astype(dtype)
    return kind.local_block(xb, xs, w, config)  # (P, B, S, 16)

  vals = lax.map(one_block, jnp.arange(0, heads.shape[0], block))  # (blocks, P, B, S, 16)
  vals = jnp.moveaxis(vals, 0, 1).reshape((acts.shape[0], heads.shape[0]) + vals.shape[-2:])
  return jnp.moveaxis(lattice.atoms_from_lattice_values(vals), -1, -2)


def _heads(heads, u):
  if heads is None:
    return np.arange(u)
  out = []
  for h in heads:
    if isinstance(h, bool) or not isinstance(h, (int, np.integer)) or not 0 <= h < u:
      raise ValueError(f"heads: {h!r} is not a unit index in [0, {u})")
    out.append(int(h))
  if not out:
    raise ValueError("heads is empty")
  return np.array(out)


def local_head_atoms(acts, config=PhiidConfig(), heads=None, *, on_degenerate="raise",
                     block_size=None, dtype=None, memory_bytes=2 ** 31):
  """Per-token atoms of each unit as source x, averaged over its partners j ≠ i.

  Args:
    acts: (P, U, T) concrete activity. config: ``PhiidConfig``. heads: optional unit indices
      (default all U units).
    on_degenerate: "raise" (ValueError naming every problem ``phiid.degenerate`` finds) or
      "mask": degenerate units get NaN rows; a unit's average leaves out degenerate partners and
      singular pairs (a warning names them); a unit with no usable partner is NaN and named.
    block_size: units per block (default from the kind's memory model with ``memory_bytes``).
    dtype: compute dtype (default float64 under x64, else float32).
  Returns:
    (P, H, 16, S) local atoms in ATOMS order (nats), H = len(heads) or U, S = T' − τ. Their mean
    over S (and over P for pool="concat") is the average over partners of ``all_pairs`` atoms.
  """
  p, u, t = pairs.validate(acts, None, config, on_degenerate)
  if config.smooth_min is not None:
    raise ValueError(f"PhiidConfig.smooth_min={config.smooth_min} applies to average atoms, "
                     f"not to local_head_atoms; use smooth_min=None")
  if not pairs.is_concrete(acts):
    raise ValueError("local_head_atoms needs concrete activity (not inside jax.jit)")
  heads = _heads(heads, u)
  dtype = jnp.dtype(dtype) if dtype is not None else pairs.default_dtype()
  problems = report.degenerate(acts, config, dtype)
  if on_degenerate == "raise":
    pairs.settle(problems, on_degenerate, "local_head_atoms")
  bad = np.asarray(pairs.bad_units(problems, u, "acts"))
  usable = ~np.eye(u, dtype=bool) & ~bad[None, :]
  for pr in problems:
    if pr.partner is not None:
      usable[pr.unit, pr.partner] = usable[pr.partner, pr.unit] = False
  counts = usable.sum(axis=1)
  for h in heads:
    if counts[h] == 0 and not bad[h]:
      problems.append(checks.Problem(int(h), None, NO_PARTNER))
  pairs.settle(problems, on_degenerate, "local_head_atoms")
  weights = usable / np.maximum(counts, 1)[:, None]
  s = pairs.lagged_steps(t, config)
  if block_size is None:
    block_size = pairs.auto_block_size(p, u, s, itemsize=dtype.itemsize,
                                       memory_bytes=memory_bytes, config=config, local=True)
  if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size={block_size!r} must be an int ≥ 1")
  block = min(block_size, len(heads))
  hpad = -(-len(heads) // block) * block
  rows = np.concatenate([heads, np.full(hpad - len(heads), heads[0])])
  out = local_core(jnp.asarray(acts), jnp.asarray(rows, jnp.int32),
                   jnp.asarray(weights[rows]), config=config, block=block, dtype=dtype)
  out = out[:, :len(heads)]
  dead = jnp.asarray(bad[heads] | (counts[heads] == 0))
  return jnp.where(dead[None, :, None, None], jnp.asarray(jnp.nan, out.dtype), out)
