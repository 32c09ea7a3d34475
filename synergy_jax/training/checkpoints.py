"""Training checkpoints with orbax: save every few steps, resume after a kill, clear errors.

A checkpoint at step s holds the training state *after* s optimizer updates: a pytree
``{"params": ..., "opt_state": ...}`` (the step is the checkpoint's name). orbax writes each step
into a temporary folder and renames it when complete, so a run killed with ``kill -9`` during a
save leaves either the previous checkpoints or a complete new one, never a half-written one that
looks finished.

Restoring needs an abstract target (``jax.eval_shape`` of the state) so that the optimizer's
named tuples come back with their structure; a checkpoint whose tree or shapes do not match the
target, or whose files are damaged, raises ValueError naming the folder and step.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp


def _abs(directory: str | os.PathLike) -> str:
  return os.path.abspath(os.fspath(directory))


def manager(directory: str | os.PathLike, *, create: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager on ``directory`` (made absolute) that keeps every checkpoint."""
  directory = _abs(directory)
  if not create and not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint folder {directory!r} does not exist")
  options = ocp.CheckpointManagerOptions(max_to_keep=None, create=create,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(directory, options=options)


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Saves ``state`` as checkpoint ``step`` and waits until it is on disk (finalised)."""
  mngr.save(int(step), args=ocp.args.StandardSave(state), force=True)
  mngr.wait_until_finished()


def steps(directory: str | os.PathLike) -> list[int]:
  """The finished checkpoint steps in ``directory``, ascending ([] for an empty folder)."""
  directory = _abs(directory)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint folder {directory!r} does not exist")
  mngr = manager(directory, create=False)
  try:
    return sorted(mngr.all_steps())
  finally:
    mngr.close()


def restore(directory: str | os.PathLike, step: int | None, target,
            mngr: ocp.CheckpointManager | None = None):
  """Restores checkpoint ``step`` (None: the latest) of ``directory`` into the shape of ``target``.

  target: a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. ``jax.eval_shape`` of the state).
  Raises FileNotFoundError for a missing folder, an empty folder or a missing step, and
  ValueError for a checkpoint that cannot be read into ``target`` (damaged files, other tree).
  """
  directory = _abs(directory)
  own = mngr is None
  if own:
    mngr = manager(directory, create=False)
  try:
    available = sorted(mngr.all_steps())
    if step is None:
      if not available:
        raise FileNotFoundError(f"checkpoint folder {directory!r} holds no finished checkpoint")
      step = available[-1]
    if step not in available:
      raise FileNotFoundError(f"checkpoint folder {directory!r} has no step {step}; it holds "
                              f"steps {available}")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, target)
    try:
      restored = mngr.restore(int(step), args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, OSError, TypeError, RuntimeError) as e:
      raise ValueError(f"checkpoint step {step} in {directory!r} is damaged or does not match "
                       f"the expected training state: {type(e).__name__}: {e}") from e
    got = jax.tree.structure(restored)
    want = jax.tree.structure(abstract)
    if got != want:
      raise ValueError(f"checkpoint step {step} in {directory!r} has tree {got}, expected {want}")
    for path, a, b in zip(jax.tree_util.tree_flatten_with_path(restored)[0],
                          jax.tree.leaves(restored), jax.tree.leaves(abstract)):
      if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(f"checkpoint step {step} in {directory!r}: leaf "
                         f"{jax.tree_util.keystr(path[0])} is {a.shape} {a.dtype}, expected "
                         f"{b.shape} {b.dtype}")
    return restored
  finally:
    if own:
      mngr.close()
