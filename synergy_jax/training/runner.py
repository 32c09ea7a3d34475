"""The loop every objective shares: resume, verified checkpoints, the log and evaluation.

An objective (pre-training, SFT, GRPO) supplies only ``step_fn(state, step) -> (state, metrics)``
— one optimizer step from the state after ``step`` updates — and ``evaluate(params) -> {column:
value}``. The state is ``{"params": the module's nnx.Param state (modelstate.split),
"opt_state": optax's state over it}``; checkpoints store it as plain dicts (checkpoints.py).
``run_loop`` owns everything else:

  workdir/run_config.json   what the run's numbers depend on (a resumed run must match it,
                            except for the bookkeeping keys: when to save, evaluate and log)
  workdir/checkpoints/      orbax, checksummed (checkpoints.py): step 0, ``checkpoint_steps``,
                            the stop step and the last
  workdir/log.csv           step, the objective's metrics, wall_s and, at evaluation steps, the
                            evaluation columns; each step's row is written once

Exact resume: the state saved at step s is everything that changes over the run, and step_fn
must make step s a pure function of (state, s) (data and sampling keys drawn from (seed, s)), so a
run killed at any moment and restarted ends with bit-identical parameters.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from synergy_jax import results
from synergy_jax.pipeline.text import fmt
from synergy_jax.training import checkpoints, logs


@dataclasses.dataclass(frozen=True)
class LoopResult:
  """What a run returns: the final state ({"params": nnx.State, "opt_state", ...}), the step
  reached, the run folder, the loop's wall time in seconds, and the step it resumed from (None:
  fresh)."""
  state: Any
  step: int
  workdir: str
  wall_s: float
  resumed_from: int | None


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When to stop, save, evaluate and log. steps: total optimizer steps; checkpoint_steps: steps
  that get a checkpoint (0 and ``steps`` always do); eval_every / log_every: intervals (the last
  step is always logged and evaluated)."""
  steps: int
  checkpoint_steps: tuple[int, ...]
  eval_every: int
  log_every: int

  def __post_init__(self):
    for name in ("steps", "eval_every", "log_every"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"Schedule.{name} must be positive, got {getattr(self, name)}")


def write_run_config(path: str, record: dict, bookkeeping: Sequence[str] = ()) -> None:
  """Writes ``record`` to ``path``, or checks that an existing file records the same run.

  record: {"section": {key: value}}; keys listed in ``bookkeeping`` may differ on resume.
  """
  want = json.loads(json.dumps(results.to_jsonable(record)))
  if os.path.exists(path):
    with open(path) as f:
      try:
        have = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path!r} is not valid JSON ({e.msg}); it should record the run's "
                         "configuration") from None
    diff = sorted(f"{sec}.{k}" if sec != "train" else k
                  for sec in set(have) | set(want)
                  for k in set(_dict(have.get(sec))) | set(_dict(want.get(sec)))
                  if k not in bookkeeping and _dict(have.get(sec)).get(k)
                  != _dict(want.get(sec)).get(k))
    if diff:
      raise ValueError(f"{path!r} records a different configuration than this run's (training "
                       f"fields {diff}, or the model); use a new workdir or the same flags to "
                       "resume")
  results.write_json(path, want)


def _dict(x) -> dict:
  return x if isinstance(x, dict) else {"": x}


def run_loop(workdir: str | os.PathLike, state0, step_fn: Callable, evaluate: Callable,
             schedule: Schedule, *, metric_columns: Sequence[str], eval_columns: Sequence[str],
             record: dict, bookkeeping: Sequence[str] = (), stop_after: int | None = None,
             resume_from_last_good: bool = False,
             log: Callable[[str], None] = print) -> LoopResult:
  """Runs (or resumes) ``step_fn`` from ``state0`` up to ``schedule.steps`` in ``workdir``.

  state0: the state at step 0 (a dict with "params"), ignored when a checkpoint exists; it also
  gives the structure checkpoints are restored into. evaluate(params): params is state["params"].
  metrics of step_fn: scalars named by ``metric_columns``; a non-finite "loss" raises
  FloatingPointError naming the step. stop_after: stop (with a checkpoint) at this step, keeping
  the schedule — for tests of resume. resume_from_last_good: a damaged newest checkpoint is moved
  aside and the previous good one resumed (otherwise it raises, naming the step).
  """
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(workdir, exist_ok=True)
  write_run_config(os.path.join(workdir, "run_config.json"), record, bookkeeping)
  log_path = os.path.join(workdir, "log.csv")
  ckpt_dir = os.path.join(workdir, "checkpoints")
  columns = ["step", *metric_columns, "wall_s", *eval_columns]
  target = jax.eval_shape(lambda: state0)
  found = checkpoints.latest_good(ckpt_dir, target, fall_back=resume_from_last_good,
                                  quarantine=os.path.join(workdir, "damaged_checkpoints"))
  mngr = checkpoints.manager(ckpt_dir)
  try:
    if found is None:
      state, start = state0, 0
      checkpoints.save(mngr, 0, state)
    else:
      state, start = found.state, found.step
      for e in found.skipped:
        log(f"skipped {e} (moved to {found.quarantine})")
      log(f"resuming {workdir} from checkpoint step {start}")
    logged = logs.truncate(log_path, columns, start)
    last = min(schedule.steps if stop_after is None else stop_after, schedule.steps)
    save_at = set(schedule.checkpoint_steps) | {schedule.steps}
    t0 = time.time()

    def eval_row(params):
      return {k: fmt(v, 6, nonfinite="float") for k, v in evaluate(params).items()}

    if start == 0 and last > 0 and 0 not in logged:
      logs.append(log_path, columns, {"step": 0, "wall_s": 0.0, **eval_row(state["params"])})
    step = start
    while step < last:
      state, metrics = step_fn(state, step)
      step += 1
      is_eval = step % schedule.eval_every == 0 or step == schedule.steps
      if is_eval or step % schedule.log_every == 0:
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if "loss" in metrics and not np.isfinite(metrics["loss"]):
          raise FloatingPointError(f"loss became {metrics['loss']} at step {step} in {workdir}")
        row = {"step": step, **{k: fmt(v, 6, nonfinite="float") for k, v in metrics.items()},
               "wall_s": f"{time.time() - t0:.1f}"}
        if is_eval:
          row.update(eval_row(state["params"]))
        logs.append(log_path, columns, row)
        msg = f"step {step}/{schedule.steps} " + " ".join(
            f"{k} {row[k]}" for k in metric_columns if k in row) + f" ({row['wall_s']} s)"
        accs = [float(row[k]) for k in eval_columns if k in row]
        log(msg + (f" mean eval {np.mean(accs):.3f}" if accs else ""))
      if step in save_at or step == last:
        checkpoints.save(mngr, step, state)
    return LoopResult(state, step, workdir, time.time() - t0,
                      None if found is None else found.step)
  finally:
    mngr.wait_until_finished()
    mngr.close()
