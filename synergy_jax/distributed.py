"""One process per host: a global mesh over every host's devices, prompts split between hosts.

Axis legend: P prompts (all hosts), P_h the prompts one process holds, U units, T time steps.

A TPU pod slice or a multi-GPU cluster runs one Python process per host; each process sees only
its own devices and holds only its share of the prompts. Under pool="mean" every ΦID estimator
here is a mean over prompts of per-prompt lattice values, and the atoms are linear in them
(Möbius inversion), so the per-prompt sums are sufficient statistics: every device computes the
atoms of its own prompts with the single-process kernel (``phiid.pairs.all_pairs_core``), the
sums weighted by prompt counts are added over the global mesh (one ``psum``), and every process
gets the same (U, U, 16) atoms as one process holding all prompts (up to the order of the
additions). A unit that is degenerate in any prompt, or a pair singular in any prompt, is not
finite in the sum: `all_pairs` raises naming those pairs (or returns them as NaN with
on_degenerate="mask", as ``phiid.all_pairs`` does).

Under pool="concat" the estimate pools the lagged samples of all prompts, with statistics over
all of them (standardisation, copula ranks, discrete quantiles), so per-prompt sums are not
enough: the activity of every prompt is gathered onto every device explicitly (it is small:
P·U·T floats, 55 MB for 60 prompts × 1152 heads × 100 steps in float64), the single-process
program runs on it with the pair grid's row blocks split over the global mesh, and the result is
gathered onto every device: the same (U, U, 16) as one process holding every prompt.

  initialize(coordinator_address, num_processes, process_id, cpu_devices=None)
  prompt_mesh()                                the global 1-D mesh ("prompts") over all devices
  global_prompts(local, mesh)                  this process's (P_h, U, T) → a global (P, U, T)
  all_pairs(acts, config=..., acts_y=...)      global acts → (U, U, 16) atoms on every process
                                               (pool "mean": summed; "concat": gathered)
  null_moments(local_acts, obs, design, ...)   the surrogate null (any design): activity gathered,
                                               surrogates split over the global mesh

Capture needs nothing new: each process runs ``pipeline.capture.collect_activity`` on its own
prompts and passes the activity to ``global_prompts``. See docs/multihost.md for launch commands.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from synergy_jax.phiid import pairs
from synergy_jax.phiid.config import resolve_config

AXIS = "prompts"


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, cpu_devices: int | None = None,
               timeout_s: int = 300):
  """Joins this process to the job (call before any other JAX use).

  coordinator_address: "host:port" of process 0 (the same string on every process); with
    num_processes and process_id None too, ``jax.distributed`` detects the cluster (Cloud TPU,
    Slurm, Open MPI).
  cpu_devices: for CPU-only jobs (tests, clusters without accelerators): devices per process,
    and cross-process collectives through gloo; None on TPU / GPU.
  """
  if process_id is not None and num_processes is not None and \
      not 0 <= process_id < num_processes:
    raise ValueError(f"process_id={process_id} must be in [0, num_processes={num_processes})")
  if cpu_devices is not None:
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", int(cpu_devices))
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes, process_id,
                             initialization_timeout=timeout_s)


def prompt_mesh() -> jax.sharding.Mesh:
  """1-D mesh over the devices of every process, axis "prompts" (process-major order)."""
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return jax.sharding.Mesh(np.array(devices), (AXIS,))


def global_prompts(local: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
  """This process's prompts (P_h, U, T) → the global (P, U, T) array, prompts split over the
  mesh; process h's prompts come after those of processes 0 … h − 1.

  Every process must hold the same P_h, a multiple of its local device count (each device gets
  the same number of prompts, so that the sums are weighted alike).
  """
  local = np.asarray(local)
  if local.ndim != 3:
    raise ValueError(f"local activity must be (prompts, units, steps), got shape {local.shape}")
  per_process = mesh.devices.size // jax.process_count()
  if local.shape[0] % per_process:
    raise ValueError(f"process {jax.process_index()} holds {local.shape[0]} prompts, not a "
                     f"multiple of its {per_process} devices")
  sharding = NamedSharding(mesh, PartitionSpec(AXIS))
  shape = (local.shape[0] * jax.process_count(),) + local.shape[1:]
  return jax.make_array_from_process_local_data(sharding, local, shape)


@functools.partial(jax.jit, static_argnames=("config", "mesh", "same", "block", "dtype"))
def _summed_atoms(acts, acts_y, *, config, mesh, same, block, dtype):
  """Prompt-weighted mean over the mesh of every device's all-pairs atoms: (U, U, 16)."""
  total = acts.shape[0]

  def local(a, ay):
    atoms, _ = pairs.all_pairs_core(a, ay, config=config, same=same, mesh=None, block=block,
                                    dtype=dtype)
    return jax.lax.psum(atoms * (a.shape[0] / total), AXIS)

  spec = PartitionSpec(AXIS)
  return jax.shard_map(local, mesh=mesh, in_specs=(spec, spec), out_specs=PartitionSpec(),
                       check_vma=False)(acts, acts_y)


@functools.partial(jax.jit, static_argnames=("config", "mesh", "same", "block", "dtype"))
def _pooled_atoms(acts, acts_y, *, config, mesh, same, block, dtype):
  """pool="concat": every prompt gathered onto every device, then the single-process program with
  the pair grid's rows split over the mesh; the (U, U, 16) atoms gathered onto every device."""
  everywhere = NamedSharding(mesh, PartitionSpec())
  acts = jax.lax.with_sharding_constraint(acts, everywhere)
  acts_y = jax.lax.with_sharding_constraint(acts_y, everywhere)
  atoms, _ = pairs.all_pairs_core(acts, acts_y, config=config, same=same, mesh=mesh, block=block,
                                  dtype=dtype)
  return jax.lax.with_sharding_constraint(atoms, everywhere)


def all_pairs(acts: jax.Array, *, config=None, acts_y: jax.Array | None = None,
              mesh: jax.sharding.Mesh | None = None, block_size: int | None = None,
              dtype=None, on_degenerate: str = "raise") -> np.ndarray:
  """ΦID atoms of every ordered pair from prompts spread over all processes.

  Args:
    acts: global (P, U, T) array from ``global_prompts`` (or any array sharded over ``mesh``'s
      "prompts" axis). acts_y: the same for source y (e.g. surrogates), as ``phiid.all_pairs``.
    config: ``phiid.PhiidConfig``. pool="mean": each device estimates its own prompts and the
      prompt-weighted atoms are summed over the mesh. pool="concat" pools the lagged samples of
      all prompts (statistics over all of them: standardisation, ranks, quantiles), so every
      prompt is gathered onto every device first (P·U·T floats) and the pair grid's row blocks
      are split over the mesh; the result is the single-process program's.
    mesh: the mesh of ``acts`` (default ``prompt_mesh()``).
    on_degenerate: "raise" (default, as ``phiid.all_pairs``): a ValueError naming the pairs
      whose estimate is not finite (a unit constant or a pair singular in some process's
      prompt); "mask": return them as NaN. The checks happen in-graph, so the prompt is not
      known here: call ``phiid.degenerate`` on each process's own prompts to name it.
  Returns:
    (U, U, 16) float atoms (nats) on every process.
  """
  if on_degenerate not in ("raise", "mask"):
    raise ValueError(f"on_degenerate must be 'raise' or 'mask', got {on_degenerate!r}")
  config = resolve_config(config)
  mesh = mesh or prompt_mesh()
  p, n, t = acts.shape
  if acts_y is not None and acts_y.shape != acts.shape:
    raise ValueError(f"acts_y has shape {acts_y.shape}; it must match acts {acts.shape}")
  if p % mesh.devices.size:
    raise ValueError(f"{p} prompts do not split evenly over {mesh.devices.size} devices")
  dtype = jnp.dtype(dtype) if dtype is not None else pairs.default_dtype()
  pooled = config.pool == "concat"
  if block_size is None:
    per_block = p if pooled else p // mesh.devices.size  # prompts a block function sees
    block_size = pairs.auto_block_size(per_block, n, pairs.lagged_steps(t, config),
                                       itemsize=dtype.itemsize, config=config)
  same = acts_y is None
  program = _pooled_atoms if pooled else _summed_atoms
  out = program(acts, acts if same else acts_y, config=config, mesh=mesh, same=same,
                block=min(block_size, n), dtype=dtype)
  atoms = np.asarray(out.addressable_data(0))
  finite = np.isfinite(atoms).all(-1)
  if same:  # a unit with itself is NaN by convention (phiid.all_pairs), not a failure
    np.fill_diagonal(finite, True)
  bad = np.argwhere(~finite)
  if on_degenerate == "raise" and len(bad):
    shown = ", ".join(f"({i}, {j})" for i, j in bad[:5])
    raise ValueError(f"distributed.all_pairs: {len(bad)} unit pair(s) have no finite estimate, "
                     f"e.g. {shown} (a unit constant or a pair singular in some prompt; run "
                     f"phiid.degenerate on each process's prompts to name it, or pass "
                     f"on_degenerate='mask')")
  return atoms


def null_moments(local_acts: np.ndarray, observed_pairs: np.ndarray, design, config, *,
                 mesh: jax.sharding.Mesh | None = None, atoms=("sts", "rtr"), dtype=None):
  """``analysis.nulls.null_moments`` with the prompts spread over processes, any design.

  local_acts: this process's (P_h, U, T) (as ``global_prompts``); design: the ``NullDesign`` of
  all P prompts, the same on every process (e.g. drawn from the same seed); observed_pairs the
  (U, U, K) observed values, the same on every process. The activations are small (P·U·T
  floats), so they are gathered onto every device inside the program and the *surrogates* are
  split over the global mesh (``analysis.nulls_sharded``): each device runs the compiled kernel
  of ``nulls`` (or the estimator, where the kernel does not apply) on its rows of the design,
  the sums and counts are added over the mesh and the null head statistics gathered. Every
  design works, including the default trial shuffling (which pairs prompts held by different
  processes). Returns the same ``NullMoments`` on every process, equal to one process holding
  every prompt up to the order of the additions.
  """
  from synergy_jax.analysis import nulls_sharded
  mesh = mesh or prompt_mesh()
  config = resolve_config(config)
  local_acts = np.asarray(local_acts)
  total = local_acts.shape[0] * jax.process_count()
  if design.prompt_map.shape[1] != total:
    raise ValueError(f"design has {design.prompt_map.shape[1]} prompts; the processes hold "
                     f"{total}")
  return nulls_sharded.null_moments(global_prompts(local_acts, mesh), observed_pairs, design,
                                    config, mesh=mesh, atoms=atoms, dtype=dtype)
