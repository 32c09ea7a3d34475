"""Row-block function of the all-pairs Gaussian CCS estimator: local MIs by shared Cholesky chains.

Axis legend: P prompts, B a block of x-side units, M y-side units, S lagged samples per prompt.
Variables of a pair, as in ``gaussian``: 0 = x_p, 1 = y_p, 2 = x_f, 3 = y_f; w_{k|J} is the
whitened residual of variable k given the variables J (Cholesky order), so that the quadratic
form of a variable set is q_S = Σ w² along its chain.

CCS needs every local mutual information at every sample (its sign test is per sample), so its
cost is the work per (pair, prompt, sample). ``gaussian.local_mis`` does that work by a forward
substitution of each of 15 correlation sub-matrices per sample. Here, with the same Cholesky
factors (so the same rounding behaviour, float32 included),

  i(A;B)(t) = I(A;B) + ½ (q_A(t) + q_B(t) − q_AB(t)),

and the chains share their prefixes: q_AB of (x_p, y_p, x_f) extends q_A of (x_p, y_p), the z_p²
terms cancel, and what is left of the nine local MIs is ten residuals per pair and sample,

  xy: ½(y_f² − w_{3|0}²)      yx: ½(x_f² − w_{2|1}²)      sx: ½(x_f² − w_{2|01}²)
  sy: ½(y_f² − w_{3|01}²)     xs: ½(x_f² + w_{3|2}² − w_{2|0}² − w_{3|02}²)
  ys: ½(x_f² + w_{3|2}² − w_{2|1}² − w_{3|12}²)    ss: ½(x_f² + w_{3|2}² − w_{2|01}² − w_{3|012}²)
  xx: ½(x_f² − w_{2|0}²), yy: ½(y_f² − w_{3|1}²) (one unit each),

about 40 operations instead of ~80 with 29 divisions. The Cholesky factors and average MIs of a
pair's prompt are computed once per prompt (``pair_terms``); the nine MI slots of the lattice are
the closed-form averages (the quadratic part of a local MI sums to zero over the samples, see
``gaussian``) and only the seven CCS slots are summed over samples (``sample_sums``). Series enter scaled by 1/√2 so that every ½ w² is a plain square.
"""
import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from synergy_jax.phiid import gaussian
from synergy_jax.phiid import lattice

SLOTS = tuple(lattice.PID_REDUNDANCIES) + ("rtr",)  # the seven slots CCS sums over samples
# Local MI of the rtr co-information: Σ ± (local lattice value), ``lattice.DOUBLE_COINFO``.
_COINFO = {lattice.ATOMS[k]: int(w) for k, w in enumerate(lattice.DOUBLE_COINFO) if w}


def pair_terms(corrs, averages, x_side, y_side, autocorrs=None):
  """What the samples of one prompt need, computed once per prompt.

  Args:
    corrs: (a, b, c, d, e, f), each (B, M) (see ``gaussian``): the prompt's (or the pooled)
      correlations.
    averages: dict MI name → (B, M) average MI minus any bias offset (the constant of each local
      MI).
    x_side: (x_p, x_f), each (B, S); y_side: (y_p, y_f), each (M, S): standardised lagged series.
    autocorrs: (c, f) to read the units' own lag-τ autocorrelations from (default: corrs'). Pass
      the unguarded correlations here when ``corrs`` went through ``gaussian.guarded``: a
      singular pair's placeholder zeros must not stand in for its units' autocorrelations.
  Returns:
    (pair, x_unit, y_unit): dicts of (B, M) Cholesky entries and constants, of (S, B, 1) x-unit
    series and of (S, 1, M) y-unit series. Samples are on the major axis.
  """
  a, b, c, d, e, f = corrs
  om = lambda r: (1 - r) * (1 + r)  # 1 − r², as ``gaussian`` writes it
  inv_sqrt = lambda v: 1 / jnp.sqrt(v)
  # Chain (x_p, y_p, x_f, y_f): L10 = a, L20 = c, L30 = d.
  l11 = jnp.sqrt(om(a))
  l21 = (e - c * a) / l11
  l31 = (f - d * a) / l11
  v_sy = om(d) - l31 * l31  # var(y_f | x_p, y_p)
  l22 = jnp.sqrt(om(c) - l21 * l21)  # √var(x_f | x_p, y_p)
  l32 = (b - d * c - l31 * l21) / l22
  # Chains (x_p, x_f, y_f) and (y_p, x_f, y_f).
  m32 = (b - d * c) / jnp.sqrt(om(c))
  n32 = (b - f * e) / jnp.sqrt(om(e))
  pair = dict(a=a, d=d, e=e, b=b, l21=l21, l31=l31, l32=l32, m32=m32, n32=n32,
              r11=1 / l11, r22=1 / l22, r301=inv_sqrt(v_sy), r3012=inv_sqrt(v_sy - l32 * l32),
              r30=inv_sqrt(om(d)), r302=inv_sqrt(om(d) - m32 * m32), r21=inv_sqrt(om(e)),
              r312=inv_sqrt(om(f) - n32 * n32), r32=inv_sqrt(om(b)),
              **{"k" + name: v for name, v in averages.items()})
  half = jnp.asarray(np.sqrt(0.5), a.dtype)  # a NumPy float64 scalar would promote float32
  xp, xf = (half * v.T[:, :, None] for v in x_side)  # (S, B, 1)
  yp, yf = (half * v.T[:, None, :] for v in y_side)  # (S, 1, M)
  # Autocorrelations: c is the x-unit's and f the y-unit's (constant along the other axis).
  c_u, f_u = (c, f) if autocorrs is None else autocorrs
  # A unit whose future is an affine map of its past (1 − c² at or below the singularity
  # tolerance) makes every pair of it singular, hence masked; a placeholder 0 keeps its
  # derivative finite (the double where), since it would otherwise be 1/0 for its whole row.
  tol = gaussian.pivot_tolerance(a.dtype)
  c_u, f_u = (jnp.where(om(r) > tol, r, jnp.zeros((), r.dtype)) for r in (c_u, f_u))
  c_x = c_u[:, :1][None]  # (1, B, 1)
  f_y = f_u[:1, :][None]  # (1, 1, M)
  v2 = xf - c_x * xp  # x_f − c x_p: the residual of x_f given x_p, unwhitened
  w20 = v2 / jnp.sqrt(om(c_x))
  x_unit = dict(xp=xp, xf=xf, v2=v2, w20=w20, hx=xf * xf, gx=xf * xf - w20 * w20)
  s3 = yf - f_y * yp
  w31 = s3 / jnp.sqrt(om(f_y))
  y_unit = dict(yp=yp, yf=yf, s3=s3, hy=yf * yf, gy=yf * yf - w31 * w31)
  return pair, x_unit, y_unit


def local_mis(terms):
  """The nine local MIs of every pair and sample from ``pair_terms``: dict name → (S, B, M)."""
  pair, xu, yu = terms
  p = {k: v[None] for k, v in pair.items()}  # (1, B, M)
  xp, yp = xu["xp"], yu["yp"]
  w1 = (yp - p["a"] * xp) * p["r11"]  # w_{1|0}, unscaled by the Cholesky diagonal
  w201 = (xu["v2"] - p["l21"] * w1) * p["r22"]
  t = yu["yf"] - p["d"] * xp  # y_f − d x_p
  u3 = t - p["l31"] * w1
  w301 = u3 * p["r301"]
  w3012 = (u3 - p["l32"] * w201) * p["r3012"]
  w30 = t * p["r30"]
  w302 = (t - p["m32"] * xu["w20"]) * p["r302"]
  w21 = (xu["xf"] - p["e"] * yp) * p["r21"]
  w312 = (yu["s3"] - p["n32"] * w21) * p["r312"]
  w32 = (yu["yf"] - p["b"] * xu["xf"]) * p["r32"]
  hx, hy = xu["hx"], yu["hy"]
  fut = hx + w32 * w32  # ½ (x_f² + w_{3|2}²) = ½ q(x_f, y_f)
  return {
      "xx": p["kxx"] + xu["gx"], "yy": p["kyy"] + yu["gy"],
      "xy": p["kxy"] + (hy - w30 * w30), "yx": p["kyx"] + (hx - w21 * w21),
      "sx": p["ksx"] + (hx - w201 * w201), "sy": p["ksy"] + (hy - w301 * w301),
      "xs": p["kxs"] + (fut - xu["w20"] * xu["w20"] - w302 * w302),
      "ys": p["kys"] + (fut - w21 * w21 - w312 * w312),
      "ss": p["kss"] + (fut - w201 * w201 - w3012 * w3012),
  }


def _ccs(terms, coinfo):
  """The local co-information where it has the sign of every local term, else 0: the decision of
  ``lattice._ccs`` (sign(t) == sign(coinfo) for all t; NaN never agrees), with a minimum and a
  maximum instead of a comparison per term."""
  lo = functools.reduce(jnp.minimum, terms)
  hi = functools.reduce(jnp.maximum, terms)
  agree = ((coinfo > 0) & (lo > 0)) | ((coinfo < 0) & (hi < 0))
  return jnp.where(agree, coinfo, jnp.zeros_like(coinfo))


def _sample_values(terms):
  """The seven local CCS values (``SLOTS`` order) of every pair at the samples in ``terms``."""
  mis = local_mis(terms)
  vals = dict(mis)
  for slot, (c1, c2, joint) in lattice.PID_REDUNDANCIES.items():
    vals[slot] = _ccs((mis[c1], mis[c2], mis[joint]), mis[c1] + mis[c2] - mis[joint])
  coinfo = 0.0
  for name, w in _COINFO.items():  # weights ±1
    v = vals[_mi_or_slot(name)]
    coinfo = coinfo + v if w > 0 else coinfo - v
  vals["rtr"] = _ccs(tuple(mis[c] for c in lattice.DOUBLE_CANDIDATES), coinfo)
  return tuple(vals[k] for k in SLOTS)


def sample_sums(terms):
  """Σ over samples of the seven local CCS redundancy values (``SLOTS``) of every pair.

  Args:
    terms: ``pair_terms`` of the prompt. They should be materialised (e.g. a loop carry): XLA
      otherwise fuses their computation into the per-sample work and redoes the Cholesky
      factors at every sample.
  Returns:
    tuple of seven (B, M) sums over the S samples in ``SLOTS`` order, nats.
  """
  pair, x_unit, y_unit = terms
  shape = next(iter(pair.values())).shape
  dtype = next(iter(pair.values())).dtype

  # One sample per step, every array (B, M): XLA CPU runs this body as elementwise loops that
  # stay in cache, 1.7× faster than one variadic reduction over a (S, B, M) expression
  # (2026-12-02, same run).
  def step(t, acc):
    here = (pair, {k: lax.dynamic_index_in_dim(v, t, 0) for k, v in x_unit.items()},
            {k: lax.dynamic_index_in_dim(v, t, 0) for k, v in y_unit.items()})
    return tuple(a + v[0] for a, v in zip(acc, _sample_values(here)))

  num = x_unit["xp"].shape[0]
  return lax.fori_loop(0, num, step, tuple(jnp.zeros(shape, dtype) for _ in SLOTS))


def _mi_or_slot(atom):
  """Lattice slot name → the key of ``vals``: MI names for the nine MI slots ("xtx" → "xx")."""
  return atom[0] + atom[2] if atom[0] != "r" and atom[2] != "r" else atom
