"""Row-block function of the all-pairs Gaussian MMI estimator with a soft minimum.

Axis legend: P prompts, B a block of x-side units, M y-side units, S lagged samples per prompt.

With ``PhiidConfig.smooth_min = t`` each MMI redundancy is −t·log Σ_k exp(−I_k / t) over its
candidate mutual informations (``lattice.soft_minimum``) instead of their minimum. The hard
minimum's fast path (products of arguments, one logarithm per chunk of prompts) relies on the
minimum being a maximum of arguments, which a soft minimum is not, so this block evaluates the
nine closed-form MIs of each prompt (``gaussian.average_mis``) and their lattice values, one
prompt at a time: every temporary is (B, M). Same inputs and outputs as
``blocks_gaussian.average_block``.
"""
import jax
import jax.numpy as jnp
from jax import lax

from synergy_jax.phiid import blocks_gaussian
from synergy_jax.phiid import gaussian
from synergy_jax.phiid import lattice


def average_block(xs, ys, *, pool, temperature, mi_offsets):
  """Soft-minimum MMI lattice values (B, M, 16) (nats) and the first singular prompt (B, M).

  xs = (x_p, x_f) (P, B, S); ys = (y_p, y_f) (P, M, S), standardised as for
  ``blocks_gaussian.average_block``. temperature: t > 0 (nats). mi_offsets: bias corrections of
  the nine MIs (None: plug-in); equal within each minimum, so they commute with it.
  """
  xp, xf = xs
  yp, yf = ys
  shape = (xp.shape[1], yp.shape[1])
  corrs, num = blocks_gaussian.correlation_source(xp, xf, yp, yf, pool)

  def one_prompt(q, carry):
    acc, first = carry
    cq = corrs(q)
    mis = gaussian.shift(gaussian.average_mis(*cq), mi_offsets)
    vals = lattice.lattice_values(mis, "mmi", lambda v: v, smooth_min=temperature)
    first = jnp.where((first < 0) & gaussian.singular(*cq), q, first)
    return acc + jnp.stack(vals, axis=-1), first

  init = (jnp.zeros(shape + (16,), xp.dtype), -jnp.ones(shape, jnp.int32))
  # checkpoint: reverse mode keeps one prompt's (B, M) temporaries at a time.
  acc, first = lax.fori_loop(0, num, jax.checkpoint(one_prompt, prevent_cse=False), init)
  return acc / num, first
