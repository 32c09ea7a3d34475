"""One jitted optimizer step over a module's nnx.Param state, for any differentiable objective.

``make_step(loss_fn, optimizer, graphdef)`` turns ``loss_fn(model, batch) -> (loss, aux)`` — an
objective written against the module (``model(input_ids).logits``, ``models.score(model, ...)``)
— into ``jit(step)(params, rest, opt_state, batch, extra) -> (params, opt_state, metrics)``:
the module is rebuilt inside the trace from the static ``graphdef`` and the traced ``params``
(its nnx.Param state, modelstate.split) and ``rest`` (its other variables), the gradient is
taken with respect to ``params`` only, and optax updates that state. ``extra`` is a dict of
traced extra arguments of the optimizer's update (``entry_mask`` for head-restricted training,
see freeze.py; {} otherwise). metrics: loss, grad_norm (global norm of the gradient on the
entries that train, before clipping) and the objective's aux scalars.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx


def make_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
              graphdef) -> Callable:
  """See the module docstring. loss_fn must be traceable; graphdef: modelstate.Split.graphdef
  (static, so one compiled step serves every model of the architecture)."""

  def step(params, rest, opt_state, batch, extra):
    def objective(p):
      return loss_fn(nnx.merge(graphdef, p, rest), batch)

    (value, aux), grads = jax.value_and_grad(objective, has_aux=True)(params)
    if "entry_mask" in extra:  # the gradient of entries that train: what clipping sees
      grads_seen = jax.tree.map(lambda g, m: jnp.where(jnp.asarray(m, bool), g, 0.0), grads,
                                extra["entry_mask"])
    else:
      grads_seen = grads
    updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": value, "grad_norm": optax.tree.norm(grads_seen), **aux}

  return jax.jit(step)
