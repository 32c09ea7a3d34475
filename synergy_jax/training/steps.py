"""One jitted optimizer step for any differentiable objective.

``make_step(loss_fn, optimizer)`` turns ``loss_fn(params, batch) -> (loss, aux)`` into
``jit(step)(params, opt_state, batch, extra) -> (params, opt_state, metrics)``; ``extra`` is a dict
of traced extra arguments of the optimizer's update (``entry_mask`` for head-restricted training,
see freeze.py; {} otherwise). metrics: loss, grad_norm (global norm of the gradient on the entries
that train, before clipping) and the objective's aux scalars.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def make_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
  """See the module docstring. loss_fn must be traceable; params is its first argument."""

  def step(params, opt_state, batch, extra):
    (value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    if "entry_mask" in extra:  # the gradient of entries that train: what clipping sees
      grads_seen = jax.tree.map(lambda g, m: jnp.where(jnp.asarray(m, bool), g, 0.0), grads,
                                extra["entry_mask"])
    else:
      grads_seen = grads
    updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": value, "grad_norm": optax.global_norm(grads_seen), **aux}

  return jax.jit(step)
