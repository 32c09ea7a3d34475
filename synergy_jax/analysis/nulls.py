"""Surrogate designs for pairwise ΦID nulls, and a fast exact kernel for the Gaussian MMI atoms.

A surrogate replaces source y of every pair by a version of itself whose alignment with x is
broken. Three designs (``NULLS``), each one surrogate per row of a (S, P) plan:

  "trial"       y of prompt p is taken from prompt π_s(p) ≠ p (trial shuffling). Every unit's
                series, and hence every lagged (past, future) sample pair and every within-unit
                statistic, is kept exactly; only which prompt x meets changes. The π_s are the
                P − 1 non-identity rotations of a random relabelling of the prompts (a group, so
                the Monte-Carlo test is exact when prompts are exchangeable under "no coupling";
                Hemerik & Goeman, JRSS-B 2018); more surrogates than P − 1 come from further
                random relabellings. The default.
  "pair_shift"  within each prompt, the index s of y's lagged pairs (y_p[s], y_f[s]) is shifted
                circularly by δ_s,p (both members of a pair move together). Every lagged pair of y
                stays a real pair, so its standardisation and autocorrelation are unchanged; the
                seam only reorders pairs. Keeps prompt identity; for strongly autocorrelated series
                at T ≈ 50 the rotated sequence has slightly less cross-correlation variance than
                an independent one (pairs straddling the seam decorrelate), which makes it mildly
                anti-conservative there.
  "circular"    the classic circular shift of y's *series* by δ_s,p. The wrap-around creates one
                false (past, future) pair per prompt, which lowers y's autocorrelation and hence
                MMI synergy: anti-conservative on autocorrelated series (kept for comparison).

Surrogates come in inverse pairs (rotation k and P − k; shift δ and −δ): for an atom that is its
own mirror image under exchanging x and y (sts, rtr), the pair grid of the second is the
transpose of the first's, so the kernel computes half of them.

``null_moments`` evaluates all surrogates of a design and reduces them on the fly to per-pair
mean / sd / exceedance counts and per-head partner means; for the Gaussian MMI estimator without
preprocessing it runs one compiled program (the per-unit standardisation is shared by every
surrogate, the y-side of each surrogate is a gather of the x-side vectors, and only the requested
atoms are formed: each is ½ Σ_k w_k log(arg_k) over the 17 MMI arguments of
``phiid.gaussian``); otherwise it calls ``phiid.all_pairs(acts, acts_y=surrogate, config=...)``
once per surrogate. Both give the same numbers (tests/analysis/test_analysis_nulls.py).
The same scan (``scan_moments``) runs on every device of a mesh, each on its share of the
surrogates, in ``analysis.nulls_sharded`` (one or many processes; ``distributed.null_moments``).

Speed, and why "100 surrogates in ≤ 5 × one all_pairs call" is out of reach for pool="mean"
(2-core CPU, load ≈ 2, U = 256, P = 60, T = 100, float32, 2026-12-01): one ``all_pairs`` call
0.096 s; 100 trial surrogates through this kernel 2.4 s (25×), against 100 calls of
``all_pairs(acts, acts_y=...)``. Re-measured 2026-12-02 18:51 UTC on the same machine under load
(1-minute load 4.7–5.7, indicative only; ``bench_phiid --kinds=gaussian --num_units=256
--surrogates=100 --reference_pairs=0``, float64): 21.1 s = 39 all_pairs calls of 0.54 s, the
straightforward 100 calls 53.7 s; sums equal to 6e-15, counts identical. Twice on 2026-12-04 on a
2-core AVX-512 AMD EPYC (same command): 20:31 UTC (1-minute load 0.5 at the start, decaying from a
benchmark) one call 0.087 s, 100 surrogates 4.06 s = 46.9 calls, the straightforward 100 calls
12.4 s; 21:04 UTC (load 0.02) 0.096 s, 3.97 s = 41.4 calls, 11.9 s; sums equal to 6e-15 in both.
The floor is arithmetic: under pool="mean" each atom is a mean
of per-prompt nonlinear functions of that prompt's correlations, so every surrogate needs fresh
cross-correlations of all P prompts, i.e. P (2N × 2N) products of length T − τ — the same
products one all_pairs call makes — and 16 of the 17 MMI arguments per pair and prompt for sts.
Sharing what can be shared (standardisation, the y-side as a gather, inverse pairs giving the
transposed grid for free, only sts and rtr formed) halves the work per surrogate but leaves ≥ S/2
all_pairs-equivalents. FFTs over lags do not help: a surrogate uses one lag per prompt, not all
lags. (Nor does computing each ordered prompt pair once: a relabelling's P − 1 rotations use every
ordered pair (p, q ≠ p) once, so one relabelling is already P − 1 prompt-pair sets of atoms.)
Pooled estimates (pool="concat") do allow it: a surrogate's cross-products are sums over prompts,
and all rotations of one relabelling are a circular cross-correlation over the prompt axis, made
at once by a Fourier transform over it (``analysis.nulls_spectral``, the default path for trial
designs under pool="concat": 100 surrogates at U = 256 in 3.9–5.3 all_pairs calls, median 4.5,
float64, four idle runs).

Axis legend: S surrogates, P prompts, U x-side units, M y-side units, L lagged samples (T − τ),
K tested atoms, A the 17 MMI arguments.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.analysis.ranking import ATOM_INDEX
from synergy_jax.phiid import units as _units
from synergy_jax.phiid.config import PhiidConfig


# The estimator's own preparation of every unit (problem checks, filler for bad units,
# standardised lags), shared with phiid.all_pairs so the kernel cannot drift from it.
def _bad_units(a, tau):
  """(P, U, T) → (U,) bool: units the Gaussian estimator cannot use in some prompt (in-graph)."""
  return _units.prepared(a, PhiidConfig(tau=tau), a.dtype)[4]


def _lags(a, tau, pool, bad=None):
  """(P, U, T) → standardised (past, future), each (P, U, S), as phiid.all_pairs prepares them;
  problem units hold a harmless filler (their rows and columns are masked with ``bad``)."""
  past, future, *_ = _units.prepared(a, PhiidConfig(tau=tau, pool=pool), a.dtype)
  return past, future

NULLS = ("trial", "pair_shift", "circular")
DEFAULT_NULL = "trial"
MIN_TRIAL_PROMPTS = 5  # fewer prompts give too few distinct rotations per relabelling


@dataclasses.dataclass(frozen=True)
class NullDesign:
  """Which y each surrogate uses. method: one of ``NULLS``; prompt_map (S, P): surrogate s takes
  y of prompt p from prompt prompt_map[s, p]; shifts (S, P): circular shift of y's lagged-pair
  index ("pair_shift") or series ("circular"), 0 for "trial"; min_shift: smallest shift allowed;
  paired: rows 2m and 2m + 1 are inverse surrogates (see module docstring); orders (R, P) and
  rotations (S, 2), trial designs only: row s is rotation k = rotations[s, 1] of relabelling
  r = rotations[s, 0], whose prompts in relabelled order are orders[r] (π(orders[r][j]) =
  orders[r][(j + k) mod P]); ``analysis.nulls_spectral`` uses them."""
  method: str
  prompt_map: np.ndarray
  shifts: np.ndarray
  min_shift: int
  paired: bool = False
  orders: np.ndarray | None = None
  rotations: np.ndarray | None = None

  @property
  def n_surrogates(self) -> int:
    return int(self.prompt_map.shape[0])

  def describe(self) -> str:
    return {"trial": "trial shuffling: y of prompt p taken from a different prompt π(p) "
                     "(rotations of random prompt relabellings); every unit's series kept exactly",
            "pair_shift": f"circular shift (≥ {self.min_shift}) of the index of y's lagged "
                          f"(past, future) pairs within each prompt; every lagged pair kept",
            "circular": f"circular shift (≥ {self.min_shift}) of y's series within each prompt "
                        f"(breaks one lagged pair at the wrap-around)"}[self.method]


def default_min_shift(num_steps: int, tau: int = 1) -> int:
  """max(tau + 1, ceil(T / 10)): shifts shorter than a tenth of the series are excluded."""
  return max(tau + 1, int(np.ceil(num_steps / 10)))


def draw_shifts(n_surrogates: int, n_prompts: int, num_steps: int, *, min_shift: int,
                seed: int) -> np.ndarray:
  """(S, P) integer shifts uniform on {min_shift, ..., T − min_shift}, reproducible from seed."""
  if not 1 <= min_shift <= num_steps - min_shift:
    raise ValueError(f"min_shift={min_shift} leaves no admissible shift for T={num_steps} steps "
                     f"(need 1 <= min_shift <= T/2)")
  rng = np.random.default_rng(seed)
  return rng.integers(min_shift, num_steps - min_shift + 1, size=(n_surrogates, n_prompts))


def draw_rotations(n_surrogates: int, n_prompts: int, seed: int) -> np.ndarray:
  """(S, P) prompt maps: the rotations k = 1, P−1, 2, P−2, … of random relabellings of the prompts
  (π(p) = σ⁻¹((σ(p) + k) mod P)); rows 2m and 2m + 1 are inverses of each other (for even P
  the self-inverse rotation P/2 is left out)."""
  return _rotation_plan(n_surrogates, n_prompts, seed)[0]


def _rotation_plan(n_surrogates: int, n_prompts: int, seed: int):
  """``draw_rotations``'s prompt maps (S, P), the relabelled orders σ⁻¹ (R, P) and each row's
  (relabelling, k) (S, 2)."""
  if n_prompts < MIN_TRIAL_PROMPTS:
    raise ValueError(f"the trial-shuffling null needs at least {MIN_TRIAL_PROMPTS} prompts, got "
                     f"{n_prompts}; use null='pair_shift' or 'circular' for fewer prompts")
  rng = np.random.default_rng(seed)
  half = (n_prompts - 1) // 2
  ks = [k for j in range(1, half + 1) for k in (j, n_prompts - j)]
  rows, orders, plan = [], [], []
  while len(rows) < n_surrogates:
    sigma = rng.permutation(n_prompts)
    inv = np.argsort(sigma)
    rows += [inv[(sigma + k) % n_prompts] for k in ks]
    plan += [(len(orders), k) for k in ks]
    orders.append(inv)
  return (np.stack(rows[:n_surrogates]), np.stack(orders),
          np.asarray(plan[:n_surrogates], np.int64))


def _paired_shifts(n_surrogates: int, n_prompts: int, length: int, min_shift: int,
                   seed: int) -> np.ndarray:
  """(S, P) shifts in {min_shift, …, L − min_shift}; row 2m + 1 is −row 2m (mod L)."""
  half = draw_shifts(-(-n_surrogates // 2), n_prompts, length, min_shift=min_shift, seed=seed)
  return np.stack([half, (length - half) % length], 1).reshape(-1, n_prompts)[:n_surrogates]


def draw_design(method: str, n_surrogates: int, n_prompts: int, num_steps: int, *, tau: int = 1,
                seed: int = 0, min_shift: int | None = None) -> NullDesign:
  """A reproducible surrogate plan for (P, U, T) activity (see module docstring)."""
  if method not in NULLS:
    raise ValueError(f"null must be one of {NULLS}, got {method!r}")
  if n_surrogates < 2:
    raise ValueError(f"n_surrogates must be >= 2 (a z-score needs a null sd), got {n_surrogates}")
  ident = np.broadcast_to(np.arange(n_prompts), (n_surrogates, n_prompts)).copy()
  zeros = np.zeros((n_surrogates, n_prompts), np.int64)
  if method == "trial":
    prompt_map, orders, rotations = _rotation_plan(n_surrogates, n_prompts, seed)
    return NullDesign(method, prompt_map, zeros, 0, True, orders, rotations)
  length = num_steps - tau if method == "pair_shift" else num_steps
  ms = default_min_shift(length, tau) if min_shift is None else int(min_shift)
  if method == "pair_shift":
    return NullDesign(method, ident, _paired_shifts(n_surrogates, n_prompts, length, ms, seed),
                      ms, True)
  return NullDesign(method, ident, draw_shifts(n_surrogates, n_prompts, length, min_shift=ms,
                                               seed=seed), ms)


def circular_shift(acts: np.ndarray, shifts: np.ndarray) -> np.ndarray:
  """Rolls each prompt's series along the last axis: out[p, n, t] = acts[p, n, (t − shifts[p])
  mod T]. acts (P, U, T) (numpy or jax), shifts (P,) integers; same shift for all units."""
  if acts.ndim != 3 or np.shape(shifts) != (acts.shape[0],):
    raise ValueError(f"circular_shift: acts (P, U, T) and shifts (P,) expected, got {acts.shape}, "
                     f"{np.shape(shifts)}")
  xp = jnp if isinstance(acts, jax.Array) else np
  t = acts.shape[-1]
  idx = (xp.arange(t)[None, :] - xp.asarray(shifts)[:, None]) % t  # (P, T)
  return xp.take_along_axis(acts, xp.broadcast_to(idx[:, None, :], acts.shape), axis=-1)


def surrogate_acts(acts: np.ndarray, design: NullDesign, s: int) -> np.ndarray:
  """The (P, U, T) y-series of surrogate s as a raw series (trial and circular only)."""
  if design.method == "pair_shift":
    raise ValueError("null='pair_shift' shifts lagged pairs, which no raw series represents; it "
                     "needs the Gaussian MMI kernel (kind='gaussian', preprocess='none')")
  y = np.asarray(acts)[design.prompt_map[s]]
  return circular_shift(y, design.shifts[s]) if design.method == "circular" else y


# ------------------------------------------------------------------------------------------------
# Fast Gaussian MMI kernel
# ------------------------------------------------------------------------------------------------


def _atom_log_weights(names: Sequence[str]) -> np.ndarray:
  """(K, A) integers w with atom = ½ Σ_a w[k, a] log(arg_a) under Gaussian MMI."""
  from synergy_jax.phiid import gaussian, lattice
  return (lattice.MOBIUS @ gaussian.MMI_LOG_WEIGHTS)[[ATOM_INDEX[n] for n in names]]


def fast_path_applies(config) -> bool:
  """Whether ``null_moments`` can use the compiled Gaussian MMI kernel for this PhiidConfig."""
  return (config.kind == "gaussian" and config.redundancy == "mmi"
          and config.preprocess == "none" and not config.bias_correction
          and config.smooth_min is None)


def _atoms_from_corrs(a, b, c, d, e, f, weights):
  """(U, M, K) requested atoms (nats) from the six correlations of ``phiid.gaussian``.

  weights: static (K, A) integers in {−1, 0, 1}; atom k = ½ (log Π_{w=+1} arg − log Π_{w=−1} arg).
  """
  from synergy_jax.phiid import gaussian
  shape = jnp.broadcast_shapes(a.shape, c.shape, f.shape)
  args = [jnp.broadcast_to(v, shape) for v in gaussian.mmi_arguments(a, b, c, d, e, f)]
  out = []
  for w in weights:
    pos = functools.reduce(jnp.multiply, [v for v, wk in zip(args, w) if wk > 0],
                           jnp.ones(shape, a.dtype))
    neg = functools.reduce(jnp.multiply, [v for v, wk in zip(args, w) if wk < 0],
                           jnp.ones(shape, a.dtype))
    out.append(0.5 * (jnp.log(pos) - jnp.log(neg)))
  return jnp.stack(out, -1)


def _pair_atoms(xs, ys, pool, weights):
  """(U, M, K) atoms averaged over prompts (pool="mean") or of the pooled correlations.

  xs = (x_p, x_f), ys = (y_p, y_f), each (P, ·, L), standardised as ``_lags``.
  """
  xp, xf = xs
  yp, yf = ys
  p, n, length = xp.shape
  hi = jax.lax.Precision.HIGHEST

  def corrs(q):
    lhs = jnp.concatenate([xp[q], xf[q]], 0)  # (2N, L)
    rhs = jnp.concatenate([yp[q], yf[q]], 0)  # (2M, L)
    g = jnp.einsum("nl,ml->nm", lhs, rhs, precision=hi)  # (2N, 2M)
    return g, jnp.sum(xp[q] * xf[q], -1), jnp.sum(yp[q] * yf[q], -1)

  def split(g, c, f, denom):
    g, c, f = g / denom, c / denom, f / denom
    return (g[:n, :n], g[n:, n:], c[:, None], g[:n, n:], g[n:, :n], f[None, :])  # a b c d e f

  if pool == "mean":
    def add(q, acc):
      return acc + _atoms_from_corrs(*split(*corrs(q), length - 1), weights)
    zero = jnp.zeros((n, yp.shape[1], len(weights)), xp.dtype)
    return jax.lax.fori_loop(0, p, add, zero) / p

  def add_g(q, acc):
    return tuple(s + v for s, v in zip(acc, corrs(q)))
  zero = (jnp.zeros((2 * n, 2 * yp.shape[1]), xp.dtype), jnp.zeros((n,), xp.dtype),
          jnp.zeros((yp.shape[1],), xp.dtype))
  return _atoms_from_corrs(*split(*jax.lax.fori_loop(0, p, add_g, zero), p * length - 1),
                           weights)


def _surrogate_lags(acts, xs, bad, perm, shift, *, method, tau, pool):
  """y-side standardised lags of one surrogate and its degenerate mask."""
  if method == "trial":
    return tuple(v[perm] for v in xs), bad
  if method == "pair_shift":
    return tuple(circular_shift(v, shift) for v in xs), bad
  y = circular_shift(acts[perm], shift)
  bad_y = _bad_units(y, tau)
  return tuple(_lags(y, tau, pool, bad_y)), bad_y


# A surrogate value within this many units of the compute dtype's epsilon (in nats) below the
# observed one counts as a tie, i.e. as "≥ observed" (``_accumulate``).
TIE_EPS = 64


def tie_tolerance(dtype) -> float:
  """Absolute tolerance (nats) under which a surrogate value counts as equal to the observed one.

  Some pairs' MMI atoms are set by within-unit terms alone (the MMI minimum picks a unit's own
  past→future information), which every trial surrogate keeps: their surrogate values equal the
  observed value exactly in exact arithmetic, and rounding alone (≈ eps per log term) decided
  whether they counted as exceeding it — in float32 up to 77 of 100 surrogates of a pair flipped
  between two exact computations (U = 256, P = 60, pool="concat"). Counting such ties as
  "≥ observed" is the conservative convention of a permutation test."""
  return TIE_EPS * float(jnp.finfo(dtype).eps)


def _accumulate(carry, v, obs):
  """Adds one surrogate's (U, U, K) values (NaN = missing) to the running moments; values within
  ``tie_tolerance`` below the observed count as ≥ it."""
  s1, s2, cnt, ge = carry
  ok = jnp.isfinite(v)
  vz = jnp.where(ok, v, 0.0)
  tol = tie_tolerance(v.dtype)
  return (s1 + vz, s2 + vz * vz, cnt + ok, ge + (ok & (v >= obs - tol)))


def null_head_means(v, xp=np):
  """(U, M, K) surrogate grid of swap-symmetric atoms → (M, K) null head statistics.

  The observed head statistic of unit j averages its two roles, m[i, j] and m[j, i], which come
  from the same data (for sts and rtr they are equal). In a surrogate only the y-side series was
  moved, so the matching null statistic of unit j is the mean of column j (unit j moved, as y,
  against every partner i ≠ j), not ``partner_mean`` of the surrogate grid: that would average two
  different surrogates (π and π⁻¹) and understate the null's spread.
  """
  n = v.shape[0]
  v = xp.where(xp.eye(n, dtype=bool)[..., None], np.nan, v)
  ok = ~xp.isnan(v)
  cnt = xp.sum(ok, axis=0)
  tot = xp.sum(xp.where(ok, v, 0.0), axis=0)
  return xp.where(cnt > 0, tot / xp.maximum(cnt, 1), np.nan)


def fast_grid(acts, *, method, tau, pool, weights):
  """The compiled Gaussian MMI kernel's surrogate grid for (P, U, T) ``acts`` (in-graph).

  Returns grid(perm, shift) → (v, h): v the (U, U, K) requested atoms of the surrogate with
  y-side prompt map ``perm`` (P,) and shifts ``shift`` (P,) (NaN: degenerate units, diagonal);
  h = v, the grid ``null_head_means`` reads (the atoms are swap-symmetric).
  """
  n = acts.shape[1]
  bad = _bad_units(acts, tau)
  xs = tuple(_lags(acts, tau, pool, bad))
  eye = jnp.eye(n, dtype=bool)

  def grid(perm, shift):
    ys, bad_y = _surrogate_lags(acts, xs, bad, perm, shift, method=method, tau=tau, pool=pool)
    v = _pair_atoms(xs, ys, pool, weights)
    v = jnp.where((bad[:, None] | bad_y[None, :] | eye)[..., None], jnp.nan, v)
    return v, v

  return grid


def scan_moments(grid, obs, prompt_map, shifts, valid, *, paired):
  """Scan over surrogates: per-pair moments (U, U, K) ×4 and per-surrogate head means (S, U, K).

  grid(perm, shift) → (v, h) as ``fast_grid``. valid (S,) bool: rows that count; a row that does
  not (padding) adds nothing and its head means are NaN. paired: rows 2m, 2m + 1 are inverse
  surrogates of swap-symmetric atoms, so row 2m + 1's grids are the transposes of row 2m's and
  only even rows are computed (an odd S is padded with one invalid row).
  """
  group = 2 if paired else 1
  num, p = prompt_map.shape
  spare = -num % group
  if spare:
    prompt_map = jnp.concatenate([prompt_map, prompt_map[:spare]])
    shifts = jnp.concatenate([shifts, shifts[:spare]])
    valid = jnp.concatenate([valid, jnp.zeros((spare,), bool)])
  plans = (prompt_map.reshape(-1, group, p)[:, 0], shifts.reshape(-1, group, p)[:, 0],
           valid.reshape(-1, group))

  def step(carry, plan):
    perm, shift, ok = plan
    v, h = grid(perm, shift)
    grids = [(v, h)] if group == 1 else [(v, h), (jnp.swapaxes(v, 0, 1), jnp.swapaxes(h, 0, 1))]
    heads = []
    for k, (vk, hk) in enumerate(grids):
      carry = _accumulate(carry, jnp.where(ok[k], vk, jnp.nan), obs)
      heads.append(jnp.where(ok[k], null_head_means(hk, jnp), jnp.nan))
    return carry, jnp.stack(heads)

  zero = jnp.zeros(obs.shape, obs.dtype)
  carry, heads = jax.lax.scan(step, (zero, zero, zero, zero), plans)
  return carry, heads.reshape((-1,) + heads.shape[2:])[:num]


@functools.partial(jax.jit, static_argnames=("method", "tau", "pool", "weights", "paired"))
def _fast_moments(acts, obs, prompt_map, shifts, *, method, tau, pool, weights, paired):
  """``scan_moments`` of the compiled kernel on one device, every row valid."""
  grid = fast_grid(acts, method=method, tau=tau, pool=pool, weights=weights)
  valid = jnp.ones((prompt_map.shape[0],), bool)
  return scan_moments(grid, obs, prompt_map, shifts, valid, paired=paired)


def _swap_symmetric(names: Sequence[str]) -> bool:
  """Whether every atom is its own image when x and y are exchanged (sts, rtr, rts, str)."""
  from synergy_jax.phiid.grid import SWAP_XY
  return all(SWAP_XY[ATOM_INDEX[a]] == ATOM_INDEX[a] for a in names)


def kernel_applies(config, atoms: Sequence[str]) -> bool:
  """Whether the compiled kernel serves these atoms under this PhiidConfig."""
  return fast_path_applies(config) and _swap_symmetric(atoms)


def kernel_weights(atoms: Sequence[str]) -> tuple:
  """The kernel's static (K, A) log weights of ``atoms`` as nested tuples (hashable)."""
  return tuple(map(tuple, _atom_log_weights(atoms).tolist()))


@dataclasses.dataclass(frozen=True)
class NullMoments:
  """Reduced surrogate values of K atoms: s1, s2 (sums of values and squares), cnt (finite
  surrogates), ge (surrogates ≥ observed), each (U, U, K); null_head (S, U, K) null head
  statistics (``null_head_means``)."""
  s1: np.ndarray
  s2: np.ndarray
  cnt: np.ndarray
  ge: np.ndarray
  null_head: np.ndarray


def null_moments(acts: np.ndarray, observed_pairs: np.ndarray, design: NullDesign, config, *,
                 atoms: Sequence[str] = ("sts", "rtr"), dtype=None, mesh=None,
                 estimator=None, progress=None, force_slow: bool = False,
                 spectral: bool | None = None) -> NullMoments:
  """All surrogates of ``design`` reduced to moments (see ``NullMoments``).

  Args:
    acts: (P, U, T) activity the observed atoms came from.
    observed_pairs: (U, U, K) observed values of ``atoms`` (diagonal NaN).
    config: the ``phiid.PhiidConfig`` of the observed atoms.
    dtype: compute dtype (default float64 under x64, else float32), as ``phiid.all_pairs``.
    estimator: ``f(acts, acts_y) -> (U, U, 16)`` used instead of ``phiid.all_pairs`` (slow path).
    force_slow: use one ``phiid.all_pairs`` call per surrogate even where the kernel applies.
    spectral: None (default) uses ``analysis.nulls_spectral`` — all rotations of a relabelling at
      once — wherever it applies (trial design, pool="concat", the kernel's estimator, spectra
      within budget); False never; True requires it (an error says why it does not apply).
  """
  from synergy_jax import phiid
  from synergy_jax.analysis import nulls_spectral
  acts = np.asarray(acts)
  obs = np.asarray(observed_pairs, np.float64)
  dtype = jnp.dtype(dtype) if dtype is not None else jax.dtypes.canonicalize_dtype(jnp.float64)
  use_spectral = (estimator is None and not force_slow and spectral is not False
                  and nulls_spectral.applies(design, config, atoms, dtype.itemsize, acts.shape[1]))
  if spectral and not use_spectral:
    raise ValueError(nulls_spectral.why_not(design, config, atoms, dtype.itemsize, acts.shape[1],
                                            estimator is not None or force_slow))
  if use_spectral:
    return nulls_spectral.moments(acts, obs, design, tau=config.tau,
                                  weights=kernel_weights(atoms), dtype=dtype)
  if estimator is None and not force_slow and kernel_applies(config, atoms):
    (s1, s2, cnt, ge), heads = _fast_moments(
        jnp.asarray(acts, dtype), jnp.asarray(obs, dtype), jnp.asarray(design.prompt_map),
        jnp.asarray(design.shifts), method=design.method, tau=config.tau, pool=config.pool,
        weights=kernel_weights(atoms), paired=design.paired)
    return NullMoments(*(np.asarray(v, np.float64) for v in (s1, s2, cnt, ge, heads)))
  from synergy_jax.phiid.grid import SWAP_XY
  idx = [ATOM_INDEX[a] for a in atoms]
  swap = [int(SWAP_XY[i]) for i in idx]
  n = acts.shape[1]
  off = ~np.eye(n, dtype=bool)
  acc = tuple(jnp.zeros(obs.shape, jnp.float64 if dtype.itemsize == 8 else jnp.float32)
              for _ in range(4))
  heads = []
  it = range(design.n_surrogates)
  for s in (progress(it) if progress else it):
    y = surrogate_acts(acts, design, s)
    if estimator is None:
      sur = phiid.all_pairs(acts, acts_y=y, config=config, on_degenerate="mask", mesh=mesh,
                            dtype=dtype)
    else:
      sur = estimator(acts, y)
    sur = np.asarray(sur, np.float64)
    if sur.shape != (n, n, 16):
      raise ValueError(f"estimator returned shape {sur.shape} for surrogate {s}; expected "
                       f"({n}, {n}, 16)")
    v = np.where(off[..., None], sur[:, :, idx], np.nan)
    acc = _accumulate(acc, jnp.asarray(v, acc[0].dtype), jnp.asarray(obs, acc[0].dtype))
    # Unit j's two roles in the moved data: as y (atom a) and as x (the x↔y mirror atom).
    both = 0.5 * (v + np.where(off[..., None], sur[:, :, swap], np.nan))
    heads.append(null_head_means(both))
  return NullMoments(*(np.asarray(v, np.float64) for v in acc), np.stack(heads))
