"""Ctrl-C that always stops a run, wherever the signal lands, and exits cleanly.

Python runs a SIGINT handler between bytecodes of whatever code is executing, and that can be a
callback whose exceptions the interpreter reports and then discards: a garbage-collection callback
(JAX registers one), a weakref finaliser, ``__del__``. A KeyboardInterrupt raised there is printed
as "Exception ignored in ..." and the run carries on to the end as if Ctrl-C had never been
pressed (seen in CI: the quick profile finished with exit 0 after SIGINT).

:func:`install` makes the interrupt stick: such a discarded KeyboardInterrupt is delivered again
to the main thread (``_thread.interrupt_main``, from a helper thread once the hook has returned),
where it surfaces at the next ordinary bytecode, so the experiment's ``run_main`` records the run
as interrupted and exits 130. Every other discarded exception is reported exactly as before.

:func:`exit_now` ends an interrupted process without the interpreter's normal shutdown. An
interrupt that lands while XLA is compiling or running leaves native threads and buffers behind,
and tearing the runtime down under them crashed the process (SIGSEGV, exit -11, after the status
and the resume message had been written) in each of three trials 15 to 30 s into a quick profile
(2026-12-02; with this exit, five trials from 0 to 48 s all ended with 130). Nothing is lost by
skipping the shutdown: results and caches are written atomically as they are produced, the run's
status is recorded before this is called, and the standard streams are flushed here.
"""
from __future__ import annotations

import _thread
import os
import sys
import threading
import time

_STATE = {"installed": False, "redelivered": 0}


def _interrupt_soon():
  time.sleep(0.01)
  _thread.interrupt_main()  # raised in the main thread's next ordinary frame


def _unraisable(hook):
  def handler(unraisable):
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
      _STATE["redelivered"] += 1
      # From another thread, a moment later: tripped here, the interrupt would be raised inside
      # this hook (and discarded again) at its next bytecode.
      threading.Thread(target=_interrupt_soon, daemon=True).start()
      return
    hook(unraisable)
  return handler


def install() -> None:
  """Installs the re-delivery hook once per process (idempotent)."""
  if not _STATE["installed"]:
    sys.unraisablehook = _unraisable(sys.unraisablehook)
    _STATE["installed"] = True


def redelivered() -> int:
  """How many swallowed KeyboardInterrupts were delivered again (for tests and diagnostics)."""
  return _STATE["redelivered"]


def exit_now(code: int) -> None:
  """Flushes stdout/stderr and ends the process with ``code`` at once (``os._exit``)."""
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):  # a closed or broken stream: nothing more can be said there
      pass
  os._exit(code)
