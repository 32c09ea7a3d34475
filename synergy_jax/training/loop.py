"""The training loop: optax AdamW with warmup + cosine decay and clipping, a jitted step,
teacher-forced task accuracy, CSV log, orbax checkpoints and exact resume.

``train(model_config, train_config, workdir)`` runs (or resumes) a run in ``workdir``:

  workdir/run_config.json   model and training configuration (a resumed run must match it)
  workdir/checkpoints/      orbax: step 0, every ``save_every`` steps and the final step
  workdir/log.csv           one row per logged step: step, loss (nats/token), lr, grad_norm,
                            wall seconds, and at eval steps acc_<family>_<level>

Exact resume: the batch of step s is a pure function of (seed, s) (``data.batch``), the state
saved at step s is (params, optimizer state incl. its step count), and the jitted step is the same
program, so a run killed at any moment and restarted ends with bit-identical parameters.

Axis letters: B batch, T time, V vocabulary.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from synergy_jax import models
from synergy_jax.tasks import families
from synergy_jax.training import checkpoints, data, tokenizer


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimisation, data and bookkeeping settings of a run (all JSON-serialisable)."""
  steps: int = 3000
  batch_size: int = 32
  seq_len: int = 128
  learning_rate: float = 3e-3
  warmup_steps: int = 150
  end_learning_rate: float = 3e-4
  weight_decay: float = 0.05
  b1: float = 0.9
  b2: float = 0.98
  clip_norm: float = 1.0
  seed: int = 0
  task_fraction: float = 0.75
  save_every: int = 300
  eval_every: int = 500
  eval_examples: int = 32
  eval_seed: int = 12345
  log_every: int = 25

  def __post_init__(self):
    for name in ("steps", "batch_size", "seq_len", "save_every", "eval_every", "log_every"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
    if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
      raise ValueError(f"TrainConfig.warmup_steps={self.warmup_steps} must lie in [0, steps="
                       f"{self.steps})")

  def checkpoint_steps(self) -> list[int]:
    """Steps that get a checkpoint: 0, every ``save_every``, and the last."""
    return sorted(set(range(0, self.steps, self.save_every)) | {self.steps})


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on a warmup + cosine schedule.

  Weight decay applies to matrices only (ndim ≥ 2), not to norm gains or biases.
  """
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=cfg.steps, end_value=cfg.end_learning_rate)
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask))


def learning_rate(cfg: TrainConfig, step: int) -> float:
  """The schedule's value at ``step`` (for logging)."""
  return float(optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, cfg.warmup_steps, cfg.steps, cfg.end_learning_rate)(step))


def weighted_nll(logits, targets, weights):
  """Mean next-token negative log-likelihood in nats over positions with weight.

  logits (B, T, V) float; targets (B, T) int; weights (B, T) float ≥ 0. Returns a scalar.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)             # (B, T, V)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]      # (B, T)
  return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_train_step(model_config, optimizer: optax.GradientTransformation) -> Callable:
  """jit(step)(params, opt_state, inputs, targets, weights) -> (params, opt_state, metrics).

  inputs/targets (B, T) int32, weights (B, T) float32; metrics: loss (nats/token), grad_norm
  (before clipping). Parameters are an explicit argument (nothing is closed over but the static
  architecture).
  """
  logits_fn = models.logits_fn(model_config)

  def step(params, opt_state, inputs, targets, weights):
    def loss(p):
      return weighted_nll(logits_fn(p, inputs), targets, weights)
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return params, opt_state, {"loss": value, "grad_norm": optax.global_norm(grads)}

  return jax.jit(step)


# --- teacher-forced task accuracy -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class EvalSet:
  """Task examples packed for one teacher-forced forward pass.

  ids (E, T) int32: BOS + prompt + answer + newline, right-padded; answer_mask (E, T) bool marks
  the target positions t (ids[t + 1] is an answer character or the final newline); keys: the
  (family, level) of each row.
  """
  ids: np.ndarray
  answer_mask: np.ndarray
  keys: tuple[tuple[str, int], ...]


def make_eval_set(n: int, seed: int) -> EvalSet:
  """``n`` examples of every family × level from ``tasks.sample(family, level, n, seed)``."""
  rows, masks, keys = [], [], []
  for family in families.FAMILIES:
    for level in families.levels(family):
      for ex in families.sample(family, level, n, seed):
        p = tokenizer.encode(ex.prompt)
        a = tokenizer.encode(ex.answer + families.END)
        ids = np.concatenate([[tokenizer.BOS_ID], p, a]).astype(np.int32)
        m = np.zeros(len(ids), bool)
        m[len(p):len(p) + len(a)] = True  # position t predicts ids[t + 1]
        rows.append(ids), masks.append(m), keys.append((family, level))
  width = max(len(r) for r in rows)
  ids = np.full((len(rows), width), tokenizer.PAD_ID, np.int32)
  mask = np.zeros((len(rows), width), bool)
  for i, (r, m) in enumerate(zip(rows, masks)):
    ids[i, :len(r)], mask[i, :len(m)] = r, m
  return EvalSet(ids, mask, tuple(keys))


def make_exact_match_fn(model_config) -> Callable:
  """jit(f)(params, ids, answer_mask) -> (E,) bool: does greedy argmax reproduce every answer
  character and the closing newline?

  Equivalent to exact match of greedy decoding: greedy generation emits the answer followed by a
  newline if and only if the argmax at each of those positions, fed the true prefix, is right.
  """
  logits_fn = models.logits_fn(model_config)

  def f(params, ids, answer_mask):
    logits = logits_fn(params, ids)                                           # (E, T, V)
    pred = jnp.argmax(logits[:, :-1], axis=-1)                                 # (E, T-1)
    ok = (pred == ids[:, 1:]) | ~answer_mask[:, :-1]
    return jnp.all(ok, axis=-1)

  return jax.jit(f)


def accuracy_table(correct: np.ndarray, keys) -> dict[str, float]:
  """{"acc_<family>_<level>": fraction correct} from per-row booleans."""
  out: dict[str, list[bool]] = {}
  for c, (family, level) in zip(np.asarray(correct).tolist(), keys):
    out.setdefault(f"acc_{family}_{level}", []).append(bool(c))
  return {k: float(np.mean(v)) for k, v in out.items()}


# --- CSV log ------------------------------------------------------------------------------------

def log_columns() -> list[str]:
  return (["step", "loss", "lr", "grad_norm", "wall_s"]
          + [f"acc_{f}_{k}" for f in families.FAMILIES for k in families.levels(f)])


def _truncate_log(path: str, last_step: int) -> None:
  """Keeps only the header and rows with step ≤ last_step (atomic rewrite), e.g. after a kill."""
  columns = log_columns()
  kept = []
  if os.path.exists(path):
    with open(path, newline="") as f:
      reader = csv.DictReader(f)
      if reader.fieldnames != columns:
        raise ValueError(f"log {path!r} has columns {reader.fieldnames}, expected {columns}")
      for row in reader:
        if row.get("step") and None not in row.values() and int(row["step"]) <= last_step:
          kept.append(row)
  buf = io.StringIO()
  writer = csv.DictWriter(buf, columns, lineterminator="\n")
  writer.writeheader()
  writer.writerows(kept)
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    f.write(buf.getvalue())
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def _append_log(path: str, row: dict[str, Any]) -> None:
  buf = io.StringIO()
  csv.DictWriter(buf, log_columns(), lineterminator="\n").writerow(row)
  with open(path, "a", newline="") as f:
    f.write(buf.getvalue())
    f.flush()
    os.fsync(f.fileno())


def read_log(path: str | os.PathLike) -> list[dict[str, float]]:
  """Rows of a run's log.csv as dicts of floats (missing values left out)."""
  with open(os.fspath(path), newline="") as f:
    return [{k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(f)]


# --- the run ------------------------------------------------------------------------------------

@dataclasses.dataclass
class TrainResult:
  """What ``train`` returns: final parameters, the step reached and the run folder."""
  params: Any
  step: int
  workdir: str
  wall_s: float


# Settings that decide when to save, evaluate and log but never change the parameters; a resumed
# run may change them (e.g. denser checkpoints for the emergence study).
BOOKKEEPING = ("save_every", "eval_every", "eval_examples", "eval_seed", "log_every")


def _write_run_config(path: str, model_config, cfg: TrainConfig) -> None:
  want = json.loads(json.dumps({"model": model_config.to_hf(), "train": dataclasses.asdict(cfg)}))
  if os.path.exists(path):
    with open(path) as f:
      have = json.load(f)
    strip = lambda c: {"model": c["model"], "train": {k: v for k, v in c["train"].items()
                                                      if k not in BOOKKEEPING}}
    if strip(have) != strip(want):
      diff = sorted(k for k in set(have["train"]) | set(want["train"])
                    if have["train"].get(k) != want["train"].get(k) and k not in BOOKKEEPING)
      raise ValueError(f"{path!r} records a different configuration than this run's (training "
                       f"fields {diff}, or the model); use a new workdir or the same flags to "
                       "resume")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(want, f, indent=2)
  os.replace(tmp, path)


def train(model_config, cfg: TrainConfig, workdir: str | os.PathLike, *,
          init_params=None, stop_after: int | None = None,
          log: Callable[[str], None] = print) -> TrainResult:
  """Trains (or resumes) the run in ``workdir`` up to ``cfg.steps``.

  init_params: starting parameters (default: ``models.init(model_config, cfg.seed)``); ignored
    when a checkpoint exists. stop_after: stop (with a checkpoint) once this step is reached —
    for tests of resume; the result is then partial.
  """
  workdir = os.path.abspath(os.fspath(workdir))
  os.makedirs(workdir, exist_ok=True)
  _write_run_config(os.path.join(workdir, "run_config.json"), model_config, cfg)
  log_path = os.path.join(workdir, "log.csv")
  ckpt_dir = os.path.join(workdir, "checkpoints")

  optimizer = make_optimizer(cfg)
  if init_params is None:
    init_params = models.init(model_config, cfg.seed).params
  params = init_params
  opt_state = optimizer.init(params)
  mngr = checkpoints.manager(ckpt_dir)
  try:
    done = sorted(mngr.all_steps())
    if done:
      state = checkpoints.restore(ckpt_dir, done[-1], {"params": params, "opt_state": opt_state},
                                  mngr=mngr)
      params, opt_state, start = state["params"], state["opt_state"], done[-1]
      log(f"resuming {workdir} from checkpoint step {start}")
      _truncate_log(log_path, start)
    else:
      start = 0
      checkpoints.save(mngr, 0, {"params": params, "opt_state": opt_state})
      _truncate_log(log_path, -1)

    step_fn = make_train_step(model_config, optimizer)
    em_fn = make_exact_match_fn(model_config)
    eval_set = make_eval_set(cfg.eval_examples, cfg.eval_seed)
    save_at = set(cfg.checkpoint_steps())
    t0 = time.time()
    last = stop_after if stop_after is not None else cfg.steps
    last = min(last, cfg.steps)

    def evaluate(p):
      correct = np.asarray(em_fn(p, eval_set.ids, eval_set.answer_mask))
      return accuracy_table(correct, eval_set.keys)

    if start == 0 and last > 0:
      acc = evaluate(params)
      _append_log(log_path, {"step": 0, "lr": 0.0, "wall_s": 0.0, **acc})
    step = start
    while step < last:
      b = data.batch(cfg.seed, step, cfg.batch_size, cfg.seq_len, cfg.task_fraction)
      params, opt_state, metrics = step_fn(params, opt_state, b["inputs"], b["targets"],
                                           b["weights"])
      step += 1
      row = None
      if step % cfg.log_every == 0 or step == cfg.steps or step % cfg.eval_every == 0:
        metrics = jax.device_get(metrics)
        row = {"step": step, "loss": f"{float(metrics['loss']):.6f}",
               "lr": f"{learning_rate(cfg, step - 1):.6g}",
               "grad_norm": f"{float(metrics['grad_norm']):.4f}",
               "wall_s": f"{time.time() - t0:.1f}"}
        if not np.isfinite(metrics["loss"]):
          raise FloatingPointError(f"loss became {metrics['loss']} at step {step} in {workdir}")
      if step % cfg.eval_every == 0 or step == cfg.steps:
        row.update({k: f"{v:.4f}" for k, v in evaluate(params).items()})
      if row is not None:
        _append_log(log_path, row)
        msg = f"step {step}/{cfg.steps} loss {row['loss']} lr {row['lr']} ({row['wall_s']} s)"
        accs = [float(v) for k, v in row.items() if k.startswith("acc_")]
        if accs:
          msg += f" mean task acc {np.mean(accs):.3f}"
        log(msg)
      if step in save_at or step == last:
        checkpoints.save(mngr, step, {"params": params, "opt_state": opt_state})
    return TrainResult(params=params, step=step, workdir=workdir, wall_s=time.time() - t0)
  finally:
    mngr.wait_until_finished()
    mngr.close()
