"""Fine-tuning a model's chosen heads with SFT or GRPO through the shared loop.

``finetune(model, tokenizer, heads, cfg, workdir)`` splits the module once
(``modelstate.split``), builds the head-restricted AdamW over its nnx.Param state
(``freeze.restrict``), the objective's step (sft.py or grpo.py) and the held-out greedy
evaluation (tuning.py), runs ``runner.run_loop`` in ``workdir`` (resumable; checkpoints
checksummed) and returns the tuned module. The entry mask is a traced argument, so every head
selection and seed of one model and configuration reuse the same compiled programs.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import numpy as np

from synergy_jax import models
from synergy_jax.training import freeze, grpo, loop, modelstate, runner, sft, tuning

OBJECTIVES = {"sft": sft, "grpo": grpo}  # each: make_programs, make_step_fn, METRICS
_PROGRAMS: dict = {}  # (architecture, dtype, settings but the seed) -> (optimizer, programs)


@dataclasses.dataclass(frozen=True)
class TuneResult:
  """What ``finetune`` returns: the tuned module, the step reached, the run folder, the loop's
  wall time in seconds, the step it resumed from (None: fresh) and the loop's final state
  ({"params": nnx.State, "opt_state"})."""
  model: Any
  step: int
  workdir: str
  wall_s: float
  resumed_from: int | None
  state: Any


def _programs(model, cfg):
  """The optimizer and jitted programs of ``cfg.method``, built once per architecture, dtype and
  configuration other than the seed and bookkeeping (so runs share compilations)."""
  key = (model.config, model.dtype, dataclasses.replace(
      cfg, seed=0, **{k: getattr(tuning.TuneConfig, k) for k in tuning.BOOKKEEPING}))
  if key not in _PROGRAMS:
    optimizer = make_optimizer(cfg, model)
    _PROGRAMS[key] = optimizer, OBJECTIVES[cfg.method].make_programs(model, cfg, optimizer)
  return _PROGRAMS[key]


def make_optimizer(cfg: "tuning.TuneConfig", model):
  """Clipping + AdamW (loop.make_optimizer, no decay of biases/norms) on the head-owned leaves
  of ``model``'s nnx.Param state."""
  return freeze.restrict(loop.make_optimizer(cfg, decay_mask=freeze.no_decay_of_vectors), model)


def finetune(model: "models.Model", tokenizer, heads, cfg: "tuning.TuneConfig",
             workdir: str | os.PathLike, *, evaluate: Callable | None = None,
             stop_after: int | None = None, resume_from_last_good: bool = False,
             log: Callable[[str], None] = print) -> TuneResult:
  """Fine-tunes the entries ``heads`` own (the family's unit description) from ``model``.

  heads: unit indices, (layer, head) pairs or an (L, H) bool mask. evaluate: module ->
  {column: value} (default: ``tuning.make_evaluate``; its columns must be
  ``tuning.eval_columns(cfg)``); at step 0 of a fresh run it is called with ``model`` itself.
  """
  cfg_model = model.config
  sel = models.head_selection(heads, cfg_model.num_layers, cfg_model.num_heads)
  mask = freeze.entry_mask(model, sel)
  optimizer, programs = _programs(model, cfg)
  objective = OBJECTIVES[cfg.method]
  split, params0 = modelstate.split(model)
  step_fn = objective.make_step_fn(model, tokenizer, cfg, programs, mask)
  state0 = {"params": params0, "opt_state": optimizer.init(params0)}
  schedule = runner.Schedule(cfg.steps, tuple(cfg.checkpoint_steps()), cfg.eval_every,
                             cfg.log_every)
  record = {"model": cfg_model.to_hf(), "tune": dataclasses.asdict(cfg),
            "heads": {"selected": np.argwhere(sel).tolist()}}
  evaluate = evaluate or tuning.make_evaluate(model, tokenizer, cfg)

  def evaluate_state(params):
    return evaluate(model if params is params0 else split.merge(params))

  res = runner.run_loop(workdir, state0, step_fn, evaluate_state, schedule,
                        metric_columns=objective.METRICS, eval_columns=tuning.eval_columns(cfg),
                        record=record, bookkeeping=tuning.BOOKKEEPING, stop_after=stop_after,
                        resume_from_last_good=resume_from_last_good, log=log)
  return TuneResult(split.merge(res.state["params"]), res.step, res.workdir, res.wall_s,
                    res.resumed_from, res.state)
