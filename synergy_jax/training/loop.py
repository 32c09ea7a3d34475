"""Pre-training: optax AdamW with warmup + cosine decay and clipping, the next-token step,
teacher-forced task accuracy, run through the shared loop (``runner.run_loop``).

``train(model_config, train_config, workdir)`` runs (or resumes) a run in ``workdir`` (layout in
runner.py): log.csv columns step, loss (nats/token), lr, grad_norm, wall_s, and at eval steps
acc_<family>_<level>.

The model is split once (``modelstate.split``): optax updates its nnx.Param state and the
trained model comes back as the module (``TrainResult.model``).

Exact resume: the batch of step s is a pure function of (seed, s) (``data.batch``), the state
saved at step s is (the nnx.Param state, optimizer state incl. its step count), and the jitted
step is the same program, so a run killed at any moment and restarted ends with bit-identical
parameters.

Axis letters: B batch, T time, V vocabulary.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from synergy_jax import models
from synergy_jax.tasks import families
from synergy_jax.training import data, logs, modelstate, runner, steps, tokenizer


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


def make_optimizer(cfg, decay_mask: Callable | None = None) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on a warmup + cosine schedule.

  cfg: anything with the optimizer fields of TrainConfig (learning_rate, warmup_steps, steps,
  end_learning_rate, b1, b2, weight_decay, clip_norm). decay_mask: params -> pytree of bools
  (which leaves get weight decay); default: leaves with ndim ≥ 2 (the shipped model's recipe;
  note that stacked per-layer norm gains are 2-D and so are decayed too).
  """
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
      decay_steps=cfg.steps, end_value=cfg.end_learning_rate)
  if decay_mask is None:
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
  return optax.chain(
      optax.clip_by_global_norm(cfg.clip_norm),
      optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask))


def learning_rate(cfg, step: int) -> float:
  """The schedule's value at ``step`` (for logging)."""
  return float(_schedule(cfg.learning_rate, cfg.warmup_steps, cfg.steps,
                         cfg.end_learning_rate)(step))


@functools.lru_cache(maxsize=32)
def _schedule(peak: float, warmup: int, steps: int, end: float):
  # jitted once per schedule: evaluating optax's schedule eagerly dispatches a dozen small ops,
  # which costs more than a small model's training step
  return jax.jit(optax.warmup_cosine_decay_schedule(0.0, peak, warmup, steps, end))


def weighted_nll(logits, targets, weights):
  """Mean next-token negative log-likelihood in nats over positions with weight.

  logits (B, T, V) float; targets (B, T) int; weights (B, T) float ≥ 0. Returns a scalar.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)             # (B, T, V)
  nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]      # (B, T)
  return jnp.sum(nll * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def next_token_loss() -> Callable:
  """loss(model, (inputs, targets, weights)) -> (weighted_nll in nats/token, {}), the
  objective of pre-training and SFT (``steps.make_step``); model: the module (called on the
  inputs, (B, T) int32)."""

  def loss(model, batch):
    inputs, targets, weights = batch
    return weighted_nll(model(inputs).logits, targets, weights), {}
  return loss


def make_train_step(split: "modelstate.Split", optimizer: optax.GradientTransformation,
                    loss_fn: Callable | None = None) -> Callable:
  """step(params, opt_state, inputs, targets, weights) -> (params, opt_state, metrics).

  params: the model's nnx.Param state (``modelstate.split``); inputs/targets (B, T) int32,
  weights (B, T) float32; metrics: loss (nats/token), grad_norm (before clipping) and loss_fn's
  aux scalars. The state is an explicit argument of the jitted step (nothing is closed over but
  the static graph). loss_fn(model, batch): default ``next_token_loss()``.
  """
  step = steps.make_step(loss_fn or next_token_loss(), optimizer, split.graphdef)
  return lambda params, opt_state, inputs, targets, weights: step(
      params, split.rest, opt_state, (inputs, targets, weights), {})


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


@functools.partial(jax.jit, static_argnums=0)
def _exact_match(graphdef, params, rest, ids, answer_mask):
  logits = nnx.merge(graphdef, params, rest)(ids).logits                    # (E, T, V)
  pred = jnp.argmax(logits[:, :-1], axis=-1)                                 # (E, T-1)
  ok = (pred == ids[:, 1:]) | ~answer_mask[:, :-1]
  return jnp.all(ok, axis=-1)


def exact_match(model, ids, answer_mask):
  """(E,) bool: does greedy argmax reproduce every answer character and the closing newline?

  model: the module; ids (E, T) int32 and answer_mask (E, T) bool as in ``EvalSet``. The module
  is split here and a jitted function of its state runs (compiled once per architecture).
  Equivalent to exact match of greedy decoding: greedy generation emits the answer followed by a
  newline if and only if the argmax at each of those positions, fed the true prefix, is right.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  return _exact_match(graphdef, params, rest, jnp.asarray(ids), jnp.asarray(answer_mask))


def accuracy_table(correct: np.ndarray, keys) -> dict[str, float]:
  """{"acc_<family>_<level>": fraction correct} from per-row booleans."""
  out: dict[str, list[bool]] = {}
  for c, (family, level) in zip(np.asarray(correct).tolist(), keys):
    out.setdefault(f"acc_{family}_{level}", []).append(bool(c))
  return {k: float(np.mean(v)) for k, v in out.items()}


# --- the run ------------------------------------------------------------------------------------

def log_columns() -> list[str]:
  return (["step", *METRICS, "wall_s"]
          + [f"acc_{f}_{k}" for f in families.FAMILIES for k in families.levels(f)])


METRICS = ("loss", "lr", "grad_norm")
read_log = logs.read


@dataclasses.dataclass
class TrainResult:
  """What ``train`` returns: the trained module, its final nnx.Param state (the same arrays),
  the step reached, the run folder and the loop's wall time in seconds."""
  model: Any
  params: Any
  step: int
  workdir: str
  wall_s: float


# Settings that decide when to save, evaluate and log but never change the parameters; a resumed
# run may change them (e.g. denser checkpoints for the emergence study).
BOOKKEEPING = ("save_every", "eval_every", "eval_examples", "eval_seed", "log_every")


def train(model_config, cfg: TrainConfig, workdir: str | os.PathLike, *,
          init_model=None, stop_after: int | None = None, resume_from_last_good: bool = False,
          log: Callable[[str], None] = print, objective=None) -> TrainResult:
  """Trains (or resumes) the run in ``workdir`` up to ``cfg.steps``.

  init_model: the starting module (default: ``models.init(model_config, cfg.seed)``); its
    weights are ignored when a checkpoint exists. stop_after: stop (with a checkpoint) once this
    step is reached — for tests of resume; the result is then partial. resume_from_last_good:
    skip (and move aside) a damaged newest checkpoint instead of raising. objective: an extra
    training term with ``loss_fn(model_config)``, ``metrics`` and ``record()``
    (``synergy.SynergyObjective``); None: the next-token loss alone.
  """
  optimizer = make_optimizer(cfg)
  model = models.init(model_config, cfg.seed) if init_model is None else init_model
  if model.config != model_config:
    raise ValueError("train: init_model's config differs from model_config (the run records "
                     "model_config)")
  split, params = modelstate.split(model)
  state0 = {"params": params, "opt_state": optimizer.init(params)}
  train_step = make_train_step(split, optimizer,
                               None if objective is None else objective.loss_fn(model_config))
  extra = () if objective is None else tuple(objective.metrics)
  eval_set = make_eval_set(cfg.eval_examples, cfg.eval_seed)

  def step_fn(state, step):
    b = data.batch(cfg.seed, step, cfg.batch_size, cfg.seq_len, cfg.task_fraction)
    p, o, metrics = train_step(state["params"], state["opt_state"], b["inputs"], b["targets"],
                               b["weights"])
    return {"params": p, "opt_state": o}, {**metrics, "lr": learning_rate(cfg, step)}

  def evaluate(p):
    correct = np.asarray(exact_match(split.merge(p), eval_set.ids, eval_set.answer_mask))
    return accuracy_table(correct, eval_set.keys)

  schedule = runner.Schedule(cfg.steps, tuple(cfg.checkpoint_steps()), cfg.eval_every,
                             cfg.log_every)
  record = {"model": model_config.to_hf(), "train": dataclasses.asdict(cfg)}
  if objective is not None:
    record["synergy"] = objective.record()
  res = runner.run_loop(workdir, state0, step_fn, evaluate, schedule,
                        metric_columns=METRICS + extra,
                        eval_columns=log_columns()[len(METRICS) + 2:], record=record,
                        bookkeeping=BOOKKEEPING, stop_after=stop_after,
                        resume_from_last_good=resume_from_last_good, log=log)
  return TrainResult(model=split.merge(res.state["params"]), params=res.state["params"],
                     step=res.step, workdir=res.workdir, wall_s=res.wall_s)
