"""Gaussian ΦID estimator: local and average mutual informations from correlation matrices.

Four variables per pair, indexed 0 = x_p (past x), 1 = y_p, 2 = x_f (future x), 3 = y_f. Each is
standardised on its own (ddof=1) and the sample covariance (ddof=1) of standardised series is a
correlation matrix, fully described by six correlations:

  a = r(x_p, y_p)   b = r(x_f, y_f)   c = r(x_p, x_f)   d = r(x_p, y_f)   e = r(y_p, x_f)
  f = r(y_p, y_f)

Local mutual information of variable sets A and B at sample t (Gaussian log-densities, zero mean):

  i(A;B)(t) = ½ (log|R_A| + log|R_B| − log|R_AB|) + ½ (q_A(t) + q_B(t) − q_AB(t)),
  q_S(t) = z_S(t)ᵀ R_S⁻¹ z_S(t).

With ddof=1 for both the standardisation and the covariance, Σ_t q_S(t) = (S−1)·dim(S) for S
samples, so the quadratic terms cancel in the mean and the mean of the local MI equals the closed
form ½ (log|R_A| + log|R_B| − log|R_AB|) exactly. Average MMI atoms therefore need only the six
correlations (``average_mis``); CCS and local atoms need the per-sample terms (``local_mis``).
With ``offsets`` (``bias.mi_offsets``) every mutual information, local or average, is lowered by
its analytic small-sample bias. All values in nats.

Singular pairs and reverse mode: a pair whose correlation matrix is singular to working precision
(``smallest_pivot`` ≤ ``pivot_tolerance``: the diagonal pair of all-pairs, a unit's past an affine
function of its future, ...) is reported and masked with NaN by every caller. Its values would be
infinite, and a ``jnp.where`` mask alone does not stop the NaN their derivatives carry (0 · ∞) from
reaching the activity's gradient. So every function here that takes logarithms of correlations
first swaps the correlations of such pairs for zeros (``guarded``; the "double where"): their
values become finite placeholders that callers mask anyway, and their gradient is exactly 0.
"""
import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.phiid import lattice

# MI name → (past variable indices, future variable indices).
_PAST = {"x": (0,), "y": (1,), "s": (0, 1)}
_FUTURE = {"x": (2,), "y": (3,), "s": (2, 3)}


def correlations(zs):
  """The six correlations (a, b, c, d, e, f) of standardised (x_p, y_p, x_f, y_f), each (...)."""
  xp, yp, xf, yf = zs
  n = xp.shape[-1]
  r = lambda u, v: jnp.sum(u * v, axis=-1) / (n - 1)
  return r(xp, yp), r(xf, yf), r(xp, xf), r(xp, yf), r(yp, xf), r(yp, yf)


# A pivot (1 − r² or a conditional variance) below this many machine epsilons of the compute
# dtype means an MI above −½ log(64 ε) (5.9 nats in float32, 16 in float64): indistinguishable
# from an exact affine relation in that dtype, so the pair is reported instead of estimated.
PIVOT_EPS = 64


def pivot_tolerance(dtype):
  return PIVOT_EPS * float(jnp.finfo(dtype).eps)


def _one_minus_sq(r):
  """1 − r², written as (1 − r)(1 + r) to keep precision near |r| = 1."""
  return (1 - r) * (1 + r)


def conditional_variances(a, b, c, d, e, f):
  """Residual variances of one standardised variable given others (Cholesky order), nats-free.

  Determinants of the small correlation matrices are products of these; computing them in
  Cholesky order keeps float32 accurate for near-copies (the closed-form 4×4 determinant loses
  most digits when x ≈ y). Each: 1 − (squared multiple correlation).

  Returns:
    dict with (shapes broadcast from the inputs)
      "xs": var(x_p | x_f, y_f)   "ys": var(y_p | x_f, y_f)
      "sx": var(x_f | x_p, y_p)   "sy": var(y_f | x_p, y_p)
      "4":  var(y_f | x_p, y_p, x_f)
  """
  oa, ob = _one_minus_sq(a), _one_minus_sq(b)

  def given_pair(p_one, q, s, p):
    # var(w | u, v) with p = r(u,v), q = r(u,w), s = r(v,w): 1 − q² − (s − pq)² / (1 − p²).
    return _one_minus_sq(q) - (s - p * q) ** 2 / p_one

  v_sx = given_pair(oa, c, e, a)
  v_sy = given_pair(oa, d, f, a)
  v_xs = given_pair(ob, c, d, b)
  v_ys = given_pair(ob, e, f, b)
  # Cholesky of (x_p, y_p, x_f, y_f): L32 = (e − ca)/√(1−a²), L42 = (f − da)/√(1−a²),
  # L33² = v_sx, L43 = (b − dc − L42 L32)/L33, var(y_f | rest) = 1 − d² − L42² − L43².
  l42_l32 = (f - d * a) * (e - c * a) / oa
  l43_sq = (b - d * c - l42_l32) ** 2 / v_sx
  v4 = v_sy - l43_sq
  return {"xs": v_xs, "ys": v_ys, "sx": v_sx, "sy": v_sy, "4": v4}


def average_mis(a, b, c, d, e, f):
  """The nine average mutual informations from the six correlations (closed form).

  Args:
    a, b, c, d, e, f: broadcastable arrays of correlations (see module docstring).
  Returns:
    dict MI name → array of the broadcast shape (nats); 0 at ``singular`` pairs (see ``guarded``).
  """
  a, b, c, d, e, f = guarded((a, b, c, d, e, f))
  v = conditional_variances(a, b, c, d, e, f)
  nlog = lambda t: -0.5 * jnp.log(t)
  return {
      "xx": nlog(_one_minus_sq(c)), "xy": nlog(_one_minus_sq(d)),
      "yx": nlog(_one_minus_sq(e)), "yy": nlog(_one_minus_sq(f)),
      "xs": nlog(v["xs"]), "ys": nlog(v["ys"]), "sx": nlog(v["sx"]), "sy": nlog(v["sy"]),
      # I(x_p,y_p; x_f,y_f) = ½ log((1−a²)(1−b²)/|R|), |R| = (1−a²) v_sx v_4.
      "ss": 0.5 * (jnp.log(_one_minus_sq(b)) - jnp.log(v["sx"]) - jnp.log(v["4"])),
  }


def _chol_logdet_quad(idx, corr, zs):
  """log|R_S| and the per-sample quadratic form z_Sᵀ R_S⁻¹ z_S by an unrolled Cholesky.

  Args:
    idx: variable indices of S (static tuple, length 1–4).
    corr: dict (i, j) with i < j → correlation array (..., 1).
    zs: tuple of 4 standardised arrays broadcastable to (..., S).
  Returns:
    (logdet (..., 1), quad (..., S)).
  """
  k = len(idx)
  if k == 1:
    return jnp.zeros_like(corr[(0, 1)]), zs[idx[0]] ** 2
  low = {}
  for i in range(k):
    for j in range(i + 1):
      s = 1.0 if i == j else corr[tuple(sorted((idx[i], idx[j])))]
      for m in range(j):
        s = s - low[i, m] * low[j, m]
      low[i, j] = jnp.sqrt(s) if i == j else s / low[j, j]
  logdet = 2 * sum(jnp.log(low[i, i]) for i in range(k))
  w, quad = [], 0.0
  for i in range(k):
    r = zs[idx[i]]
    for m in range(i):
      r = r - low[i, m] * w[m]
    w.append(r / low[i, i])
    quad = quad + w[i] ** 2
  return logdet, quad


def local_mis(corrs, zs, offsets=None):
  """The nine local mutual-information series.

  Args:
    corrs: (a, b, c, d, e, f) correlation arrays of shape (...).
    zs: (x_p, y_p, x_f, y_f) standardised series broadcastable to (..., S).
    offsets: optional dict MI name → bias (float, nats) subtracted from every sample.
  Returns:
    dict MI name → (..., S) local MI (nats); the mean over S equals ``average_mis`` (minus the
    offsets). At ``singular`` pairs the correlations are replaced by 0 (``guarded``).
  """
  a, b, c, d, e, f = (r[..., None] for r in guarded(corrs))
  corr = {(0, 1): a, (2, 3): b, (0, 2): c, (0, 3): d, (1, 2): e, (1, 3): f}
  cache = {}

  def terms(idx):
    if idx not in cache:
      cache[idx] = _chol_logdet_quad(idx, corr, zs)
    return cache[idx]

  out = {}
  for name in lattice.MI_NAMES:
    pa, fu = _PAST[name[0]], _FUTURE[name[1]]
    ld_a, q_a = terms(pa)
    ld_b, q_b = terms(fu)
    ld_ab, q_ab = terms(pa + fu)
    out[name] = 0.5 * (ld_a + ld_b - ld_ab) + 0.5 * (q_a + q_b - q_ab)
  return shift(out, offsets)


def shift(mis, offsets):
  """dict of MIs minus their bias offsets (unchanged when ``offsets`` is None)."""
  if offsets is None:
    return mis
  return {name: v - offsets[name] for name, v in mis.items()}


def _sample_mean(v):
  return jnp.mean(v, axis=-1, keepdims=True)


def local_lattice_values(corrs, zs, redundancy, offsets=None, averages=None):
  """Local redundancy-function values, tuple of 16 arrays (..., S) in ATOMS slot order (nats).

  ``averages`` (dict MI name → (..., 1)) overrides the sample means used for the MMI choice.
  """
  return lattice.lattice_values(local_mis(corrs, zs, offsets), redundancy, _sample_mean,
                                averages)


def average_lattice_values(corrs, zs, redundancy, offsets=None, smooth_min=None):
  """Average redundancy-function values, (..., 16) in ATOMS slot order (nats).

  MMI uses the closed form (no per-sample work; ``zs`` unused), with the soft minimum of
  temperature ``smooth_min`` when given; CCS averages the local values.
  """
  if redundancy == "mmi":
    vals = lattice.lattice_values(shift(average_mis(*corrs), offsets), "mmi", lambda v: v,
                                  smooth_min=smooth_min)
    return jnp.stack(vals, axis=-1)
  vals = local_lattice_values(corrs, zs, redundancy, offsets)
  return jnp.stack([jnp.mean(v, axis=-1) for v in vals], axis=-1)


def pair_atoms(zs, redundancy, local, offsets=None, smooth_min=None):
  """Gaussian ΦID of standardised lagged vectors zs = (x_p, y_p, x_f, y_f), each (..., S).

  Returns (..., 16) average atoms or (..., S, 16) local atoms in ATOMS order, nats.
  ``smooth_min``: MMI soft-minimum temperature (average atoms only).
  """
  corrs = correlations(zs)
  if local:
    if smooth_min is not None:
      raise ValueError("smooth_min applies to average atoms, not local ones")
    vals = local_lattice_values(corrs, zs, redundancy, offsets)
    return lattice.atoms_from_lattice_values(jnp.stack(vals, axis=-1))
  return lattice.atoms_from_lattice_values(
      average_lattice_values(corrs, zs, redundancy, offsets, smooth_min))


def smallest_pivot(a, b, c, d, e, f):
  """The smallest of the positive quantities whose logarithms make the nine MIs: 1 − r² of every
  correlation and the conditional variances (``conditional_variances``). Near 0 (or ≤ 0, or NaN)
  the 4×4 correlation matrix is singular to working precision: some variable is an affine
  function of others and the mutual informations are infinite. Shape: the broadcast shape."""
  v = conditional_variances(a, b, c, d, e, f)
  out = v["4"]
  terms = [_one_minus_sq(r) for r in (a, b, c, d, e, f)] + [v[k] for k in ("xs", "ys", "sx", "sy")]
  for t in terms:
    out = jnp.minimum(out, t)
  return out


def singular(a, b, c, d, e, f):
  """(broadcast shape) bool: the correlation matrix is singular to working precision (or NaN)."""
  return ~(smallest_pivot(a, b, c, d, e, f) > pivot_tolerance(jnp.result_type(a, c, f)))


def guarded(corrs):
  """The six correlations with those of ``singular`` pairs replaced by 0 (an identity matrix).

  Forward values elsewhere are unchanged; at singular pairs every MI becomes a finite placeholder
  (0 nats) that callers mask, and the derivative through the replaced branch is exactly 0, so a
  masked pair cannot poison the gradient of the others (``jnp.where`` twice: here and at the
  mask). Returns a tuple of six arrays of the broadcast shape.
  """
  corrs = tuple(jnp.asarray(r) for r in corrs)
  bad = singular(*corrs)
  shape = bad.shape
  return tuple(jnp.where(bad, jnp.zeros((), r.dtype), jnp.broadcast_to(r, shape)) for r in corrs)


# Fast MMI path. Every average lattice value under MMI is ½ Σ_k W[slot, k] log(arg_k) for the 17
# positive "arguments" below (1 − r² terms, conditional variances, and maxima of them: the MI with
# the *smallest* value is the one with the *largest* argument, so a minimum of MIs is a maximum of
# arguments). Summing log(arg) over prompts equals the log of the product of args, so callers
# multiply args over a few prompts and take one log per chunk.
MMI_ARG_NAMES = ("1-b2", "1-c2", "1-d2", "1-e2", "1-f2", "v_xs", "v_ys", "v_sx", "v_sy", "v_4",
                 "max(1-c2,1-e2)", "max(1-d2,1-f2)", "max(1-c2,1-d2)", "max(1-e2,1-f2)",
                 "max(v_xs,v_ys)", "max(v_sx,v_sy)", "max(1-c2,1-d2,1-e2,1-f2)")


def _mmi_log_weights():
  w = np.zeros((16, len(MMI_ARG_NAMES)), dtype=np.int64)
  rows = {
      "xtx": {"1-c2": -1}, "xty": {"1-d2": -1}, "ytx": {"1-e2": -1}, "yty": {"1-f2": -1},
      "xts": {"v_xs": -1}, "yts": {"v_ys": -1}, "stx": {"v_sx": -1}, "sty": {"v_sy": -1},
      "sts": {"1-b2": 1, "v_sx": -1, "v_4": -1},
      "rtx": {"max(1-c2,1-e2)": -1}, "rty": {"max(1-d2,1-f2)": -1},
      "xtr": {"max(1-c2,1-d2)": -1}, "ytr": {"max(1-e2,1-f2)": -1},
      "rts": {"max(v_xs,v_ys)": -1}, "str": {"max(v_sx,v_sy)": -1},
      "rtr": {"max(1-c2,1-d2,1-e2,1-f2)": -1},
  }
  for slot, terms in rows.items():
    for name, weight in terms.items():
      w[lattice.ATOMS.index(slot), MMI_ARG_NAMES.index(name)] = weight
  return w


# 2 · R[slot] = Σ_k MMI_LOG_WEIGHTS[slot, k] · log(arg_k); slots in ATOMS order.
MMI_LOG_WEIGHTS = _mmi_log_weights()


def mmi_arguments(a, b, c, d, e, f):
  """The 17 positive MMI arguments (``MMI_ARG_NAMES``) from the six correlations, broadcast shape
  (all 1 at ``singular`` pairs, see ``guarded``).

  ``jnp.maximum`` splits its derivative equally between tied arguments, so at an exact tie of two
  candidate MIs the gradient is the mean of the two candidates' gradients (a valid subgradient).
  """
  return _raw_mmi_arguments(*guarded((a, b, c, d, e, f)))


@jax.custom_jvp
def mmi_arguments_unguarded(a, b, c, d, e, f):
  """``mmi_arguments`` without the guard's extra pivot computation in the forward pass: the same
  values at regular pairs, unspecified ones (possibly ≤ 0) at ``singular`` pairs, which the
  caller must mask (the all-pairs loop records them and returns NaN or raises). Under
  differentiation the tangent is that of the guarded ``mmi_arguments`` (custom_jvp), so masked
  pairs keep a zero, finite derivative; a plain forward pass (the common case) runs at the
  unguarded speed (the guard alone made all_pairs ~1.7x slower on CPU)."""
  return _raw_mmi_arguments(a, b, c, d, e, f)


@mmi_arguments_unguarded.defjvp
def _mmi_arguments_jvp(primals, tangents):
  return jax.jvp(mmi_arguments, primals, tangents)


def _raw_mmi_arguments(a, b, c, d, e, f):
  ob, oc, od, oe, of = (_one_minus_sq(r) for r in (b, c, d, e, f))
  v = conditional_variances(a, b, c, d, e, f)
  return (ob, oc, od, oe, of, v["xs"], v["ys"], v["sx"], v["sy"], v["4"],
          jnp.maximum(oc, oe), jnp.maximum(od, of), jnp.maximum(oc, od), jnp.maximum(oe, of),
          jnp.maximum(v["xs"], v["ys"]), jnp.maximum(v["sx"], v["sy"]),
          jnp.maximum(jnp.maximum(oc, od), jnp.maximum(oe, of)))


def mmi_lattice_from_logs(log_sums, count):
  """(..., 17) sums of log(arg) over ``count`` prompts → (..., 16) mean lattice values (nats)."""
  w = jnp.asarray(MMI_LOG_WEIGHTS, dtype=log_sums.dtype)
  # k: the 17 arguments, s: the 16 lattice slots.
  return jnp.einsum("...k,sk->...s", log_sums, w, precision="highest") * (0.5 / count)
