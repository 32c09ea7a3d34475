"""Training checkpoints with orbax: save every few steps, resume after a kill, verified restores.

A checkpoint at step s holds the training state *after* s optimizer updates: a pytree
``{"params": ..., "opt_state": ...}`` (the step is the checkpoint's name) plus a SHA-256 content
checksum of that state, stored as a (32,) uint8 leaf next to it, so one orbax save writes both.
Every ``nnx.State`` in the state (the module's nnx.Param state, the optimizer's moments over it)
is stored as its plain nested dict (``modelstate.to_pure``) and rebuilt on restore from the
target's structure; the dict layout is the module's tree, so checkpoints of the previous
format (the params dict of the same layout) restore unchanged. A checkpoint whose stored tree
has other leaves than the target (another module structure or model) raises one
``LayoutMismatch`` line naming the folder and step and the differing leaves; it is not damage,
so ``latest_good`` never moves it aside.
orbax writes each step into a temporary folder and renames it when complete, so a run killed with
``kill -9`` during a save leaves either the previous checkpoints or a complete new one.

Restoring needs an abstract target (``jax.eval_shape`` of the state) so that the optimizer's
named tuples come back with their structure. Every restore recomputes the checksum of what was
read; a checkpoint whose files cannot be read, whose tree or shapes differ from the target, or
whose bytes changed after saving (checksum mismatch) raises one ``DamagedCheckpoint`` (a
ValueError) naming the folder and step. ``latest_good`` walks back from the newest checkpoint
to the newest one that verifies.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from synergy_jax.training import modelstate

CHECKSUM_KEY = "_sha256"


class DamagedCheckpoint(ValueError):
  """A checkpoint that exists but cannot be trusted: unreadable, other tree, or wrong checksum."""

  def __init__(self, directory: str, step: int, reason: str):
    self.directory, self.step, self.reason = directory, int(step), reason
    super().__init__(f"checkpoint step {step} in {directory!r} is damaged: {reason}")


class LayoutMismatch(ValueError):
  """A checkpoint whose stored leaves differ from the expected training state's."""

  def __init__(self, directory: str, step: int, missing: list[str], unexpected: list[str]):
    self.directory, self.step = directory, int(step)
    show = lambda names: "[" + ", ".join(names[:4]) + (", …" if len(names) > 4 else "") + "]"
    super().__init__(
        f"checkpoint step {step} in {directory!r} stores another training-state layout than "
        f"this run's model ({len(missing)} leaves missing {show(missing)}, {len(unexpected)} "
        f"unexpected {show(unexpected)}): it was written for another model structure or by "
        "another synergy_jax version; resume it with that version or use a new workdir")


def _abs(directory: str | os.PathLike) -> str:
  return os.path.abspath(os.fspath(directory))


def checksum(state) -> np.ndarray:
  """SHA-256 of a pytree's content: per leaf (in flattening order) its path, shape, dtype and
  bytes. Returns (32,) uint8. Any changed value, shape, dtype or tree path changes it."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    a = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
    h.update(f"{jax.tree_util.keystr(path)}|{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
  return np.frombuffer(h.digest(), np.uint8).copy()


def manager(directory: str | os.PathLike, *, create: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager on ``directory`` (made absolute) that keeps every checkpoint."""
  directory = _abs(directory)
  if not create and not os.path.isdir(directory):
    raise FileNotFoundError(f"checkpoint folder {directory!r} does not exist")
  options = ocp.CheckpointManagerOptions(max_to_keep=None, create=create,
                                         cleanup_tmp_directories=True)
  # the handler is named so that the stored tree's metadata can be read before a restore
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Saves ``state`` and its checksum as checkpoint ``step`` and waits until it is on disk
  (nnx.States as plain dicts, see the module docstring)."""
  if not isinstance(state, dict) or CHECKSUM_KEY in state:
    raise ValueError(f"checkpoint state must be a dict without the key {CHECKSUM_KEY!r}")
  pure = modelstate.to_pure(state)
  stored = {**pure, CHECKSUM_KEY: checksum(pure)}
  mngr.save(int(step), args=ocp.args.StandardSave(stored), force=True)
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


def _first_line(e: BaseException, limit: int = 240) -> str:
  text = (str(e).strip().splitlines() or [""])[0]
  return f"{type(e).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


def _abstract(target):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, target)


def _names(path) -> tuple:
  """A key path as plain names: dict keys, attribute names (named tuples) and indices alike, so
  orbax's stored metadata (named tuples as dicts, tuples as lists) compares with the target."""
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def _check_layout(mngr, directory: str, step: int, abstract) -> None:
  """Raises LayoutMismatch if the stored tree's leaves differ from ``abstract``'s; a checkpoint
  whose metadata cannot be read is left to the restore (which reports the damage)."""
  try:
    stored = mngr.item_metadata(step)
    stored = getattr(stored, "tree", stored)
  except Exception:  # noqa: BLE001  (unreadable metadata is damage; the restore names it)
    return
  if not isinstance(stored, dict):
    return
  have = {_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(stored)[0]}
  want = {_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(abstract)[0]}
  if have != want:
    fmt = lambda names: sorted("/".join(n) for n in names)
    raise LayoutMismatch(directory, step, fmt(want - have), fmt(have - want))


def restore(directory: str | os.PathLike, step: int | None, target,
            mngr: ocp.CheckpointManager | None = None):
  """Restores and verifies checkpoint ``step`` (None: the latest) into the shape of ``target``.

  target: a pytree of arrays or ``jax.ShapeDtypeStruct`` (e.g. ``jax.eval_shape`` of the state),
  without the checksum; nnx.States in it come back as nnx.States. Raises FileNotFoundError for
  a missing folder, an empty folder or a missing step, LayoutMismatch when the stored leaves
  are not the target's, and DamagedCheckpoint (a ValueError, one line naming the step) for a
  checkpoint that cannot be read into ``target`` or whose content checksum does not match.
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
    pure_target = modelstate.to_pure(target)
    abstract = {**_abstract(pure_target), CHECKSUM_KEY: jax.ShapeDtypeStruct((32,), np.uint8)}
    _check_layout(mngr, directory, step, abstract)
    try:
      restored = mngr.restore(int(step), args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # noqa: BLE001  (TensorStore raises bare Exception for corrupt chunks)
      # Any failure to read the files back is damage of this step, reported in one line (the
      # storage errors run to many lines; the first names what failed).
      raise DamagedCheckpoint(directory, step, "its files cannot be read into the expected "
                              f"training state ({_first_line(e)})") from None
    got, want = jax.tree.structure(restored), jax.tree.structure(abstract)
    if got != want:
      raise DamagedCheckpoint(directory, step, f"it has tree {got}, expected {want}")
    for path, a, b in zip(jax.tree_util.tree_flatten_with_path(restored)[0],
                          jax.tree.leaves(restored), jax.tree.leaves(abstract)):
      if a.shape != b.shape or a.dtype != b.dtype:
        raise DamagedCheckpoint(directory, step, f"leaf {jax.tree_util.keystr(path[0])} is "
                                f"{a.shape} {a.dtype}, expected {b.shape} {b.dtype}")
    stored = np.asarray(restored.pop(CHECKSUM_KEY))
    if not np.array_equal(stored, checksum(restored)):
      raise DamagedCheckpoint(directory, step, "its content checksum does not match the one "
                              "saved with it (bytes changed after saving)")
    return modelstate.from_pure(restored, target)
  finally:
    if own:
      mngr.close()


@dataclasses.dataclass(frozen=True)
class GoodRestore:
  """What ``latest_good`` found: the state and step restored, and the damaged checkpoints skipped
  (moved aside to ``quarantine``) on the way, newest first."""
  state: object
  step: int
  skipped: tuple[DamagedCheckpoint, ...]
  quarantine: str | None


def latest_good(directory: str | os.PathLike, target, *, fall_back: bool,
                quarantine: str | os.PathLike | None = None) -> GoodRestore | None:
  """Restores the newest checkpoint of ``directory`` (None when it holds none).

  fall_back=False: a damaged newest checkpoint raises its DamagedCheckpoint (the message says how
  to fall back). fall_back=True: damaged checkpoints are moved into ``quarantine`` (default
  ``<directory>.damaged``; kept for inspection, out of orbax's sight so the run can save those
  steps again) and the next older one is tried; all damaged raises the newest one's error.
  """
  directory = _abs(directory)
  quarantine = _abs(quarantine) if quarantine else directory + ".damaged"
  skipped: list[DamagedCheckpoint] = []
  while True:
    done = steps(directory) if os.path.isdir(directory) else []
    if not done:
      if skipped:
        raise skipped[0]
      return None
    try:
      state = restore(directory, done[-1], target)
      return GoodRestore(state, done[-1], tuple(skipped), quarantine if skipped else None)
    except DamagedCheckpoint as e:
      if not fall_back:
        older = done[:-1]
        hint = (f"; resume from the previous one (step {older[-1]}) with --resume_from_last_good"
                if older else "; it is the only checkpoint: start a new workdir")
        raise DamagedCheckpoint(e.directory, e.step, e.reason + hint) from None
      skipped.append(e)
      os.makedirs(quarantine, exist_ok=True)
      dest = os.path.join(quarantine, f"{e.step}-{time.strftime('%Y%m%dT%H%M%S')}")
      shutil.move(os.path.join(directory, str(e.step)), dest)
