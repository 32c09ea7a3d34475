"""Supervised fine-tuning: next-token loss on task solutions (or prompt/completion pairs), only
the selected heads trained.

A row is ``prompt ids (with BOS) + completion ids`` right-padded to S tokens; inputs are
``row[:-1]``, targets ``row[1:]`` and only targets inside the completion carry weight, so the
loss is the mean negative log-likelihood of the completion tokens in nats/token
(``loop.weighted_nll``). The completion of a task example is its answer and the newline that ends
it. Rows of step s are a pure function of (seed, s).

Axis letters: B batch, S row length, V vocabulary.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from synergy_jax import models
from synergy_jax.tasks import families
from synergy_jax.training import loop, modelstate, steps, tuning


def row_length(cfg: "tuning.TuneConfig", pairs_tokens: list | None = None) -> int:
  """S: prompt block plus the longest completion (task answers: their budget)."""
  longest = (tuning.answer_budget(cfg) if pairs_tokens is None
             else max(len(c) for _, c in pairs_tokens))
  return cfg.max_prompt_tokens + longest


def tokenize_pairs(tokenizer, pairs, cfg) -> list[tuple[list[int], list[int]]]:
  """[(prompt ids, completion ids)] with each prompt checked against max_prompt_tokens."""
  return [(tuning.encode_prompt(tokenizer, p, cfg.max_prompt_tokens, f"pair {i} prompt"),
           tuning.encode_completion(tokenizer, c)) for i, (p, c) in enumerate(pairs)]


def pack(rows: list[tuple[list[int], list[int]]], length: int, pad_id: int) -> dict:
  """inputs/targets (B, S-1) int32 and weights (B, S-1) float32 from (prompt, completion) ids."""
  ids = np.full((len(rows), length), pad_id, np.int32)
  weights = np.zeros((len(rows), length - 1), np.float32)
  for b, (p, c) in enumerate(rows):
    if len(p) + len(c) > length:
      raise ValueError(f"row {b}: {len(p)} prompt + {len(c)} completion tokens exceed the row "
                       f"length {length}")
    ids[b, :len(p) + len(c)] = p + c
    weights[b, len(p) - 1:len(p) + len(c) - 1] = 1.0  # target at t is ids[t + 1]
  return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": weights}


def make_batch_fn(tokenizer, cfg: "tuning.TuneConfig", pad_id: int) -> tuple[Callable, int]:
  """(batch(step) -> pack(...) dict, row length S) for the task pool or cfg.jsonl's pairs."""
  if cfg.jsonl:
    pairs = tokenize_pairs(tokenizer, tuning.read_pairs(cfg.jsonl), cfg)
    length = row_length(cfg, pairs)

    def batch(step):
      rng = np.random.default_rng([int(cfg.seed), int(step), 0x5F7])
      return pack([pairs[int(i)] for i in rng.integers(0, len(pairs), cfg.batch_size)], length,
                  pad_id)
    return batch, length
  length = row_length(cfg)

  def batch(step):
    exs = tuning.draw(cfg, step, cfg.batch_size)
    rows = [(tuning.encode_prompt(tokenizer, e.prompt, cfg.max_prompt_tokens),
             tuning.encode_completion(tokenizer, e.answer + families.END)) for e in exs]
    return pack(rows, length, pad_id)
  return batch, length


def make_programs(model, cfg, optimizer) -> dict:
  """The jitted SFT update (steps.make_step of the next-token loss over the module's
  nnx.Param state); shared by all runs of one architecture and configuration."""
  del cfg
  split, _ = modelstate.split(model)
  return {"update": steps.make_step(loop.next_token_loss(), optimizer, split.graphdef)}


def make_step_fn(model, tokenizer, cfg, programs, entry_mask) -> Callable:
  """step_fn(state, step) -> (state, metrics) for runner.run_loop; state["params"] is the
  module's nnx.Param state and entry_mask an nnx.State like it (freeze.entry_mask)."""
  batch_fn, _ = make_batch_fn(tokenizer, cfg, models.generation.pad_id_of(model.config))
  step = programs["update"]
  rest = modelstate.split(model)[0].rest

  def step_fn(state, s):
    b = batch_fn(s)
    p, o, metrics = step(state["params"], rest, state["opt_state"],
                         (b["inputs"], b["targets"], b["weights"]), {"entry_mask": entry_mask})
    return {"params": p, "opt_state": o}, {**metrics, "lr": loop.learning_rate(cfg, s)}
  return step_fn


METRICS = ("loss", "lr", "grad_norm")
