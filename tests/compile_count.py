"""Counting XLA compilations of one jitted function in a test, through JAX's public
`jax_log_compiles` option (every compilation logs "Compiling jit(NAME) ..."), instead of a jitted
function's private cache size."""
from __future__ import annotations

import contextlib
import logging

import jax


class _Counter(logging.Handler):
  def __init__(self, name: str):
    super().__init__(logging.DEBUG)
    self.marker, self.n = f"Compiling jit({name})", 0

  def emit(self, record):
    if record.getMessage().startswith(self.marker):
      self.n += 1


@contextlib.contextmanager
def compilations(name: str):
  """with compilations("_generate") as n: ... ; n() is how many times jit(_generate) compiled
  inside the block."""
  counter = _Counter(name)
  loggers = [logging.getLogger(n) for n in ("jax._src.interpreters.pxla", "jax._src.dispatch")]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.addHandler(counter)
    lg.setLevel(logging.DEBUG)
  try:
    with jax.log_compiles(True):
      yield lambda: counter.n
  finally:
    for lg, level in zip(loggers, levels):
      lg.removeHandler(counter)
      lg.setLevel(level)
