"""The pair grid: row blocks under ``lax.map``, the half-grid band, sharding over a mesh, and the
assembly of the (U, M, 16) result in row chunks.

Axis legend: U x-side units (padded to Upad = a multiple of the block), M y-side units, B rows
per block, W the y-side window of a block, C rows per assembled chunk, D devices of a mesh.

Row blocks run under ``lax.map`` (one compiled body, no Python loop over pairs); with a mesh the
blocks are split over its devices by ``jax.shard_map`` and every block is computed by the same
program, so the result does not depend on the number of devices. With a single set of units only
about half the grid is computed: [j, i] is [i, j] with x and y exchanged (``Layout``).

The blocks' storage (the band, (Upad, W, 16), about half the result) is turned into the result C
rows at a time (``assemble_rows``): each chunk is read from the storage, finished by the caller
(Möbius inversion and masks) and written into one preallocated (U, M, 16) output with
``dynamic_update_slice``. So a call holds the storage, the output and one chunk's temporaries.
Assembling the whole grid at once held about two more (U, M, 16) arrays (the read, its x/y
exchanged copy, the inverted atoms): at U = 4096 in float32 the compiled plan was 3.06 GiB, now
1.67 GiB (1 GiB of it the result). With a mesh each device keeps the storage rows of its own
blocks and receives the x↔y exchanged entries of its rows from the other devices, one chunk at a
time (``lax.all_to_all``), instead of gathering the whole band (U = 16384 on 8 devices: 11.1 GiB
per device before, 3.38 GiB now, 2.13 GiB of it the device's share of the result).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from synergy_jax.phiid import lattice

# Atom index after exchanging x and y in both past and future ("xty" ↔ "ytx", "rts" stays, ...).
_SWAP = {"r": "r", "x": "y", "y": "x", "s": "s"}
SWAP_XY = np.array([lattice.ATOMS.index(_SWAP[a[0]] + "t" + _SWAP[a[2]]) for a in lattice.ATOMS])

# Pair-channel values per assembled chunk (8 MiB in float32): small next to the result, large
# enough that the chunk loop's overhead does not show.
CHUNK_VALUES = 2 ** 21


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


def chunk_rows(num_rows, m):
  """Rows per assembled chunk of a grid with ``m`` columns (``CHUNK_VALUES`` values)."""
  return int(max(1, min(num_rows, CHUNK_VALUES // (16 * m))))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Where the blocks' storage keeps pair (i, j): in storage row i (its x-unit), column
  ``col(i, j)``, when ``stored(i, j)``. The band (``band`` True) keeps pairs with
  (j − i) mod upad ≤ upad // 2, at column i mod block + (j − i) mod upad; a full grid keeps every
  pair at column j."""
  band: bool
  block: int
  upad: int

  def stored(self, i, j):
    if not self.band:
      return jnp.ones(jnp.broadcast_shapes(jnp.shape(i), jnp.shape(j)), bool)
    return (j - i) % self.upad <= self.upad // 2

  def col(self, i, j):
    if not self.band:
      return jnp.broadcast_to(j, jnp.broadcast_shapes(jnp.shape(i), jnp.shape(j)))
    return jnp.where(self.stored(i, j), i % self.block + (j - i) % self.upad, 0)


def pair_grid(body, xs, ys, *, u, block, same, mesh, finish, aux=()):
  """Every ordered pair's atoms and first singular prompt.

  body(xs_block, ys_window) → ((B, W, 16) lattice values, (B, W) int32 first singular prompt)
  with xs_block the block's rows of each x-side input (unit axis 1) and ys_window the y-side
  inputs. finish(vals (C, M, 16), first (C, M), rows (C,), *aux) → (C, M, 16) atoms of those
  rows (``aux``: arrays it needs, passed explicitly so that they can enter ``shard_map``).
  Returns ((U, M, 16) atoms, (U, M) int32 first singular prompt, symmetrised when ``same``);
  with a mesh both are split by rows over its devices.
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

  # Storage rows in block order; with a mesh each device keeps its own blocks' rows (the spare
  # copies of block 0 that pad the count become rows ≥ upad, never read).
  vals, first = map_blocks(one_block, starts, (xs, ys), mesh)
  vals = vals.reshape((-1, width, 16))
  first = first.reshape((-1, width))
  return assemble(vals, first, aux, Layout(band, block, upad), finish, u=u,
                  m=u if same else width, same=same, mesh=mesh)


def assemble(vals, first, aux, layout, finish, *, u, m, same, mesh):
  """((U, M, 16) atoms, (U, M) first) from the storage vals (R, W, 16), first (R, W).

  Without a mesh the rows are assembled into one preallocated output; with one each device
  assembles the rows of its own storage and receives the x↔y exchanged entries it needs from
  the other devices chunk by chunk (``lax.all_to_all``), so no device holds the whole storage.
  """
  if mesh is None:
    return assemble_rows(vals, first, aux, start=0, num_rows=u, num_shards=1,
                         exchange=lambda v: v, layout=layout, finish=finish, u=u, m=m, same=same)
  axes = tuple(mesh.axis_names)
  share = vals.shape[0] // mesh.size

  def local(start, vals_, first_, *aux_):
    return assemble_rows(vals_, first_, aux_, start=start[0], num_rows=share,
                         num_shards=mesh.size,
                         exchange=lambda v: lax.all_to_all(v, axes, 0, 0), layout=layout,
                         finish=finish, u=u, m=m, same=same)

  rows = PartitionSpec(axes)
  atoms, first = jax.shard_map(
      local, mesh=mesh, in_specs=(rows, rows, rows) + (PartitionSpec(),) * len(aux),
      out_specs=(rows, rows), check_vma=False)(
          jnp.arange(mesh.size, dtype=jnp.int32) * share, vals, first, *aux)
  return atoms[:u], first[:u]


def assemble_rows(vals, first, aux, *, start, num_rows, num_shards, exchange, layout, finish,
                  u, m, same):
  """Rows start … start + num_rows − 1 of the result, chunk by chunk into preallocated
  ((num_rows, M, 16), (num_rows, M)) outputs.

  vals (R, W, 16), first (R, W): storage rows start … start + R − 1 (all rows without a mesh).
  Entry [i, j] is read from row i when ``layout.stored(i, j)``, else from row j with x and y
  exchanged; with ``same`` the first singular prompt is symmetrised (earliest of [i, j] and
  [j, i]). Rows of other devices come through exchange(send (D, R, C, ...)) → (D, R, C, ...),
  row block d from device d. Rows ≥ U (padding of a mesh's last share) are computed as garbage
  and dropped by the caller.
  """
  stored_rows = vals.shape[0]
  chunk = chunk_rows(num_rows, max(m, num_shards * stored_rows))
  mine = start + jnp.arange(stored_rows, dtype=jnp.int32)  # global index of each storage row
  col = jnp.arange(m, dtype=jnp.int32)[None, :]

  def step(c, carry):
    off = jnp.minimum(c * chunk, num_rows - chunk)  # the last chunk overlaps its predecessor
    local_rows = off + jnp.arange(chunk, dtype=jnp.int32)
    i = (start + local_rows)[:, None]  # (C, 1) global rows
    here = layout.stored(i, col)  # (C, M)
    pos = layout.col(i, col)
    v, f = vals[local_rows[:, None], pos], first[local_rows[:, None], pos]
    if same:
      # Every device's rows i of this chunk, as targets of the entries stored in my rows j.
      targets = (jnp.arange(num_shards, dtype=jnp.int32)[:, None] * num_rows
                 + local_rows[None, :])[:, None, :]  # (D, 1, C)
      src = (jnp.arange(stored_rows)[None, :, None], layout.col(mine[None, :, None], targets))
      got_v = exchange(vals[src]).reshape((-1, chunk, 16))[:m].swapaxes(0, 1)  # (C, M, 16)
      got_f = exchange(first[src]).reshape((-1, chunk))[:m].T  # (C, M): [i, j] = stored [j, i]
      if layout.band:
        swapped = jnp.stack([got_v[..., int(k)] for k in SWAP_XY], axis=-1)
        v = jnp.where(here[..., None], v, swapped)
        f_ij = jnp.where(here, f, got_f)
      else:
        f_ij = f
      f_ji = jnp.where(layout.stored(col, i), got_f, f)
      # a singular pair is singular both ways round: report the earliest prompt
      f = jnp.where((f_ij >= 0) & (f_ji >= 0), jnp.minimum(f_ij, f_ji), jnp.maximum(f_ij, f_ji))
    atoms = finish(v, f, jnp.minimum(i[:, 0], u - 1), *aux)
    return (lax.dynamic_update_slice(carry[0], atoms.astype(vals.dtype), (off, 0, 0)),
            lax.dynamic_update_slice(carry[1], f, (off, 0)))

  init = (jnp.zeros((num_rows, m, 16), vals.dtype), jnp.zeros((num_rows, m), jnp.int32))
  return lax.fori_loop(0, -(-num_rows // chunk), step, init)
