"""Trial-shuffling surrogates of pooled Gaussian MMI atoms, all rotations of a relabelling at once.

Under pool="concat" an atom is a function of six correlations pooled over every prompt's lagged
samples. Trial shuffling (``nulls.draw_rotations``) moves y of prompt p to prompt π_k(p), where
π_k is rotation k of a random relabelling σ of the prompts. Writing Z_j for the series of the
prompt at relabelled position j, every cross-product a surrogate needs is a sum over j of
Z_j(t) Z_{j+k}(t') — a circular cross-correlation over the prompt axis at lag k, for all unit
pairs and both lags (t' = t for the pairs' past/past and future/future samples, t' = t + τ and
t' = t − τ for the mixed ones). With the discrete Fourier transform over the prompt axis,

    Σ_j Z_j[a, t] Z_{j+k}[b, t'] = (1/P) Σ_f Re( conj(Ẑ_f[a, t]) Ẑ_f[b, t'] · e^{2πi kf/P} ),

so the time contractions S_f = Σ_t conj(Ẑ_f[:, t]) Ẑ_f[:, t']ᵀ, made once per frequency (P/2 + 1 of
them: Z is real, S_{P−f} = conj S_f), give every rotation of that relabelling by a weighted sum
over f. One relabelling costs about as many multiply-adds as one pooled all_pairs call's products,
and serves its P − 2 surrogates (P − 1 for odd P) instead of one.

Pooled standardisation is unchanged by trial shuffling (y's samples are the same set), so the sums
are formed from each unit's centred raw series and corrected afterwards: for centred r = x − m,
Σ (x_t − μ_p)(y_t' − μ'_p) over all pooled samples = Σ r_t r'_t' − n δ δ' with δ = μ_p − m — a
per-unit constant, whatever the alignment. The within-unit lag correlations (c, f) need no
surrogate at all. Only the lagged products change between surrogates, and the atoms are formed
exactly as ``nulls._atoms_from_corrs`` does; results equal ``nulls``'s per-surrogate kernel and one
``phiid.all_pairs`` call per surrogate to rounding (tests/analysis/test_analysis_nulls_spectral.py).

Memory: six (P/2 + 1, U, U) spectra per relabelling and six (CHUNK, U, U) sums synthesised from
them (``spectra_bytes``: 0.14 GiB at U = 256, P = 60, float64); ``nulls.null_moments`` uses this
path when they fit ``SPECTRA_BUDGET_BYTES`` and otherwise the per-surrogate kernel.

Axis legend: R relabellings, H rotation pairs per relabelling, F frequencies, U units, T samples,
K atoms.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.analysis import nulls

SPECTRA_BUDGET_BYTES = 1 << 30
CHUNK = 16  # rotations synthesised from the spectra in one product
_HI = jax.lax.Precision.HIGHEST


def spectra_bytes(n_prompts: int, n_units: int, itemsize: int) -> int:
  """Bytes of one relabelling's six cross-spectra and of one chunk's synthesised sums."""
  return 6 * (n_prompts // 2 + 1 + CHUNK) * n_units * n_units * itemsize


def why_not(design: "nulls.NullDesign", config, atoms, itemsize: int, n_units: int,
            other_path: bool = False) -> str | None:
  """Why ``moments`` cannot serve this design, estimator and size (None: it can)."""
  if other_path:
    return "spectral=True cannot be combined with estimator= or force_slow=True"
  if design.method != "trial" or design.rotations is None:
    return (f"the spectral null needs a trial-shuffling design with its rotations "
            f"(nulls.draw_design('trial', ...)), got null={design.method!r}")
  if config.pool != "concat":
    return f"the spectral null needs pool='concat' (pooled atoms), got pool={config.pool!r}"
  if not nulls.kernel_applies(config, atoms):
    return (f"the spectral null needs Gaussian MMI without preprocessing, bias correction or "
            f"smoothing and swap-symmetric atoms; got {config} and atoms {tuple(atoms)}")
  need = spectra_bytes(design.prompt_map.shape[1], n_units, itemsize)
  if need > SPECTRA_BUDGET_BYTES:
    return (f"the spectral null's cross-spectra need {need / 2**30:.2f} GiB for {n_units} units, "
            f"over SPECTRA_BUDGET_BYTES = {SPECTRA_BUDGET_BYTES / 2**30:.2f} GiB")
  return None


def applies(design: "nulls.NullDesign", config, atoms, itemsize: int, n_units: int) -> bool:
  """Whether ``moments`` serves this design, estimator and size."""
  return why_not(design, config, atoms, itemsize, n_units) is None


def rotation_slots(design: "nulls.NullDesign"):
  """The design's rows as (R, H) slots: ks (R, H) rotation k of slot h of relabelling r, rows
  (R, H, 2) the design rows of rotations k and P − k (−1: none), checked against prompt_map."""
  rel, ks = design.rotations[:, 0], design.rotations[:, 1]
  p = design.prompt_map.shape[1]
  # the plan must be what prompt_map says: prompt orders[r][j] meets orders[r][(j + k) mod P]
  order = design.orders[rel]  # (S, P)
  met = np.take_along_axis(order, (np.arange(p)[None] + ks[:, None]) % p, axis=1)
  wrong = np.flatnonzero(np.any(np.take_along_axis(design.prompt_map, order, axis=1) != met, 1))
  if wrong.size:
    s = int(wrong[0])
    raise ValueError(f"surrogate {s}: prompt_map is not rotation {ks[s]} of relabelling "
                     f"{rel[s]}; the design's rotations do not describe it")
  n_rel, half = len(design.orders), (p - 1) // 2
  slot_k = np.ones((n_rel, half), np.int64)
  rows = -np.ones((n_rel, half, 2), np.int64)
  for s in range(design.n_surrogates):
    k = int(ks[s])
    small = min(k, p - k)
    if not 1 <= small <= half or 2 * small == p:
      raise ValueError(f"surrogate {s}: rotation {k} of {p} prompts has no inverse pair")
    slot_k[rel[s], small - 1] = small
    side = 0 if k == small else 1
    if rows[rel[s], small - 1, side] >= 0:
      raise ValueError(f"surrogate {s} repeats rotation {k} of relabelling {rel[s]}")
    rows[rel[s], small - 1, side] = s
  return slot_k, rows


def _dft(r, n_prompts):
  """Real and imaginary parts of Σ_j r[j] e^{−2πi jf/P} for f = 0..P/2: each (F, U, T)."""
  f = np.arange(n_prompts // 2 + 1)[:, None]
  ang = 2 * np.pi * ((f * np.arange(n_prompts)[None, :]) % n_prompts) / n_prompts
  cos = jnp.asarray(np.cos(ang), r.dtype)
  sin = jnp.asarray(np.sin(ang), r.dtype)
  return (jnp.einsum("fj,jut->fut", cos, r, precision=_HI),
          -jnp.einsum("fj,jut->fut", sin, r, precision=_HI))


def _cross_spectra(re, im, tau):
  """(6, F, U, U): A_pp, A_ff, A_pf, B_pp, B_ff, B_pf with S = A + iB the time contractions of
  conj(Ẑ[a, t]) Ẑ[b, t'] over past/past, future/future and past(a)/future(b) samples.

  Lag 0 is contracted once over all T samples (A = [R, I][R, I]ᵀ, B = M − Mᵀ with M = R Iᵀ) and
  the τ samples a past or a future lacks are taken off; the mixed lag uses the three-product form
  of a complex product (Gauss): 3 T + 3 (T − τ) + 6 τ real products of length 1 per frequency.
  """
  length = re.shape[-1] - tau
  mm = functools.partial(jnp.einsum, "fut,fvt->fuv", precision=_HI)
  cat = functools.partial(jnp.concatenate, axis=-1)

  def hermitian(r, i):
    m = mm(r, i)
    return mm(cat([r, i]), cat([r, i])), m - jnp.swapaxes(m, 1, 2)

  a_all, b_all = hermitian(re, im)
  a_tail, b_tail = hermitian(re[..., length:], im[..., length:])  # not a past sample
  a_head, b_head = hermitian(re[..., :tau], im[..., :tau])  # not a future sample
  rp, ip, rf, i_f = re[..., :length], im[..., :length], re[..., tau:], im[..., tau:]
  k1 = mm(rp - ip, rf)
  k2 = mm(rp, i_f - rf)
  k3 = mm(ip, rf + i_f)
  return jnp.stack([a_all - a_tail, a_all - a_head, k1 + k3,
                    b_all - b_tail, b_all - b_head, k1 + k2])


def _pooled_stats(r, tau):
  """Per-unit offsets δ = mean − m and sds (ddof 1) of the pooled past and future samples."""
  length = r.shape[-1] - tau
  out = []
  for v in (r[..., :length], r[..., tau:]):
    d = jnp.mean(v, axis=(0, 2))
    out += [d, jnp.sqrt(jnp.sum((v - d[None, :, None]) ** 2, axis=(0, 2)) / (v.size // v.shape[1]
                                                                             - 1))]
  return out  # δ_p, σ_p, δ_f, σ_f


def _prepare(acts, tau):
  """Shared per-unit work (in-graph): centred series r (P, U, T), pooled offsets and sds, the lag-τ
  autocorrelations (U,) and the (U, U, 1) mask of degenerate units and the diagonal."""
  p, n, t = acts.shape
  bad = nulls._bad_units(acts, tau)  # pylint: disable=protected-access
  series = jnp.where(bad[None, :, None], (jnp.arange(t) % 2).astype(acts.dtype), acts)
  r = series - jnp.mean(series, axis=(0, 2))[None, :, None]
  xp, xf = nulls._lags(acts, tau, "concat", bad)  # pylint: disable=protected-access
  auto = jnp.sum(xp * xf, axis=(0, 2)) / (p * (t - tau) - 1)
  mask = (bad[:, None] | bad[None, :] | jnp.eye(n, dtype=bool))[..., None]
  return r, _pooled_stats(r, tau), auto, mask


def _freq_weights(ks, p, dtype):
  """(G, F) weights c_f/P · cos(2πkf/P) and · sin(2πkf/P) of rotations ks (G,)."""
  freq = np.arange(p // 2 + 1)
  fw = jnp.asarray(np.where((freq == 0) | (2 * freq == p), 1.0, 2.0) / p, dtype)
  ang = 2 * jnp.pi * ((ks[:, None] * freq[None, :]) % p).astype(dtype) / p
  return fw * jnp.cos(ang), fw * jnp.sin(ang)


def _slot(carry, ca, sb, ok, prep, obs, *, tau, weights):
  """One rotation pair: atoms from its synthesised sums ca, sb (3, U, U) each; both sides (k and
  P − k, the transpose) added to the moments where ok (2,); returns the head means (2, U, K)."""
  r, (dp, sp, df, sf), auto, mask = prep
  count = r.shape[0] * (r.shape[2] - tau)

  def corr(sums, dx, sx, dy, sy):
    return (sums - count * dx[:, None] * dy[None, :]) / (sx[:, None] * sy[None, :] * (count - 1))

  def used(carry):
    a = corr(ca[0] - sb[0], dp, sp, dp, sp)
    b = corr(ca[1] - sb[1], df, sf, df, sf)
    d = corr(ca[2] - sb[2], dp, sp, df, sf)
    e = corr(jnp.swapaxes(ca[2] + sb[2], 0, 1), df, sf, dp, sp)
    v = nulls._atoms_from_corrs(a, b, auto[:, None], d, e, auto[None, :], weights)  # pylint: disable=protected-access
    v = jnp.where(mask, jnp.nan, v)
    heads = []
    for side, vk in enumerate((v, jnp.swapaxes(v, 0, 1))):
      carry = nulls._accumulate(carry, jnp.where(ok[side], vk, jnp.nan), obs)  # pylint: disable=protected-access
      heads.append(jnp.where(ok[side], nulls.null_head_means(vk, jnp), jnp.nan))
    return carry, jnp.stack(heads)

  def unused(carry):  # a padding slot: nothing to add
    return carry, jnp.full((2,) + obs.shape[1:], jnp.nan, obs.dtype)

  return jax.lax.cond(jnp.any(ok), used, unused, carry)


@functools.partial(jax.jit, static_argnames=("tau", "weights"))
def _relabelling(carry, acts, obs, order, ks, oks, *, tau, weights):
  """Adds the surrogates of one relabelling (rotation pairs ks (C, G), used sides oks (C, G, 2))
  to the running moments; returns them and the slots' head means (C, G, 2, U, K)."""
  p = acts.shape[0]
  prep = _prepare(acts, tau)
  spec = _cross_spectra(*_dft(prep[0][order], p), tau)

  def chunk(carry, slots):
    ks, oks = slots
    wc, ws = _freq_weights(ks, p, acts.dtype)
    ca = jnp.einsum("gf,afuv->gauv", wc, spec[:3], precision=_HI)
    sb = jnp.einsum("gf,afuv->gauv", ws, spec[3:], precision=_HI)
    return jax.lax.scan(lambda c, x: _slot(c, *x, prep, obs, tau=tau, weights=weights), carry,
                        (ca, sb, oks))

  return jax.lax.scan(chunk, carry, (ks, oks))


def scan_slots(acts, obs, orders, rel, ks, oks, *, tau, weights):
  """In-graph moments of a flat list of rotation pairs (``flat_slots``; on one device of a mesh,
  its share): slot h is rotation ks[h] of relabelling rel[h], sides used where oks[h] (2,).

  Slots come sorted by relabelling; its spectra are made when the relabelling changes (a
  ``lax.cond``), so a block of slots from r relabellings makes r sets. Returns the moments and
  the slots' head means (H, 2, U, K).
  """
  p, n, _ = acts.shape
  prep = _prepare(acts, tau)
  spectra = lambda j: _cross_spectra(*_dft(prep[0][orders[j]], p), tau)
  spec0 = spectra(rel[0])

  def step(state, slot):
    carry, spec, cur = state
    j, k, ok = slot
    spec = jax.lax.cond(j == cur, lambda: spec, lambda: spectra(j))
    wc, ws = _freq_weights(k[None], p, acts.dtype)
    ca = jnp.einsum("f,afuv->auv", wc[0], spec[:3], precision=_HI)
    sb = jnp.einsum("f,afuv->auv", ws[0], spec[3:], precision=_HI)
    carry, heads = _slot(carry, ca, sb, ok, prep, obs, tau=tau, weights=weights)
    return (carry, spec, j), heads

  zero = jnp.zeros(obs.shape, obs.dtype)
  (carry, _, _), heads = jax.lax.scan(step, ((zero, zero, zero, zero), spec0, rel[0]),
                                      (rel, ks, oks))
  return carry, heads


def flat_slots(design: "nulls.NullDesign"):
  """The used rotation pairs of a design in relabelling order: rel (H,), ks (H,), rows (H, 2)
  (the design rows of rotations k and P − k; −1: not in the design)."""
  slot_k, rows = rotation_slots(design)
  rel, h = np.nonzero(np.any(rows >= 0, axis=2))
  return rel, slot_k[rel, h], rows[rel, h]


def _chunks(ks, oks, full: int):
  """(H,) slots → (C, G) chunks, the same shape for every relabelling of the design (one
  compiled program): C · G ≥ ``full`` (the pairs of a whole relabelling) with G ≤ ``CHUNK``;
  padding slots are unused (their atoms are skipped, ``_slot``)."""
  n_chunks = -(-full // CHUNK)
  size = -(-full // n_chunks)
  spare = n_chunks * size - len(ks)
  ks = np.concatenate([ks, np.ones(spare, ks.dtype)]).reshape(n_chunks, size)
  oks = np.concatenate([oks, np.zeros((spare, 2), bool)]).reshape(n_chunks, size, 2)
  return ks, oks


def moments(acts, obs, design: "nulls.NullDesign", *, tau: int, weights, dtype):
  """``nulls.NullMoments`` of a trial design under pooled Gaussian MMI (see module docstring).

  acts (P, U, T), obs (U, U, K) observed atoms; weights: ``nulls.kernel_weights(atoms)``. One
  call of one compiled program per relabelling (every relabelling's chunks take the same shape,
  ``_chunks``; the pairs a design does not use are skipped).
  """
  slot_k, rows = rotation_slots(design)
  acts, obs = jnp.asarray(acts, dtype), jnp.asarray(obs, dtype)
  zero = jnp.zeros(obs.shape, obs.dtype)
  carry = (zero, zero, zero, zero)
  null_head = np.full((design.n_surrogates,) + obs.shape[1:], np.nan)
  for rel in range(len(design.orders)):
    used = np.flatnonzero(np.any(rows[rel] >= 0, axis=1))
    if not used.size:
      continue
    ks, oks = _chunks(slot_k[rel, used], rows[rel, used] >= 0, rows.shape[1])
    carry, heads = _relabelling(carry, acts, obs, jnp.asarray(design.orders[rel]),
                                jnp.asarray(ks), jnp.asarray(oks), tau=tau, weights=weights)
    heads = np.asarray(heads, np.float64).reshape((-1,) + heads.shape[2:])[:len(used)]
    sel = rows[rel, used] >= 0
    null_head[rows[rel, used][sel]] = heads[sel]
  return nulls.NullMoments(*(np.asarray(v, np.float64) for v in carry), null_head)
