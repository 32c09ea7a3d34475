"""The surrogate null with its surrogates split over the devices of a mesh (one or many processes).

Axis legend: S surrogates (S' padded to fill the devices), D devices of the mesh, P prompts,
U units, T time steps, K tested atoms.

Each device holds every prompt's activity (the activations are small: P·U·T floats; a global
array sharded over prompts, e.g. ``distributed.global_prompts``, is all-gathered once inside the
program) and the rows of the ``NullDesign`` that fall to it, a contiguous block of whole inverse
pairs. It reduces its surrogates with the same scan as the single-device kernel
(``nulls.scan_moments``); the sums s1, s2 and the counts cnt, ge are then added over the mesh (one
``psum``: the counts are integers, exact; the sums change only in the order of the additions) and
the (S, U, K) null head statistics are gathered in design order. So the result equals
``nulls.null_moments`` of one process holding everything, to rounding, for every design.

Pooled atoms (pool="concat") of a trial design take the spectral path
(``analysis.nulls_spectral.scan_slots``) wherever it applies on one device: the rotation pairs,
in relabelling order, are split into contiguous blocks; each device makes the spectra of the
relabellings its block touches and reduces its pairs.

Grids per surrogate otherwise: the compiled Gaussian MMI kernel (``nulls.fast_grid``) where it applies,
otherwise the estimator itself (``phiid.pairs.all_pairs_core`` of acts against the surrogate
series, the straightforward computation, trial and circular designs only: pair_shift has no
raw-series form).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from synergy_jax.analysis import nulls, nulls_spectral
from synergy_jax.analysis.ranking import ATOM_INDEX
from synergy_jax.phiid import pairs
from synergy_jax.phiid.config import PhiidConfig
from synergy_jax.phiid.grid import SWAP_XY


@dataclasses.dataclass(frozen=True)
class _EstimatorGrid:
  """grid(perm, shift) → (v, h) from the estimator on the raw surrogate series: v (U, U, K) the
  atoms ``idx`` (diagonal and degenerate NaN), h the mean of v and its x↔y mirror atoms
  (unit j's two roles in the moved data, as ``nulls.null_moments``'s slow path)."""
  method: str
  config: PhiidConfig
  idx: tuple
  swap: tuple
  block: int
  dtype: str

  def __call__(self, acts):
    n = acts.shape[1]
    off = ~jnp.eye(n, dtype=bool)[..., None]

    def grid(perm, shift):
      y = acts[perm]
      if self.method == "circular":
        y = nulls.circular_shift(y, shift)
      atoms, _ = pairs.all_pairs_core(acts, y, config=self.config, same=False, mesh=None,
                                      block=self.block, dtype=jnp.dtype(self.dtype))
      v = jnp.where(off, atoms[..., list(self.idx)], jnp.nan)
      mirror = jnp.where(off, atoms[..., list(self.swap)], jnp.nan)
      return v, 0.5 * (v + mirror)

    return grid


@dataclasses.dataclass(frozen=True)
class _KernelGrid:
  """``nulls.fast_grid`` as a hashable static argument."""
  method: str
  tau: int
  pool: str
  weights: tuple

  def __call__(self, acts):
    return nulls.fast_grid(acts, method=self.method, tau=self.tau, pool=self.pool,
                           weights=self.weights)


@functools.partial(jax.jit, static_argnames=("make_grid", "mesh", "paired", "dtype"))
def _sharded_moments(acts, obs, prompt_map, shifts, valid, *, make_grid, mesh, paired, dtype):
  """Every device scans its rows of the design; sums and counts psummed, heads gathered."""
  axes = tuple(mesh.axis_names)

  def local(a, o, pm, sh, ok):
    carry, heads = nulls.scan_moments(make_grid(a.astype(dtype)), o.astype(dtype), pm, sh, ok,
                                      paired=paired)
    carry = tuple(jax.lax.psum(c, axes) for c in carry)
    return carry, jax.lax.all_gather(heads, axes, axis=0, tiled=True)

  rep, rows = PartitionSpec(), PartitionSpec(axes)
  return jax.shard_map(local, mesh=mesh, in_specs=(rep, rep, rows, rows, rows),
                       out_specs=(rep, rep), check_vma=False)(acts, obs, prompt_map, shifts, valid)


@functools.partial(jax.jit, static_argnames=("mesh", "tau", "weights", "dtype"))
def _sharded_spectral(acts, obs, orders, rel, ks, oks, *, mesh, tau, weights, dtype):
  """``nulls_spectral.scan_slots`` on every device's block of rotation pairs; sums and counts
  psummed, heads gathered in slot order."""
  axes = tuple(mesh.axis_names)

  def local(a, o, od, r, k, ok):
    carry, heads = nulls_spectral.scan_slots(a.astype(dtype), o.astype(dtype), od, r, k, ok,
                                             tau=tau, weights=weights)
    carry = tuple(jax.lax.psum(c, axes) for c in carry)
    return carry, jax.lax.all_gather(heads, axes, axis=0, tiled=True)

  rep, rows = PartitionSpec(), PartitionSpec(axes)
  return jax.shard_map(local, mesh=mesh, in_specs=(rep, rep, rep, rows, rows, rows),
                       out_specs=(rep, rep), check_vma=False)(acts, obs, orders, rel, ks, oks)


def _spectral_moments(acts, obs, design, config, atoms, mesh, dtype) -> "nulls.NullMoments":
  """The spectral path (pooled atoms, trial design) with the rotation pairs split over ``mesh``:
  contiguous blocks in relabelling order, padded with unused pairs to fill the devices."""
  rel, ks, rows = nulls_spectral.flat_slots(design)
  spare = -len(rel) % mesh.devices.size
  rel = np.concatenate([rel, np.repeat(rel[-1:], spare)])
  ks = np.concatenate([ks, np.ones(spare, ks.dtype)])
  rows = np.concatenate([rows, -np.ones((spare, 2), rows.dtype)])
  spec = PartitionSpec(tuple(mesh.axis_names))
  (s1, s2, cnt, ge), heads = _sharded_spectral(
      acts, _global(obs, mesh, PartitionSpec()), _global(design.orders, mesh, PartitionSpec()),
      _global(rel, mesh, spec), _global(ks, mesh, spec), _global(rows >= 0, mesh, spec),
      mesh=mesh, tau=config.tau, weights=nulls.kernel_weights(atoms), dtype=dtype)
  local = lambda v: np.asarray(v.addressable_data(0), np.float64)
  heads = local(heads)
  null_head = np.full((design.n_surrogates,) + heads.shape[2:], np.nan)
  used = rows >= 0
  null_head[rows[used]] = heads[used]
  return nulls.NullMoments(local(s1), local(s2), local(cnt), local(ge), null_head)


def _global(value: np.ndarray, mesh, spec) -> jax.Array:
  """A host array that every process holds in full → a global array laid out as ``spec``."""
  value = np.asarray(value)
  sharding = NamedSharding(mesh, spec)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def padded_plan(design: "nulls.NullDesign", num_devices: int):
  """(S', P) prompt map and shifts and (S',) validity, S' ≥ S a multiple of the devices (of
  2 × the devices for a paired design, so no inverse pair is split); extra rows repeat row 0 and
  are invalid."""
  unit = num_devices * (2 if design.paired else 1)
  num = design.n_surrogates
  spare = -num % unit
  fill = lambda v: np.concatenate([v, np.repeat(v[:1], spare, 0)])
  valid = np.arange(num + spare) < num
  return fill(design.prompt_map), fill(design.shifts), valid


def null_moments(acts, observed_pairs: np.ndarray, design: "nulls.NullDesign", config, *,
                 mesh: jax.sharding.Mesh, atoms: Sequence[str] = ("sts", "rtr"),
                 dtype=None, block_size: int | None = None) -> "nulls.NullMoments":
  """``nulls.null_moments`` with the surrogates split over ``mesh``'s devices.

  Args:
    acts: (P, U, T) activity: a host array (the same on every process) or a global
      ``jax.Array`` on ``mesh`` in any layout (e.g. prompts split over processes).
    observed_pairs: (U, U, K) observed values of ``atoms`` (diagonal NaN), the same everywhere.
    design: the ``nulls.NullDesign`` of all P prompts, the same on every process.
    config: the ``phiid.PhiidConfig`` of the observed atoms.
    mesh: devices to split the surrogates over (any shape; all axes are used).
    dtype: compute dtype (default float64 under x64, else float32).
    block_size: rows per block of the estimator path (default ``pairs.auto_block_size``).
  Returns:
    The same ``NullMoments`` on every process (numpy, float64).
  """
  p, n, t = acts.shape
  obs = np.asarray(observed_pairs, np.float64)
  if obs.shape != (n, n, len(atoms)):
    raise ValueError(f"observed_pairs has shape {obs.shape}; expected {(n, n, len(atoms))} "
                     f"for atoms {tuple(atoms)}")
  if design.prompt_map.shape[1] != p:
    raise ValueError(f"design has {design.prompt_map.shape[1]} prompts; acts has {p}")
  dtype = jnp.dtype(dtype) if dtype is not None else pairs.default_dtype()
  if not isinstance(acts, jax.Array):
    acts = _global(acts, mesh, PartitionSpec())
  if nulls_spectral.applies(design, config, atoms, dtype.itemsize, n):
    return _spectral_moments(acts, obs, design, config, atoms, mesh, dtype)
  if nulls.kernel_applies(config, atoms):
    make_grid = _KernelGrid(design.method, config.tau, config.pool, nulls.kernel_weights(atoms))
    paired = design.paired
  else:
    if design.method == "pair_shift":
      raise ValueError("null='pair_shift' needs the Gaussian MMI kernel (kind='gaussian', "
                       "redundancy='mmi', preprocess='none', no bias correction or smooth_min) "
                       f"and swap-symmetric atoms; got {config} and atoms {tuple(atoms)}")
    idx = tuple(ATOM_INDEX[a] for a in atoms)
    if block_size is None:
      block_size = pairs.auto_block_size(p, n, pairs.lagged_steps(t, config),
                                         itemsize=dtype.itemsize, config=config)
    make_grid = _EstimatorGrid(design.method, config, idx, tuple(int(SWAP_XY[i]) for i in idx),
                               min(block_size, n), dtype.name)
    paired = False  # the estimator path computes every surrogate, as the slow reference does
  rows = PartitionSpec(tuple(mesh.axis_names))
  plan = padded_plan(dataclasses.replace(design, paired=paired), mesh.devices.size)
  (s1, s2, cnt, ge), heads = _sharded_moments(
      acts, _global(obs, mesh, PartitionSpec()), *(_global(v, mesh, rows) for v in plan),
      make_grid=make_grid, mesh=mesh, paired=paired, dtype=dtype)
  local = lambda v: np.asarray(v.addressable_data(0), np.float64)
  return nulls.NullMoments(local(s1), local(s2), local(cnt), local(ge),
                           local(heads)[:design.n_surrogates])
