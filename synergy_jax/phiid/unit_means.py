"""Per-unit partner sums of every pair's ΦID atoms, streamed: the U × U grid is never held.

Axis legend: P prompts, U units (padded to Upad, a multiple of the block), B rows per block, W the
block's window of partner columns, C the 16 atoms.

What the study reports per unit is a mean over its partners (``analysis.ranking.partner_mean``
of sts and rtr, then ranks). Those need only per-unit sums, so the pair grid is evaluated in row
blocks exactly as ``phiid.all_pairs`` does it (same prepared units, same block function, same
half-grid band: each unordered pair once, its mirror [j, i] being [i, j] with x and y exchanged)
and every block is reduced at once to per-unit sums over partners: O(U · 16) memory instead of
O(U² · 16) (17 GB at U = 16384 in float32). With a mesh the blocks are split over its devices
and the per-device sums are added with one ``psum``.

Excluded, and counted in ``UnitMeans.masked``: the diagonal (not counted), pairs with a
degenerate unit, pairs singular in some prompt, and any other non-finite estimate, i.e. exactly
the entries ``phiid.all_pairs(..., on_degenerate="mask")`` returns as NaN.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from synergy_jax.phiid import grid
from synergy_jax.phiid import kinds
from synergy_jax.phiid import lattice
from synergy_jax.phiid import pairs
from synergy_jax.phiid import units
from synergy_jax.phiid.config import resolve_config

_STS, _RTR = lattice.ATOMS.index("sts"), lattice.ATOMS.index("rtr")


@dataclasses.dataclass(frozen=True)
class UnitMeans:
  """Per-unit reductions over partners j ≠ i of the (U, U, 16) atoms m (nats), float64.

  sums (U, 16): Σ_j m[i, j, :] over the finite pairs (unit i as source x).
  count (U,): partners with a finite estimate. masked (U,): partners excluded (NaN in
    ``phiid.all_pairs(on_degenerate="mask")``). bad (U,) bool: the unit is degenerate itself.
  balance_sum, balance_count (U,): Σ and number of partners of ``ranking.pair_balance`` (clip
    rule) where it is defined.
  """
  sums: np.ndarray
  count: np.ndarray
  masked: np.ndarray
  bad: np.ndarray
  balance_sum: np.ndarray
  balance_count: np.ndarray

  def _mean(self, total, count):
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(count > 0, total / np.maximum(count, 1), np.nan)

  def as_x(self) -> np.ndarray:
    """(U, 16) mean over partners of m[i, j, :] (unit i as source x)."""
    return self._mean(self.sums, self.count[:, None])

  def as_y(self) -> np.ndarray:
    """(U, 16) mean over partners of m[j, i, :] (unit i as source y): m[j, i, a] is
    m[i, j, a'] with a' the atom with x and y exchanged."""
    return self.as_x()[:, grid.SWAP_XY]

  def partner_mean(self, atom: str) -> np.ndarray:
    """(U,) ``ranking.partner_mean`` of the atom's (U, U) matrix: both roles averaged."""
    a = lattice.ATOMS.index(atom)
    return 0.5 * (self.as_x()[:, a] + self.as_y()[:, a])

  def head_scores(self):
    """``analysis.ranking.HeadScores`` (synergy, redundancy, ranks, balance), as
    ``ranking.head_scores`` of the full atoms."""
    from synergy_jax.analysis import ranking  # analysis builds on phiid, not the reverse
    syn, red = self.partner_mean("sts"), self.partner_mean("rtr")
    score, rs, rr, excluded = ranking.rank_difference(syn, red)
    return ranking.HeadScores(syn, red, rs, rr, score,
                              self._mean(self.balance_sum, self.balance_count), excluded)


def _block_sums(atoms, ok, masked, start, upad):
  """One block's contributions: (B + W) unit indices, their (·, 16) sums, counts, masked
  counts, balance sums and balance counts. atoms (B, W, 16); ok, masked (B, W) bool."""
  b, w = ok.shape
  v = jnp.where(ok[..., None], atoms, 0.0)
  s, r = jnp.maximum(v[..., _STS], 0.0), jnp.maximum(v[..., _RTR], 0.0)
  tot = s + r
  has_bal = ok & (tot > 0)
  bal = jnp.where(has_bal, s / jnp.where(has_bal, tot, 1.0), 0.0)
  swap = [int(k) for k in grid.SWAP_XY]
  idx = jnp.concatenate([start + jnp.arange(b), (start + jnp.arange(w)) % upad])
  # Rows: pair (i, j) as stored; columns: its mirror (j, i), the atoms with x and y exchanged.
  sums = jnp.concatenate([v.sum(1), jnp.stack([v[..., k] for k in swap], -1).sum(0)])
  cnt = jnp.concatenate([ok.sum(1), ok.sum(0)])
  msk = jnp.concatenate([masked.sum(1), masked.sum(0)])
  bsum = jnp.concatenate([bal.sum(1), bal.sum(0)])
  bcnt = jnp.concatenate([has_bal.sum(1), has_bal.sum(0)])
  return idx, sums, cnt, msk, bsum, bcnt


@functools.partial(jax.jit, static_argnames=("config", "mesh", "block", "dtype"))
def unit_sums(acts, *, config, mesh, block, dtype):
  """(P, U, T) → per-unit (sums (U, 16), count, masked, balance_sum, balance_count, bad).

  Counts come back in ``dtype`` (exact integers below 2^24 in float32).
  """
  kind = kinds.kind_of(config)
  n = acts.shape[1]
  past, future, _, _, bad = units.prepared(acts, config, dtype)
  xs = kind.encode(past, future, config, dtype)
  starts, num_blocks = grid.block_starts(n, block, mesh)
  live = jnp.arange(starts.shape[0]) < num_blocks  # padding copies of block 0 add nothing
  upad = num_blocks * block
  half = upad // 2
  width = block + half
  xs = tuple(grid.pad_rows(v, upad) for v in xs)
  ys = tuple(jnp.concatenate([v, v[:, :half]], axis=1) for v in xs)  # cyclic window source
  usable = jnp.concatenate([~bad, jnp.zeros((upad - n,), bool)])  # padding units are no one
  real = jnp.arange(upad) < n
  # Row i meets column j = i + off (mod upad) at window position k = i − start + off. Offsets
  # 1 … half hold every unordered pair once, except off = upad / 2 (even upad), met from both
  # ends: kept only from the row without wrap-around.
  off = jnp.arange(width)[None, :] - jnp.arange(block)[:, None]  # (B, W)

  def one_block(carry, plan):
    start, alive = plan
    rows = tuple(lax.dynamic_slice_in_dim(v, start, block, axis=1) for v in xs)
    win = tuple(lax.dynamic_slice_in_dim(v, start, width, axis=1) for v in ys)
    vals, first = kind.block(rows, win, config)  # (B, W, 16), (B, W)
    atoms = lattice.atoms_from_lattice_values(vals)
    i = start + jnp.arange(block)[:, None]
    j = (start + jnp.arange(width)[None, :]) % upad
    use = (alive & (off >= 1) & (off <= half) & ((2 * off < upad) | (i + off < upad))
           & real[i] & real[j])
    ok = use & usable[i] & usable[j] & (first < 0) & jnp.all(jnp.isfinite(atoms), -1)
    idx, *parts = _block_sums(atoms, ok, use & ~ok, start, upad)
    return tuple(c.at[idx].add(p.astype(c.dtype)) for c, p in zip(carry, parts)), None

  def run(st, al):
    zero = (jnp.zeros((upad, 16), dtype),) + tuple(jnp.zeros((upad,), dtype) for _ in range(4))
    out, _ = lax.scan(one_block, zero, (st, al))
    if mesh is not None:
      out = tuple(lax.psum(v, tuple(mesh.axis_names)) for v in out)
    return out

  if mesh is None:
    out = run(starts, live)
  else:
    spec = PartitionSpec(tuple(mesh.axis_names))
    out = jax.shard_map(run, mesh=mesh, in_specs=(spec, spec), out_specs=PartitionSpec(),
                        check_vma=False)(starts, live)
  return tuple(v[:n] for v in out) + (bad,)


def unit_means(acts, *, config=None, mesh=None, block_size: int | None = None, dtype=None,
               memory_bytes: int = 2 ** 31) -> UnitMeans:
  """Per-unit partner sums and means of the all-pairs atoms, without the (U, U, 16) grid.

  Args:
    acts: (P, U, T) activity, as ``phiid.all_pairs``.
    config: ``phiid.PhiidConfig`` (any kind, redundancy, pooling).
    mesh: None, "auto" or a ``jax.sharding.Mesh``: row blocks split over its devices.
    block_size, dtype, memory_bytes: as ``phiid.all_pairs`` (float64 under x64, else float32).
  Returns:
    ``UnitMeans``. Degenerate units and singular pairs are not an error here: they are left out
    and counted (``masked``, ``bad``); ``phiid.degenerate`` names them.
  """
  config = resolve_config(config)
  p, n, t = pairs.validate(acts, None, config, "mask")
  dtype = jnp.dtype(dtype) if dtype is not None else pairs.default_dtype()
  mesh = grid.resolve_mesh(mesh)
  if block_size is None:
    block_size = pairs.auto_block_size(p, n, pairs.lagged_steps(t, config),
                                       itemsize=dtype.itemsize, memory_bytes=memory_bytes,
                                       config=config)
  if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size={block_size!r} must be an int ≥ 1")
  sums, cnt, msk, bsum, bcnt, bad = unit_sums(jnp.asarray(acts), config=config, mesh=mesh,
                                              block=min(block_size, n), dtype=dtype)
  f = lambda v: np.asarray(v, np.float64)
  return UnitMeans(f(sums), f(cnt), f(msk), np.asarray(bad, bool), f(bsum), f(bcnt))
