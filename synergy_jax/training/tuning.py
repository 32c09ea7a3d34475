"""What SFT and GRPO fine-tuning share: the configuration, the task pool, prompt encoding and the
held-out greedy accuracy.

Data are task examples (``synergy_jax.tasks``) of chosen families × levels, drawn for step s from a
generator seeded with (seed, s, stream): a pure function of the step, which makes resume exact.
Evaluation draws its examples with a different seed (``eval_seed``), so they are held out from
the stream in the sense of independent draws (the easiest levels have few distinct problems, so
some repeat by chance).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import numpy as np

from synergy_jax.tasks import evaluation, families, prompts

METHODS = ("sft", "grpo")
AGGREGATIONS = ("token", "sequence", "constant")


@dataclasses.dataclass(frozen=True)
class TuneConfig:
  """One fine-tuning run's settings (JSON-serialisable; recorded in run_config.json).

  Optimisation (AdamW, warmup then cosine decay, global-norm clipping; see loop.make_optimizer):
  steps, learning_rate, warmup_steps, end_learning_rate, b1, b2, weight_decay, clip_norm.
  Data: families and levels (each level is a value of k in ``tasks.levels``; every family gets
  all of ``levels`` it has), batch_size (SFT: rows per step; GRPO: prompts per step),
  max_prompt_tokens (prompt block width; longer prompts raise), seed.
  SFT: jsonl (optional file of {"prompt", "completion"} pairs replacing the task pool).
  GRPO: group_size G, temperature, top_p, clip_eps ε, beta (k3 KL coefficient; 0: no reference
  pass), std_normalize (divide advantages by the group std: DeepSeekMath; False: Dr. GRPO),
  aggregation ("token": Σ over all tokens / #tokens; "sequence": per-sequence mean, then mean;
  "constant": Σ / (B·T)), updates_per_batch μ, format_reward (added when a completion ends its
  line within the budget).
  Bookkeeping: eval_every, eval_examples (per family × level), eval_seed, save_every, log_every.
  """
  method: str = "grpo"
  steps: int = 60
  learning_rate: float = 3e-4
  warmup_steps: int = 5
  end_learning_rate: float = 3e-5
  b1: float = 0.9
  b2: float = 0.98
  weight_decay: float = 0.01
  clip_norm: float = 1.0
  families: tuple = ("add", "chain", "hop")
  levels: tuple = (2,)
  batch_size: int = 16
  max_prompt_tokens: int = 32
  seed: int = 0
  jsonl: str | None = None
  group_size: int = 8
  temperature: float = 1.0
  top_p: float = 1.0
  clip_eps: float = 0.2
  beta: float = 0.0
  std_normalize: bool = True
  aggregation: str = "token"
  updates_per_batch: int = 1
  format_reward: float = 0.0
  eval_every: int = 10
  eval_examples: int = 64
  eval_seed: int = 4242
  save_every: int = 10
  log_every: int = 5

  def __post_init__(self):
    if self.method not in METHODS:
      raise ValueError(f"TuneConfig.method must be one of {METHODS}, got {self.method!r}")
    for name in ("steps", "batch_size", "max_prompt_tokens", "group_size", "eval_every",
                 "eval_examples", "save_every", "log_every", "updates_per_batch"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"TuneConfig.{name} must be positive, got {getattr(self, name)}")
    if not 0 <= self.warmup_steps < self.steps:
      raise ValueError(f"TuneConfig.warmup_steps={self.warmup_steps} must lie in [0, steps="
                       f"{self.steps})")
    if self.aggregation not in AGGREGATIONS:
      raise ValueError(f"TuneConfig.aggregation must be one of {AGGREGATIONS}, got "
                       f"{self.aggregation!r}")
    if self.method == "grpo" and self.group_size < 2:
      raise ValueError(f"TuneConfig.group_size must be >= 2 for GRPO (advantages are relative "
                       f"to the group), got {self.group_size}")
    if not self.temperature > 0 or not 0 < self.top_p <= 1:
      raise ValueError(f"TuneConfig.temperature must be > 0 and top_p in (0, 1]; got "
                       f"{self.temperature}, {self.top_p}")
    if self.clip_eps <= 0 or self.beta < 0:
      raise ValueError(f"TuneConfig.clip_eps must be > 0 and beta >= 0; got {self.clip_eps}, "
                       f"{self.beta}")
    if self.jsonl is not None and self.method != "sft":
      raise ValueError("TuneConfig.jsonl (prompt/completion pairs) is for method='sft' only: "
                       "GRPO needs the tasks' exact checkers")
    cells(self)  # raises naming an unknown family or a level no family has

  def checkpoint_steps(self) -> list[int]:
    return sorted(set(range(0, self.steps, self.save_every)) | {self.steps})


# Settings that never change the parameters (a resumed run may change them).
BOOKKEEPING = ("eval_every", "eval_examples", "eval_seed", "save_every", "log_every")


def cells(cfg: TuneConfig) -> list[tuple[str, int]]:
  """The (family, level) cells of the pool: every family at each of ``levels`` it has."""
  out = []
  for f in cfg.families:
    have = families.levels(f)  # raises naming an unknown family
    out += [(f, int(k)) for k in cfg.levels if int(k) in have]
  if not out:
    raise ValueError(f"no family of {list(cfg.families)} has any of the levels "
                     f"{list(cfg.levels)}")
  return out


def answer_budget(cfg: TuneConfig) -> int:
  """Continuation tokens T: the longest possible answer of the pool plus its newline."""
  return 1 + max(families.max_answer_length(f, k) for f, k in cells(cfg))


def draw(cfg: TuneConfig, step: int, n: int, stream: int = 0) -> list[families.Example]:
  """``n`` training examples for ``step``: uniform cell, then ``tasks.sample_one``."""
  rng = np.random.default_rng([int(cfg.seed), int(step), int(stream), 0x5F7])
  pool = cells(cfg)
  return [families.sample_one(*pool[int(rng.integers(0, len(pool)))], rng) for _ in range(n)]


def encode_prompt(tokenizer, prompt: str, width: int, where: str = "prompt") -> list[int]:
  """Token ids of a prompt with the tokenizer's special tokens (BOS), at most ``width``."""
  ids = evaluation._encode(tokenizer, prompt)
  if len(ids) > width:
    raise ValueError(f"{where} {prompt!r} has {len(ids)} tokens, more than max_prompt_tokens="
                     f"{width}")
  return ids


def encode_completion(tokenizer, text: str) -> list[int]:
  """Token ids of a completion (no special tokens)."""
  return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def eval_examples(cfg: TuneConfig) -> dict[tuple[str, int], list[families.Example]]:
  """Held-out examples: ``eval_examples`` per cell, seed ``eval_seed``."""
  return {c: families.sample(*c, cfg.eval_examples, cfg.eval_seed) for c in cells(cfg)}


def eval_columns(cfg: TuneConfig) -> list[str]:
  return ["acc"] + [f"acc_{f}_{k}" for f, k in cells(cfg)]


def make_evaluate(model, tokenizer, cfg: TuneConfig) -> Callable:
  """evaluate(m) -> {"acc": mean over cells, "acc_<family>_<level>": fraction} of greedy
  exact match on the held-out examples, m a module of ``model``'s architecture (one compiled
  generate per cell, reused)."""
  del model  # the examples depend on cfg only; the module to score is evaluate's argument
  sets = eval_examples(cfg)

  def evaluate(m):
    out = {}
    for (f, k), exs in sets.items():
      texts = evaluation.generate_answers(m, tokenizer, exs)
      out[f"acc_{f}_{k}"] = float(np.mean([families.check(e, t) for e, t in zip(exs, texts)]))
    return {"acc": float(np.mean(list(out.values()))), **out}

  return evaluate


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
  """(prompt, completion) pairs of a JSONL file, one {"prompt": str, "completion": str} a line.

  Raises FileNotFoundError for a missing file and ValueError naming the file and 1-based line for
  a line that is not such an object, and for a file without pairs.
  """
  path = os.fspath(path)
  pairs = []
  for where, obj in prompts.jsonl_records(path, "SFT pair file"):
    if (not isinstance(obj, dict) or set(obj) != {"prompt", "completion"}
        or not all(isinstance(obj[k], str) and obj[k] for k in obj)):
      raise ValueError(f"{where}: expected an object with exactly the non-empty string keys "
                       f"'prompt' and 'completion', got {json.dumps(obj)[:120]}")
    pairs.append((obj["prompt"], obj["completion"]))
  if not pairs:
    raise ValueError(f"SFT pair file {path!r} holds no pairs")
  return pairs
