"""ΦID of every ordered pair of units at once, from lagged covariance blocks.

Axis legend used in einsum strings and comments:
  P prompts, N units (x side), M units (y side), B a block of x-side rows, S lagged samples
  (T − tau per prompt), K states of a discrete series.

Gaussian: every unit's past and future are standardised (per prompt, or over the pooled samples
for pool="concat"); one matrix product per row block gives the cross-correlations of the block's
x-units with every y-unit ([x_p; x_f] · [y_p; y_f]ᵀ → the four 2×2 blocks a, d, e, b), the
lag-tau autocorrelations give c and f, and the small determinants of the 4×4 correlation matrices
are evaluated in closed form (Cholesky order) over the (B, M) grid, one prompt at a time so every
temporary stays in cache. MMI averages need nothing per sample (the products of the determinant
arguments over a few prompts take one log); CCS adds the per-sample local terms.
With a single set of units only about half the grid is computed: [j, i] is [i, j] with x and y
exchanged (``_assemble_band``).

Discrete: one-hot (past, future) states of each unit; a matrix product per block counts the joint
states of every pair, and the plug-in lattice is evaluated on the (P, B, M, K, K, K, K) tables.

Row blocks run under ``lax.map`` (one compiled body, no Python loop over pairs); with a mesh the
blocks are split over its devices by ``jax.shard_map`` and every block is computed by the same
program, so the result does not depend on the number of devices.
"""
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec

from synergy_jax.phiid import checks
from synergy_jax.phiid import discrete
from synergy_jax.phiid import gaussian
from synergy_jax.phiid import lattice

_HIGHEST = lax.Precision.HIGHEST
# Rough number of (B, M)-sized (MMI) or (B, M, S)-sized (CCS) float temporaries alive at once in
# a block; sets the automatic block size.
_TEMPS_MMI = 48
_TEMPS_CCS = 64


def _default_dtype():
  return jax.dtypes.canonicalize_dtype(jnp.float64)


def _degenerate_units(a, tau):
  """(P, N, T) → (N,) bool: any prompt with NaN/inf or a constant past or future (in-graph)."""
  t = a.shape[-1]
  bad = ~jnp.all(jnp.isfinite(a), axis=-1)
  for seg in (a[..., :t - tau], a[..., tau:]):
    bad = bad | (jnp.max(seg, axis=-1) == jnp.min(seg, axis=-1))
  return jnp.any(bad, axis=0)


def _standardised_lags(a, tau, pool, bad):
  """Standardised past and future, (P, N, S) each; degenerate units get a harmless ramp instead
  (their rows and columns are set to NaN at the end) so no NaN enters the shared products.

  pool="mean" standardises each prompt's segment; pool="concat" uses the mean and ddof=1 std of
  the pooled P·S samples of each unit.
  """
  t = a.shape[-1]
  a = jnp.where(bad[None, :, None], jnp.arange(t, dtype=a.dtype), a)  # keep NaN out of the grid
  axes = -1 if pool == "mean" else (0, 2)
  out = []
  for seg in (a[..., :t - tau], a[..., tau:]):
    count = seg.shape[-1] if pool == "mean" else seg.shape[0] * seg.shape[-1]
    seg = seg - jnp.mean(seg, axis=axes, keepdims=True)
    seg = seg / jnp.sqrt(jnp.sum(seg * seg, axis=axes, keepdims=True) / (count - 1))
    out.append(seg)
  return out


def _gaussian_block(rows, xs, ys, *, pool, redundancy, block):
  """Average lattice values for one row block: (B, M, 16), nats.

  rows: first x-unit of the block (traced int). xs = (x_p, x_f) (P, Npad, S); ys = (y_p, y_f)
  (P, M, S). Prompts are visited one at a time so every temporary is (B, M) or (B, M, S) and
  stays in cache; pool="concat" first sums the cross-products of all prompts.
  """
  xp, xf = (lax.dynamic_slice_in_dim(v, rows, block, axis=1) for v in xs)  # (P, B, S)
  yp, yf = ys
  p, _, s = xp.shape
  m = yp.shape[1]
  denom = s - 1 if pool == "mean" else p * s - 1

  def corrs_of(q):
    """The six correlations (B, M) of prompt q (a dynamic index)."""
    lhs = jnp.concatenate([xp[q], xf[q]], axis=0)  # (2B, S)
    rhs = jnp.concatenate([yp[q], yf[q]], axis=0)  # (2M, S)
    g = jnp.einsum("bs,ms->bm", lhs, rhs, precision=_HIGHEST)  # (2B, 2M)
    c = jnp.sum(xp[q] * xf[q], axis=-1)  # (B,)
    f = jnp.sum(yp[q] * yf[q], axis=-1)  # (M,)
    return g, c, f

  if pool == "mean":
    def corrs(q):
      g, c, f = corrs_of(q)
      return _split(g / denom, c / denom, f / denom, block, m)
  else:
    def add(q, acc):
      g, c, f = corrs_of(q)
      return acc[0] + g, acc[1] + c, acc[2] + f
    zero = (jnp.zeros((2 * block, 2 * m), xp.dtype), jnp.zeros((block,), xp.dtype),
            jnp.zeros((m,), xp.dtype))
    g, c, f = lax.fori_loop(0, p, add, zero)
    pooled = _split(g / denom, c / denom, f / denom, block, m)
    corrs = lambda q: pooled

  if redundancy == "mmi":
    return _mmi_products(corrs, p if pool == "mean" else 1, (block, m), xp.dtype)

  # CCS: local terms of prompt q with prompt q's (or the pooled) correlations, summed over samples.
  def step_ccs(q, acc):
    zs = (xp[q][:, None, :], yp[q][None, :, :], xf[q][:, None, :], yf[q][None, :, :])
    vals = gaussian.local_lattice_values(corrs(q), zs, "ccs")  # 16 × (B, M, S)
    return tuple(t + jnp.sum(v, axis=-1) for t, v in zip(acc, vals))

  acc = lax.fori_loop(0, p, step_ccs, tuple(jnp.zeros((block, m), xp.dtype) for _ in range(16)))
  return jnp.stack(acc, axis=-1) / (p * s)


def _mmi_products(corrs, num, shape, dtype):
  """MMI lattice values (B, M, 16) averaged over ``num`` prompts with few logarithms.

  Each prompt's 18 positive arguments (``gaussian.mmi_arguments``) are multiplied over a chunk of
  prompts and one log per chunk is added up; chunks are short enough (4 prompts in float32, 16 in
  float64) that the products of arguments ≥ 1e-9 (resp. 1e-19) do not underflow.
  """
  chunk = 16 if jnp.dtype(dtype).itemsize >= 8 else 4
  num_chunks = -(-num // chunk)
  nargs = len(gaussian.MMI_ARG_NAMES)

  def one_chunk(ci, log_sums):
    def one_prompt(j, prods):
      q = ci * chunk + j
      args = gaussian.mmi_arguments(*corrs(jnp.minimum(q, num - 1)))
      valid = q < num
      return tuple(pr * jnp.where(valid, ar, 1) for pr, ar in zip(prods, args))
    prods = lax.fori_loop(0, chunk, one_prompt, tuple(jnp.ones(shape, dtype) for _ in range(nargs)))
    return tuple(ls + jnp.log(pr) for ls, pr in zip(log_sums, prods))

  log_sums = lax.fori_loop(0, num_chunks, one_chunk,
                           tuple(jnp.zeros(shape, dtype) for _ in range(nargs)))
  return gaussian.mmi_lattice_from_logs(jnp.stack(log_sums, axis=-1), num)


def _split(g, c, f, block, m):
  """(2B, 2M) correlations of [x_p; x_f] with [y_p; y_f] → (a, b, c, d, e, f), each (B, M)."""
  a, d = g[:block, :m], g[:block, m:]  # r(x_p, y_p), r(x_p, y_f)
  e, b = g[block:, :m], g[block:, m:]  # r(x_f, y_p), r(x_f, y_f)
  shape = a.shape
  return a, b, jnp.broadcast_to(c[:, None], shape), d, e, jnp.broadcast_to(f[None, :], shape)


def _discrete_block(rows, xs, ys, *, pool, redundancy, block, num_states):
  """Average lattice values for one row block from joint-state counts: (B, M, 16), nats.

  xs: (P, Npad, K², S) one-hot of (x_p, x_f); ys: (P, M, K², S) one-hot of (y_p, y_f).
  """
  k = num_states
  ux = lax.dynamic_slice_in_dim(xs[0], rows, block, axis=1)  # (P, B, K², S)
  ys = ys[0]
  # counts[p, b, m, (x_p x_f), (y_p y_f)]
  if pool == "mean":
    counts = jnp.einsum("pbus,pmvs->pbmuv", ux, ys, precision=_HIGHEST)
  else:
    counts = jnp.einsum("pbus,pmvs->bmuv", ux, ys, precision=_HIGHEST)[None]
  counts = counts.reshape(counts.shape[:3] + (k, k, k, k))  # axes x_p, x_f, y_p, y_f
  probs = jnp.transpose(counts, (0, 1, 2, 3, 5, 4, 6))  # → x_p, y_p, x_f, y_f
  probs = probs / jnp.sum(probs, axis=(-4, -3, -2, -1), keepdims=True)
  return jnp.mean(discrete.average_lattice_values(probs, redundancy), axis=0)


def _one_hot_lags(states, tau, k, dtype):
  """(P, N, T) int states → (P, N, K², S) one-hot of past·K + future."""
  t = states.shape[-1]
  idx = states[..., :t - tau] * k + states[..., tau:]
  return jnp.moveaxis(jax.nn.one_hot(idx, k * k, dtype=dtype), -1, -2)


def auto_block_size(num_prompts, num_units, num_steps, *, redundancy="mmi", kind="gaussian",
                    itemsize=4, memory_bytes=2 ** 31, num_states=2):
  """Rows per block so a block's temporaries stay near ``memory_bytes`` (default 2 GiB).

  Gaussian: prompts are visited one at a time, so MMI keeps ~48 arrays of (B, N) (capped at 128
  rows: larger blocks only leave the cache) and CCS ~64 arrays of (B, N, S); discrete: ~24
  tables of (P, B, N, K⁴).
  """
  if kind == "discrete":
    per_row = num_prompts * num_units * num_states ** 4 * 24 * itemsize
  elif redundancy == "mmi":
    per_row = num_units * _TEMPS_MMI * itemsize
    memory_bytes = min(memory_bytes, 128 * per_row)
  else:
    per_row = num_units * num_steps * _TEMPS_CCS * itemsize
  return int(max(1, min(num_units, memory_bytes // per_row)))


@functools.partial(jax.jit, static_argnames=(
    "tau", "redundancy", "pool", "kind", "same", "mesh", "block", "num_states", "dtype"))
def _all_pairs_core(acts, acts_y, *, tau, redundancy, pool, kind, same, mesh, block,
                    num_states, dtype):
  """(P, N, T), (P, M, T) → (N, M, 16) atoms with NaN rows/columns for degenerate units."""
  _, n, _ = acts.shape
  m = acts_y.shape[1]
  if kind == "gaussian":
    ax, ay = acts.astype(dtype), acts_y.astype(dtype)
    bad_x, bad_y = _degenerate_units(ax, tau), _degenerate_units(ay, tau)
    xs = _standardised_lags(ax, tau, pool, bad_x)
    ys = _standardised_lags(ay, tau, pool, bad_y)
    body = functools.partial(_gaussian_block, pool=pool, redundancy=redundancy, block=block)
  else:
    bad_x, bad_y = _degenerate_units(acts, tau), _degenerate_units(acts_y, tau)
    if num_states is None:
      sx, sy, k = discrete.binarise(acts), discrete.binarise(acts_y), 2
    else:
      sx, sy, k = acts.astype(jnp.int32), acts_y.astype(jnp.int32), num_states
    xs = (_one_hot_lags(sx, tau, k, dtype),)
    ys = (_one_hot_lags(sy, tau, k, dtype),)
    body = functools.partial(_discrete_block, pool=pool, redundancy=redundancy, block=block,
                             num_states=k)
  num_shards = 1 if mesh is None else mesh.size
  num_blocks = -(-n // block)
  npad = num_blocks * block
  xs = [jnp.pad(v, [(0, 0), (0, npad - n)] + [(0, 0)] * (v.ndim - 2)) for v in xs]
  # Extra blocks (recomputing block 0, then dropped) make the count divisible by the devices;
  # the geometry itself does not depend on the device count, so neither do the results.
  spare = -num_blocks % num_shards
  starts = jnp.concatenate([jnp.arange(num_blocks, dtype=jnp.int32) * block,
                            jnp.zeros((spare,), jnp.int32)])
  # With one set of units, [j, i] is [i, j] with x and y exchanged, so only about half the grid
  # is computed: row block r0 meets the cyclic window of columns r0 .. r0 + block + npad//2 − 1,
  # which holds every (i, j) with (j − i) mod npad ≤ npad//2 (see _assemble_band).
  band = same and num_blocks >= 3
  if band:
    half = npad // 2
    width = block + half
    ys = [jnp.concatenate([v, v[:, :half]], axis=1) for v in xs]  # (P, npad + half, ...)
    window = lambda r, ys_: tuple(lax.dynamic_slice_in_dim(v, r, width, axis=1) for v in ys_)
  else:
    width = m
    window = lambda r, ys_: tuple(ys_)
  run = lambda st, xs_, ys_: lax.map(lambda r: body(r, tuple(xs_), window(r, ys_)), st)
  if mesh is None:
    vals = run(starts, xs, ys)
  else:
    axes = tuple(mesh.axis_names)
    vals = jax.shard_map(run, mesh=mesh, in_specs=(PartitionSpec(axes), PartitionSpec(),
                                                   PartitionSpec()),
                         out_specs=PartitionSpec(axes), check_vma=False)(starts, xs, ys)
  atoms = lattice.atoms_from_lattice_values(vals[:num_blocks].reshape((npad, width, 16)))
  if band:
    atoms = _assemble_band(atoms, n, block)
  else:
    atoms = atoms[:n]
  nan = jnp.asarray(jnp.nan, atoms.dtype)
  masked = bad_x[:, None] | bad_y[None, :]
  if same:
    masked = masked | jnp.eye(n, dtype=bool)
  return jnp.where(masked[..., None], nan, atoms)


# Atom index after exchanging x and y in both past and future ("xty" ↔ "ytx", "rts" stays, ...).
_SWAP = {"r": "r", "x": "y", "y": "x", "s": "s"}
SWAP_XY = np.array([lattice.ATOMS.index(_SWAP[a[0]] + "t" + _SWAP[a[2]]) for a in lattice.ATOMS])


def _assemble_band(band, n, block):
  """(npad, width, 16) band storage → (N, N, 16) full grid.

  band[i, k] holds pair (i, j) with j = (r0(i) + k) mod npad, r0(i) = block · ⌊i / block⌋. Entry
  [i, j] is read directly when d = (j − i) mod npad ≤ npad // 2 (k = i − r0(i) + d), otherwise
  from [j, i] with x and y exchanged.
  """
  npad = band.shape[0]
  half = npad // 2
  i = jnp.arange(n)[:, None]
  j = jnp.arange(n)[None, :]
  d = (j - i) % npad
  direct = d <= half
  rows = jnp.where(direct, i, j)
  cols = jnp.where(direct, i % block + d, j % block + (i - j) % npad)
  got = band[rows, cols]  # (N, N, 16)
  return jnp.where(direct[..., None], got, got[..., SWAP_XY])


def _resolve_mesh(mesh):
  if mesh is None:
    return None
  if isinstance(mesh, str):
    if mesh != "auto":
      raise ValueError(f"mesh={mesh!r}: pass a jax.sharding.Mesh, 'auto' or None")
    devices = np.array(jax.local_devices())
    return jax.sharding.Mesh(devices, ("pairs",))
  if not isinstance(mesh, jax.sharding.Mesh):
    raise ValueError(f"mesh must be a jax.sharding.Mesh, 'auto' or None; got {type(mesh)}")
  return mesh


def all_pairs(acts, *, tau=1, redundancy="mmi", pool="mean", kind="gaussian", acts_y=None,
              mesh=None, on_degenerate="raise", block_size=None, num_states=None, dtype=None,
              memory_bytes=2 ** 31, config=None):
  """ΦID atoms of every ordered pair of units.

  Args:
    acts: (P, N, T) activity: P prompts, N units, T time steps (e.g. per-head attention-output
      norms). Each prompt is estimated on its own and the atoms are averaged over prompts.
    tau: lag in steps (int ≥ 1); needs T > tau + 2.
    redundancy: "mmi" (minimum mutual information) or "ccs" (common change in surprisal; per
      sample, much slower).
    pool: "mean" (estimate per prompt, average the atoms) or "concat" (one estimate from the
      lagged samples of all prompts pooled; no (past, future) sample straddles two prompts).
    kind: "gaussian" or "discrete" (plug-in; binarised at each series' mean unless
      ``num_states`` is given, in which case acts must hold integers in [0, num_states)).
    acts_y: optional (P, N, T); when given, unit j of source y is taken from ``acts_y`` (e.g. a
      circularly shifted surrogate) and the diagonal is computed instead of NaN.
    mesh: None (one device, the default), "auto" (a 1-D mesh over all local devices) or a
      ``jax.sharding.Mesh``; row blocks of the pair grid are split over all of its devices.
      Results are identical to one device.
    on_degenerate: "raise" (ValueError naming unit and prompt) or "mask" (NaN rows and columns
      for those units, with a warning naming them; ``check_units`` gives the full list). Applies
      to NaN/inf values and constant pasts or futures. Inside a caller's ``jax.jit`` values
      cannot be inspected, so degenerate units always come back as NaN rows/columns there.
    block_size: rows of the pair grid per block (default: ``auto_block_size``, ~2 GiB of
      temporaries, so N = 4096 fits in 24 GB).
    num_states: number of discrete states (kind="discrete" only).
    dtype: computation dtype; default float64 when jax_enable_x64 is on, else float32.
      Matrix products use precision="highest".
    memory_bytes: temporaries budget used to pick ``block_size``.
    config: a ``PhiidConfig``; when given it supplies tau, redundancy, pool, kind and num_states
      (the separate keyword arguments must then be left at their defaults).
  Returns:
    (N, N, 16) atoms in ``ATOMS`` order (nats); [i, j] has unit i as source x and unit j as
    source y; [j, i] is [i, j] with x and y exchanged. Diagonal NaN unless ``acts_y`` is given.
  """
  if config is not None:
    tau, redundancy, pool, kind, num_states = _from_config(
        config, tau=tau, redundancy=redundancy, pool=pool, kind=kind, num_states=num_states)
  checks.check_choice("redundancy", redundancy, checks.REDUNDANCIES)
  checks.check_choice("kind", kind, checks.KINDS)
  checks.check_choice("pool", pool, checks.POOLS)
  checks.check_choice("on_degenerate", on_degenerate, checks.ON_DEGENERATE)
  p, n, t = checks.check_shape(acts)
  checks.check_tau(tau, t)
  same = acts_y is None
  if same:
    acts_y = acts
  elif np.shape(acts_y) != (p, n, t):
    raise ValueError(f"acts_y has shape {np.shape(acts_y)}; it must match acts {(p, n, t)}")
  if num_states is not None and kind != "discrete":
    raise ValueError(f"num_states={num_states} only applies to kind='discrete'")
  if num_states is not None and (not isinstance(num_states, int) or num_states < 2):
    raise ValueError(f"num_states={num_states!r} must be an int ≥ 2")
  dtype = jnp.dtype(dtype) if dtype is not None else _default_dtype()
  mesh = _resolve_mesh(mesh)

  concrete = not any(isinstance(v, jax.core.Tracer) for v in (acts, acts_y))
  if concrete:
    _report_degenerate(acts, acts_y, same, tau, kind, num_states, on_degenerate)
  if block_size is None:
    block_size = auto_block_size(p, n, t - tau, redundancy=redundancy, kind=kind,
                                 itemsize=dtype.itemsize, memory_bytes=memory_bytes,
                                 num_states=num_states or 2)
  if not isinstance(block_size, int) or block_size < 1:
    raise ValueError(f"block_size={block_size!r} must be an int ≥ 1")
  block_size = min(block_size, n)
  return _all_pairs_core(jnp.asarray(acts), jnp.asarray(acts_y), tau=tau, redundancy=redundancy,
                         pool=pool, kind=kind, same=same, mesh=mesh, block=block_size,
                         num_states=num_states, dtype=dtype)


def _report_degenerate(acts, acts_y, same, tau, kind, num_states, on_degenerate):
  """Raise or warn about degenerate units of concrete inputs."""
  if kind == "discrete" and num_states is not None:
    _check_states(acts, num_states, "acts")
    if not same:
      _check_states(acts_y, num_states, "acts_y")
  problems = checks.check_units(acts, tau)
  if not same:
    problems += checks.check_units(acts_y, tau, name="acts_y")
  if not problems:
    return
  if on_degenerate == "raise":
    raise ValueError(f"degenerate units ({len(problems)} unit/prompt problems): "
                     f"{checks.describe(problems)}. Pass on_degenerate='mask' to get NaN rows "
                     f"and columns for them instead.")
  units = sorted({pr.unit for pr in problems})
  warnings.warn(f"all_pairs: masking units {units} with NaN rows/columns: "
                f"{checks.describe(problems)}", stacklevel=3)


def _check_states(a, num_states, name):
  """Integer states in [0, num_states), else ValueError naming unit and prompt."""
  a = np.asarray(a)
  finite = np.where(np.isfinite(a), a, 0)
  bad = ((finite < 0) | (finite >= num_states) | (finite != np.round(finite))).any(axis=-1)
  if bad.any():
    q, u = map(int, np.argwhere(bad)[0])
    raise ValueError(f"{name}: unit {u}, prompt {q} holds values outside the integers "
                     f"[0, {num_states})")


def _from_config(config, **given):
  """(tau, redundancy, pool, kind, num_states) from a PhiidConfig; keyword arguments that were
  also changed from their defaults are a conflict."""
  from synergy_jax.phiid.config import PhiidConfig
  if not isinstance(config, PhiidConfig):
    raise ValueError(f"config must be a phiid.PhiidConfig, got {type(config).__name__}")
  defaults = {"tau": 1, "redundancy": "mmi", "pool": "mean", "kind": "gaussian",
              "num_states": None}
  clash = [k for k, v in given.items() if v != defaults[k]]
  if clash:
    raise ValueError(f"pass {clash} through config=, not as separate arguments")
  # Interim: the estimator variants of PhiidConfig are being added kind by kind.
  if config.kind == "copula" or config.preprocess != "none" or config.bias_correction:
    raise ValueError(f"{config} is not supported yet by all_pairs")
  if config.kind == "discrete" and config.discretise not in ("series", "given"):
    raise ValueError(f"discretise={config.discretise!r} is not supported yet by all_pairs")
  return config.tau, config.redundancy, config.pool, config.kind, config.num_states
