"""Fine-tuning a model's chosen heads with SFT or GRPO through the shared loop.

``finetune(model, tokenizer, heads, cfg, workdir)`` builds the head-restricted AdamW
(``freeze.restrict``), the objective's step (sft.py or grpo.py) and the held-out greedy
evaluation (tuning.py), and runs ``runner.run_loop`` in ``workdir`` (resumable; checkpoints
checksummed). The entry mask is a traced argument, so every head selection and seed of one
model and configuration reuse the same compiled programs.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from synergy_jax import models
from synergy_jax.training import freeze, grpo, loop, runner, sft, tuning

OBJECTIVES = {"sft": sft, "grpo": grpo}  # each: make_programs, make_step_fn, METRICS
_PROGRAMS: dict = {}  # (architecture, dtype, settings but the seed) -> (optimizer, programs)


def _programs(model, cfg):
  """The optimizer and jitted programs of ``cfg.method``, built once per architecture, dtype and
  configuration other than the seed and bookkeeping (so runs share compilations)."""
  key = (model.config, model.dtype, dataclasses.replace(
      cfg, seed=0, **{k: getattr(tuning.TuneConfig, k) for k in tuning.BOOKKEEPING}))
  if key not in _PROGRAMS:
    optimizer = make_optimizer(cfg, model.params)
    _PROGRAMS[key] = optimizer, OBJECTIVES[cfg.method].make_programs(model, cfg, optimizer)
  return _PROGRAMS[key]


def make_optimizer(cfg: "tuning.TuneConfig", params):
  """Clipping + AdamW (loop.make_optimizer, no decay of biases/norms) on the head-owned leaves."""
  return freeze.restrict(loop.make_optimizer(cfg, decay_mask=freeze.no_decay_of_vectors), params)


def finetune(model: "models.Model", tokenizer, heads, cfg: "tuning.TuneConfig",
             workdir: str | os.PathLike, *, evaluate: Callable | None = None,
             stop_after: int | None = None, resume_from_last_good: bool = False,
             log: Callable[[str], None] = print) -> "runner.LoopResult":
  """Fine-tunes the entries ``heads`` own (``models.head_parameter_mask``) from ``model``.

  heads: unit indices, (layer, head) pairs or an (L, H) bool mask. evaluate: params -> {column:
  value} (default: ``tuning.make_evaluate``; its columns must be ``tuning.eval_columns(cfg)``).
  Returns the LoopResult (state["params"]: the tuned parameters).
  """
  cfg_model = model.config
  sel = models.head_selection(heads, cfg_model.num_layers, cfg_model.num_heads)
  mask = freeze.entry_mask(model.params, sel)
  optimizer, programs = _programs(model, cfg)
  objective = OBJECTIVES[cfg.method]
  step_fn = objective.make_step_fn(model, tokenizer, cfg, programs, mask)
  state0 = {"params": model.params, "opt_state": optimizer.init(model.params)}
  schedule = runner.Schedule(cfg.steps, tuple(cfg.checkpoint_steps()), cfg.eval_every,
                             cfg.log_every)
  record = {"model": cfg_model.to_hf(), "tune": dataclasses.asdict(cfg),
            "heads": {"selected": np.argwhere(sel).tolist()}}
  return runner.run_loop(workdir, state0, step_fn,
                         evaluate or tuning.make_evaluate(model, tokenizer, cfg), schedule,
                         metric_columns=objective.METRICS, eval_columns=tuning.eval_columns(cfg),
                         record=record, bookkeeping=tuning.BOOKKEEPING, stop_after=stop_after,
                         resume_from_last_good=resume_from_last_good, log=log)
