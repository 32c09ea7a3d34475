"""The pair grid: row blocks under ``lax.map``, the half-grid band, and sharding over a mesh.

Axis legend: U x-side units (padded to Upad = a multiple of the block), M y-side units, B rows
per block, W the y-side window of a block.

Row blocks run under ``lax.map`` (one compiled body, no Python loop over pairs); with a mesh the
blocks are split over its devices by ``jax.shard_map`` and every block is computed by the same
program, so the result does not depend on the number of devices. With a single set of units only
about half the grid is computed: [j, i] is [i, j] with x and y exchanged (``assemble_band``).
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from synergy_jax.phiid import lattice

# Atom index after exchanging x and y in both past and future ("xty" ↔ "ytx", "rts" stays, ...).
_SWAP = {"r": "r", "x": "y", "y": "x", "s": "s"}
SWAP_XY = np.array([lattice.ATOMS.index(_SWAP[a[0]] + "t" + _SWAP[a[2]]) for a in lattice.ATOMS])


def resolve_mesh(mesh):
  if mesh is None:
    return None
  if isinstance(mesh, str):
    if mesh != "auto":
      raise ValueError(f"mesh={mesh!r}: pass a jax.sharding.Mesh, 'auto' or None")
    return jax.sharding.Mesh(np.array(jax.local_devices()), ("pairs",))
  if not isinstance(mesh, jax.sharding.Mesh):
    raise ValueError(f"mesh must be a jax.sharding.Mesh, 'auto' or None; got {type(mesh)}")
  return mesh


def map_blocks(fn, starts, operands, mesh):
  """fn(start, *operands) over the row-block starts, split over the mesh's devices if any."""
  run = lambda st, *ops: lax.map(lambda r: fn(r, *ops), st)
  if mesh is None:
    return run(starts, *operands)
  axes = tuple(mesh.axis_names)
  specs = (PartitionSpec(axes),) + (PartitionSpec(),) * len(operands)
  return jax.shard_map(run, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(axes),
                       check_vma=False)(starts, *operands)


def block_starts(num_rows, block, mesh):
  """Start row of every block, padded with extra copies of block 0 (results dropped) so the count
  divides the devices; the geometry does not depend on the device count, nor do the results."""
  num_blocks = -(-num_rows // block)
  num_shards = 1 if mesh is None else mesh.size
  spare = -num_blocks % num_shards
  return jnp.concatenate([jnp.arange(num_blocks, dtype=jnp.int32) * block,
                          jnp.zeros((spare,), jnp.int32)]), num_blocks


def pad_rows(v, upad, axis=1):
  pad = [(0, 0)] * v.ndim
  pad[axis] = (0, upad - v.shape[axis])
  return jnp.pad(v, pad)


def pair_grid(body, xs, ys, *, u, block, same, mesh):
  """Every ordered pair's lattice values and first singular prompt.

  body(xs_block, ys_window) → ((B, W, 16), (B, W) int32) with xs_block the block's rows of each
  x-side input (unit axis 1) and ys_window the y-side inputs. Returns ((U, M, 16), (U, M)).
  """
  starts, num_blocks = block_starts(u, block, mesh)
  upad = num_blocks * block
  xs = tuple(pad_rows(v, upad) for v in xs)
  # With one set of units, row block r0 meets the cyclic window of columns
  # r0 .. r0 + block + upad//2 − 1, which holds every (i, j) with (j − i) mod upad ≤ upad//2.
  band = same and num_blocks >= 3
  if band:
    half = upad // 2
    width = block + half
    ys = tuple(jnp.concatenate([v, v[:, :half]], axis=1) for v in xs)  # (P, upad + half, ...)
  else:
    width = ys[0].shape[1]

  def one_block(r, xs_, ys_):
    rows = tuple(lax.dynamic_slice_in_dim(v, r, block, axis=1) for v in xs_)
    win = tuple(lax.dynamic_slice_in_dim(v, r, width, axis=1) for v in ys_) if band else ys_
    return body(rows, win)

  vals, first = map_blocks(one_block, starts, (xs, ys), mesh)
  vals = vals[:num_blocks].reshape((upad, width, 16))
  first = first[:num_blocks].reshape((upad, width))
  if band:
    vals = assemble_band(vals, u, block, SWAP_XY)
    first = assemble_band(first[..., None], u, block, (0,))[..., 0]
  else:
    vals, first = vals[:u], first[:u]
  if same:  # a singular pair is singular both ways round: report the earliest prompt
    tr = first.T
    first = jnp.where((first >= 0) & (tr >= 0), jnp.minimum(first, tr), jnp.maximum(first, tr))
  return vals, first


def assemble_band(band, u, block, swap):
  """(upad, width, C) band storage → (U, U, C) full grid.

  band[i, k] holds pair (i, j) with j = (r0(i) + k) mod upad, r0(i) = block · ⌊i / block⌋. Entry
  [i, j] is read directly when d = (j − i) mod upad ≤ upad // 2 (k = i − r0(i) + d), otherwise
  from [j, i] with its channels permuted by ``swap`` (x and y exchanged).
  """
  upad = band.shape[0]
  half = upad // 2
  i = jnp.arange(u)[:, None]
  j = jnp.arange(u)[None, :]
  d = (j - i) % upad
  direct = d <= half
  rows = jnp.where(direct, i, j)
  cols = jnp.where(direct, i % block + d, j % block + (i - j) % upad)
  got = band[rows, cols]  # (U, U, C)
  # Static per-channel slices, not an index array: a NumPy int64 index constant inside the trace
  # clashed with int32 indices when x64 was switched on and off between calls.
  swapped = jnp.stack([got[..., int(k)] for k in swap], axis=-1)
  return jnp.where(direct[..., None], got, swapped)
