"""ΦID of every ordered pair of units at once, for any estimator of the kind table.

Axis legend: P prompts, U units (x side), M units (y side), T time steps, S lagged samples.

Each unit's series is preprocessed and turned into the estimator's lagged vectors once
(``units.prepared``); the kind's block function then evaluates a block of x-units against every
y-unit (``kinds``: Gaussian-family blocks use one matrix product per prompt and closed-form small
determinants, discrete blocks count joint states), over the pair grid of ``grid.pair_grid``
(row blocks, half-grid band, sharding). Results equal ``phiid.phiid`` on each pair.
"""
import functools
import warnings

import jax
import jax.numpy as jnp

from synergy_jax.phiid import checks
from synergy_jax.phiid import grid
from synergy_jax.phiid import kinds
from synergy_jax.phiid import lattice
from synergy_jax.phiid import units
from synergy_jax.phiid.config import PhiidConfig
from synergy_jax.phiid.config import resolve_config


def default_dtype():
  return jax.dtypes.canonicalize_dtype(jnp.float64)


def auto_block_size(num_prompts, num_units, num_steps, *, redundancy="mmi", kind="gaussian",
                    itemsize=4, memory_bytes=2 ** 31, num_states=2, config=None, local=False):
  """Rows per block so a block's temporaries stay near ``memory_bytes`` (default 2 GiB).

  ``num_steps`` is the number of lagged samples S per prompt. The bytes per row come from the
  kind's memory model (``Kind.row_bytes``; e.g. Gaussian MMI ~48 arrays of (B, U), capped at 128
  rows; CCS ~80 arrays of (B, U), capped at 8 rows; local estimates ~64 arrays of (B, U, S);
  discrete ~24 tables of (P, B, U, K⁴)).
  """
  if config is None:
    config = PhiidConfig(redundancy=redundancy, kind=kind,
                         num_states=num_states if kind == "discrete" and num_states != 2
                         else None,
                         discretise="quantile" if kind == "discrete" and num_states != 2
                         else "lagged")
  kind_ = kinds.kind_of(config)
  per_row = kind_.row_bytes(num_prompts, num_units, num_steps, config, itemsize, local)
  rows = min(memory_bytes // per_row, kind_.max_rows(config, local))
  return int(max(1, min(num_units, rows)))


@functools.partial(jax.jit, static_argnames=("config", "same", "mesh", "block", "dtype"))
def all_pairs_core(acts, acts_y, *, config, same, mesh, block, dtype):
  """(P, U, T), (P, M, T) → (U, M, 16) atoms (NaN for degenerate units and singular pairs) and
  the (U, M) first singular prompt (−1: none)."""
  kind = kinds.kind_of(config)
  u = acts.shape[1]
  px, fx, _, _, bad_x = units.prepared(acts, config, dtype)
  xs = kind.encode(px, fx, config, dtype)
  if same:
    ys, bad_y = xs, bad_x
  else:
    py, fy, _, _, bad_y = units.prepared(acts_y, config, dtype)
    ys = kind.encode(py, fy, config, dtype)
  atoms, first = grid.pair_grid(lambda xb, yw: kind.block(xb, yw, config), xs, ys, u=u,
                                block=block, same=same, mesh=mesh,
                                finish=functools.partial(finish_rows, same=same),
                                aux=(bad_x, bad_y))
  if mesh is not None:
    # Rows stay split over the devices: without this the compiler may keep a full (U, U, 16)
    # copy per device (17 GB each at U = 16384 in float32).
    rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(tuple(mesh.axis_names)))
    atoms = jax.lax.with_sharding_constraint(atoms, rows)
    first = jax.lax.with_sharding_constraint(first, rows)
  return atoms, first


def finish_rows(vals, first, rows, bad_x, bad_y, *, same):
  """Rows ``rows`` (C,) of the grid: (C, M, 16) lattice values → atoms (Möbius inversion), NaN
  where a unit is degenerate (bad_x (U,), bad_y (M,)), the pair singular (first (C, M) ≥ 0) or,
  with one set of units (``same``), on the diagonal."""
  atoms = lattice.atoms_from_lattice_values(vals)
  masked = bad_x[rows][:, None] | bad_y[None, :] | (first >= 0)
  if same:
    masked = masked | (rows[:, None] == jnp.arange(vals.shape[1])[None, :])
  return jnp.where(masked[..., None], jnp.asarray(jnp.nan, atoms.dtype), atoms)


def validate(acts, acts_y, config, on_degenerate):
  """Shapes, length and choice checks shared by the all-pairs entry points: (P, U, T)."""
  checks.check_choice("on_degenerate", on_degenerate, checks.ON_DEGENERATE)
  p, u, t = checks.check_shape(acts)
  checks.check_length(t, config)
  if acts_y is not None and tuple(jnp.shape(acts_y)) != (p, u, t):
    raise ValueError(f"acts_y has shape {tuple(jnp.shape(acts_y))}; it must match acts "
                     f"{(p, u, t)}")
  return p, u, t


def lagged_steps(t, config):
  """Lagged samples per prompt after preprocessing."""
  return t - config.tau - (1 if config.preprocess == "diff" else 0)


def is_concrete(*arrays):
  return not any(isinstance(v, jax.core.Tracer) for v in arrays if v is not None)


def settle(problems, on_degenerate, what):
  """Raise (on_degenerate="raise") or warn ("mask") about ``problems``; nothing when empty."""
  if not problems:
    return
  if on_degenerate == "raise":
    raise ValueError(f"{what}: {len(problems)} quantities cannot be estimated: "
                     f"{checks.describe(problems)}. Pass on_degenerate='mask' to get NaN for "
                     f"exactly these units and pairs (phiid.degenerate lists them all).")
  unit_ids = sorted({pr.unit for pr in problems if pr.partner is None})
  pair_ids = sorted({(pr.unit, pr.partner) for pr in problems if pr.partner is not None})
  warnings.warn(f"{what}: masking units {unit_ids} with NaN rows/columns and pairs {pair_ids} "
                f"with NaN: {checks.describe(problems)}", stacklevel=3)


def all_pairs(acts, *, tau=1, redundancy="mmi", pool="mean", kind="gaussian", acts_y=None,
              mesh=None, on_degenerate="raise", block_size=None, num_states=None, dtype=None,
              memory_bytes=2 ** 31, config=None):
  """ΦID atoms of every ordered pair of units.

  Args:
    acts: (P, U, T) activity: P prompts, U units, T time steps (e.g. per-head attention-output
      norms).
    config: a ``PhiidConfig`` (estimator kind, lag, redundancy, pooling, preprocessing, bias
      correction, discretisation). The legacy keyword arguments tau, redundancy, pool, kind,
      num_states build one when ``config`` is None (num_states with kind="discrete" means
      integer states given, discretise="given") and must stay at their defaults otherwise.
      T ≥ ``min_series_length(config)``.
    acts_y: optional (P, U, T); when given, unit j of source y is taken from ``acts_y`` (e.g. a
      circularly shifted surrogate) and the diagonal is computed instead of NaN.
    mesh: None (one device, the default), "auto" (a 1-D mesh over all local devices) or a
      ``jax.sharding.Mesh``; row blocks of the pair grid are split over all of its devices.
      Results are identical to one device.
    on_degenerate: "raise" (ValueError naming every unit/pair that cannot be estimated, see
      ``phiid.degenerate``) or "mask" (NaN for exactly those units' rows and columns and those
      pairs, with a warning naming them). Inside a caller's ``jax.jit`` values cannot be
      inspected, so they always come back as NaN there.
    block_size: rows of the pair grid per block (default: ``auto_block_size``).
    dtype: computation dtype; default float64 when jax_enable_x64 is on, else float32. Every
      check runs in this dtype. Matrix products use precision="highest".
    memory_bytes: temporaries budget used to pick ``block_size``.
  Returns:
    (U, U, 16) atoms in ``ATOMS`` order (nats); [i, j] has unit i as source x and unit j as
    source y; [j, i] is [i, j] with x and y exchanged. Diagonal NaN unless ``acts_y`` is given.
  """
  config = resolve_config(config, tau=tau, redundancy=redundancy, pool=pool, kind=kind,
                          num_states=num_states)
  p, u, t = validate(acts, acts_y, config, on_degenerate)
  dtype = jnp.dtype(dtype) if dtype is not None else default_dtype()
  mesh = grid.resolve_mesh(mesh)
  same = acts_y is None
  concrete = is_concrete(acts, acts_y)
  problems = []
  if concrete:
    problems = units.unit_problems(acts, config, dtype)
    if not same:
      problems += units.unit_problems(acts_y, config, dtype, "acts_y")
    if on_degenerate == "raise":
      settle(problems, on_degenerate, "all_pairs")
  if block_size is None:
    block_size = auto_block_size(p, u, lagged_steps(t, config), itemsize=dtype.itemsize,
                                 memory_bytes=memory_bytes, config=config)
  if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size={block_size!r} must be an int ≥ 1")
  atoms, first = all_pairs_core(jnp.asarray(acts), jnp.asarray(acts if same else acts_y),
                                 config=config, same=same, mesh=mesh,
                                 block=min(block_size, u), dtype=dtype)
  if concrete:
    bad_x = bad_units(problems, u, "acts")
    bad_y = bad_x if same else bad_units(problems, u, "acts_y")
    problems += checks.pair_problems(first, bad_x, bad_y, same, config.pool == "concat", dtype)
    settle(problems, on_degenerate, "all_pairs")
  return atoms


def bad_units(problems, u, series):
  bad = [False] * u
  for pr in problems:
    if pr.partner is None and pr.series == series:
      bad[pr.unit] = True
  return jnp.asarray(bad)
