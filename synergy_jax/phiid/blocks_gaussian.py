"""Row-block functions of the all-pairs Gaussian estimator (kinds "gaussian" and "copula").

Axis legend: P prompts, B a block of x-side units, M y-side units, S lagged samples per prompt.

Inputs are the standardised lagged vectors of every unit (``kinds`` prepares them): xs = (x_p, x_f)
of shape (P, Upad, S) and ys = (y_p, y_f) of shape (P, M, S). One matrix product per prompt gives
the cross-correlations of the block's x-units with every y-unit ([x_p; x_f] · [y_p; y_f]ᵀ → the
four 2×2 blocks a, d, e, b); the lag-τ autocorrelations give c and f. Prompts are visited one at
a time so every temporary is (B, M) or (B, M, S) and stays in cache; pool="concat" first sums the
cross-products of all prompts; CCS sums its local values over samples in ``blocks_ccs``. Each
block also returns, per pair, the first prompt whose 4×4 correlation matrix is singular to working precision (``gaussian.smallest_pivot`` ≤
``pivot_tolerance``), or −1.
"""
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from synergy_jax.phiid import blocks_ccs
from synergy_jax.phiid import gaussian
from synergy_jax.phiid import lattice

_HIGHEST = lax.Precision.HIGHEST
PIVOT_EPS = gaussian.PIVOT_EPS  # the singularity threshold lives with the guard that uses it
pivot_tolerance = gaussian.pivot_tolerance


def _split(g, c, f, block, m):
  """(2B, 2M) correlations of [x_p; x_f] with [y_p; y_f] → (a, b, c, d, e, f), each (B, M)."""
  a, d = g[:block, :m], g[:block, m:]  # r(x_p, y_p), r(x_p, y_f)
  e, b = g[block:, :m], g[block:, m:]  # r(x_f, y_p), r(x_f, y_f)
  shape = a.shape
  return a, b, jnp.broadcast_to(c[:, None], shape), d, e, jnp.broadcast_to(f[None, :], shape)


def correlation_source(xp, xf, yp, yf, pool):
  """(corrs(q) → six (B, M) correlations of prompt q, or the pooled ones; number of estimates).

  xp, xf: (P, B, S); yp, yf: (P, M, S), standardised per prompt (pool="mean") or over the pooled
  P·S samples (pool="concat").
  """
  p, block, s = xp.shape
  m = yp.shape[1]
  denom = s - 1 if pool == "mean" else p * s - 1

  def raw(q):
    lhs = jnp.concatenate([xp[q], xf[q]], axis=0)  # (2B, S)
    rhs = jnp.concatenate([yp[q], yf[q]], axis=0)  # (2M, S)
    g = jnp.einsum("bs,ms->bm", lhs, rhs, precision=_HIGHEST)  # (2B, 2M)
    return g, jnp.sum(xp[q] * xf[q], axis=-1), jnp.sum(yp[q] * yf[q], axis=-1)  # , (B,), (M,)

  if pool == "mean":
    def corrs(q):
      g, c, f = raw(q)
      return _split(g / denom, c / denom, f / denom, block, m)
    return corrs, p

  def add(q, acc):
    return tuple(t + r for t, r in zip(acc, raw(q)))
  zero = (jnp.zeros((2 * block, 2 * m), xp.dtype), jnp.zeros((block,), xp.dtype),
          jnp.zeros((m,), xp.dtype))
  g, c, f = lax.fori_loop(0, p, add, zero)
  pooled = _split(g / denom, c / denom, f / denom, block, m)
  return (lambda q: pooled), 1


def _note_bad(first, q, corrs, tol):
  """Record prompt q for pairs whose correlation matrix is singular and that have none yet."""
  bad = ~(gaussian.smallest_pivot(*corrs) > tol)
  return jnp.where((first < 0) & bad, q, first)


def average_block(xs, ys, *, pool, redundancy, mi_offsets, lattice_offsets):
  """Average lattice values (B, M, 16) (nats) and the first singular prompt (B, M) int32.

  xs = (x_p, x_f) (P, B, S); ys = (y_p, y_f) (P, M, S). ``mi_offsets`` / ``lattice_offsets``:
  bias corrections (None: plug-in).
  """
  xp, xf = xs
  yp, yf = ys
  p, block, s = xp.shape
  shape = (block, yp.shape[1])
  corrs, num = correlation_source(xp, xf, yp, yf, pool)
  tol = pivot_tolerance(xp.dtype)
  if redundancy == "mmi":
    vals, first = _mmi_products(corrs, num, shape, xp.dtype, tol)
    if lattice_offsets is not None:
      vals = vals - jnp.asarray(lattice_offsets, vals.dtype)
    return vals, first

  return _ccs_values(corrs, xs, ys, mi_offsets, tol)


def _ccs_values(corrs, xs, ys, mi_offsets, tol):
  """CCS lattice values (B, M, 16) and the first singular prompt (B, M).

  The nine MI slots are the closed-form averages over the prompts (P copies of the pooled value
  for pool="concat"); the seven CCS slots
  are the local values of each prompt's samples (with that prompt's, or the pooled, correlations)
  summed by ``blocks_ccs.sample_sums`` and divided by all P · S samples.
  """
  xp, xf = xs
  yp, yf = ys
  p, block, s = xp.shape
  shape = (block, yp.shape[1])

  def terms(q):
    cq = corrs(q)
    avg = gaussian.shift(gaussian.average_mis(*cq), mi_offsets)
    # guarded: a singular pair (masked below) gets finite placeholder terms, so its infinite
    # derivatives cannot reach the other pairs through the shared series (the double where)
    return (blocks_ccs.pair_terms(gaussian.guarded(cq), avg, (xp[q], xf[q]), (yp[q], yf[q]),
                                  autocorrs=(cq[2], cq[5])),
            _note_bad(-jnp.ones(shape, jnp.int32), q, cq, tol))

  # The loop carries prompt q's pair terms in and hands prompt q + 1's out, so they are
  # materialised once per prompt rather than fused into (and recomputed at) every sample.
  def step(q, carry):
    sums, mi_sums, first, here = carry
    got = blocks_ccs.sample_sums(here)
    mi_sums = tuple(t + here[0]["k" + k] for t, k in zip(mi_sums, lattice.MI_NAMES))
    nxt, bad = terms(jnp.minimum(q + 1, p - 1))
    first = jnp.where((first < 0) & (bad >= 0) & (q + 1 < p), bad, first)
    return tuple(t + g for t, g in zip(sums, got)), mi_sums, first, nxt

  zeros = lambda k: tuple(jnp.zeros(shape, xp.dtype) for _ in range(k))
  here, first = terms(0)
  init = (zeros(len(blocks_ccs.SLOTS)), zeros(len(lattice.MI_NAMES)), first, here)
  # checkpoint: reverse mode keeps one prompt's temporaries at a time, not P of them.
  sums, mi_sums, first, _ = lax.fori_loop(0, p, jax.checkpoint(step, prevent_cse=False), init)
  vals = [None] * 16
  for k, v in zip(lattice.MI_NAMES, mi_sums):
    vals[lattice.MI_SLOT[k]] = v / p  # pool="concat": p copies of the pooled estimate
  for k, v in zip(blocks_ccs.SLOTS, sums):
    vals[lattice.ATOMS.index(k)] = v / (p * s)
  return jnp.stack(vals, axis=-1), first


def _mmi_products(corrs, num, shape, dtype, tol):
  """MMI lattice values (B, M, 16) averaged over ``num`` estimates with few logarithms, and the
  first singular prompt (B, M).

  Each prompt's 17 positive arguments (``gaussian.mmi_arguments``) are multiplied over a chunk of
  prompts and one log per chunk is added up; chunks are short enough (4 prompts in float32, 16 in
  float64) that the products of arguments ≥ 1e-9 (resp. 1e-19) do not underflow.
  """
  chunk = 16 if jnp.dtype(dtype).itemsize >= 8 else 4
  num_chunks = -(-num // chunk)
  nargs = len(gaussian.MMI_ARG_NAMES)

  def one_chunk(ci, carry):
    log_sums, first = carry

    def one_prompt(j, inner):
      prods, first = inner
      q = ci * chunk + j
      cq = corrs(jnp.minimum(q, num - 1))
      args = gaussian.mmi_arguments_unguarded(*cq)  # singular pairs: recorded in `first`
      valid = q < num
      first = jnp.where(valid, _note_bad(first, q, cq, tol), first)
      return tuple(pr * jnp.where(valid, ar, 1) for pr, ar in zip(prods, args)), first
    ones = tuple(jnp.ones(shape, dtype) for _ in range(nargs))
    prods, first = lax.fori_loop(0, chunk, jax.checkpoint(one_prompt, prevent_cse=False),
                                 (ones, first))  # reverse mode: one prompt's temporaries
    return tuple(ls + jnp.log(pr) for ls, pr in zip(log_sums, prods)), first

  init = (tuple(jnp.zeros(shape, dtype) for _ in range(nargs)), -jnp.ones(shape, jnp.int32))
  log_sums, first = lax.fori_loop(0, num_chunks, one_chunk, init)
  return gaussian.mmi_lattice_from_logs(jnp.stack(log_sums, axis=-1), num), first


def local_block(xs, ys, weights, *, pool, redundancy, mi_offsets):
  """Per-sample lattice values of each x-unit averaged over its y-partners: (P, B, S, 16), nats.

  xs = (x_p, x_f) (P, B, S); ys = (y_p, y_f) (P, M, S); weights (B, M): 1/(number of partners) for
  the partners averaged over (0 elsewhere, e.g. the unit itself). Under MMI the candidate with
  the smallest average is chosen per pair (per prompt, or pooled for pool="concat").
  """
  xp, xf = xs
  yp, yf = ys
  corrs, _ = correlation_source(xp, xf, yp, yf, pool)

  def one_prompt(q):
    cq = corrs(q)
    zs = (xp[q][:, None, :], yp[q][None, :, :], xf[q][:, None, :], yf[q][None, :, :])
    averages = None
    if redundancy == "mmi":
      averages = {k: v[..., None] for k, v in
                  gaussian.shift(gaussian.average_mis(*cq), mi_offsets).items()}
    vals = gaussian.local_lattice_values(cq, zs, redundancy, mi_offsets, averages)
    # b: x-units, m: partners, s: samples. Pairs left out (the unit itself, degenerate or
    # singular partners) can hold NaN: zero them rather than let 0 · NaN through.
    use = (weights > 0)[..., None]
    return jnp.stack([jnp.einsum("bms,bm->bs", jnp.where(use, v, 0), weights,
                                 precision=_HIGHEST) for v in vals], axis=-1)  # (B, S, 16)

  return lax.map(one_prompt, jnp.arange(xp.shape[0]))


def row_bytes(num_prompts, num_units, num_samples, redundancy, itemsize, local=False):
  """Memory model: bytes of temporaries per row of a block (see ``pairs.auto_block_size``).

  Prompts are visited one at a time, so MMI keeps ~48 arrays of (B, M), CCS ~80 (its pair terms,
  carried from one prompt to the next, and its sums; the samples are reduced inside one fused
  loop) and a local estimate ~64 arrays of (B, M, S).
  """
  del num_prompts
  if local:
    return num_units * num_samples * 64 * itemsize
  return num_units * (48 if redundancy == "mmi" else 80) * itemsize


ROW_CAP_MMI = 128  # larger MMI blocks only leave the cache
# CCS: its ~53 pair terms of (B, M) are read at every sample, so a block's terms should stay in
# the 1 MB L2 cache of a CPU core (8 rows × ~600 y-units); small blocks also give the half-grid
# band from U ≥ 24 on.
ROW_CAP_CCS = 8


def max_rows(redundancy, local=False):
  if local:
    return np.iinfo(np.int32).max
  return ROW_CAP_MMI if redundancy == "mmi" else ROW_CAP_CCS
