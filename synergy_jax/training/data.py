"""The training corpus: task lines of every family and level mixed with category-style text.

A training row is ``BOS line \\n line \\n ... \\n PAD PAD ...`` of ``seq_len + 1`` token ids: the
inputs are ``row[:-1]`` and the next-token targets ``row[1:]``. Lines are drawn at random: with
probability ``task_fraction`` a task example (uniform family, uniform level), otherwise a text
line of a uniform prompt category; a row takes lines until four draws in a row do not fit.

Loss weights: 1 on every character of a text line and its newline; for a task line only the
answer and its newline carry weight (the prompt's random digits are unpredictable, so fitting
them would waste the small model's capacity); 0 on padding.

Determinism: ``batch(seed, step, ...)`` is a pure function of its arguments (numpy generator
seeded with ``[seed, step]``), so a resumed run sees exactly the batches an uninterrupted one
would.
"""
from __future__ import annotations

import numpy as np

from synergy_jax.tasks import families
from synergy_jax.tasks.prompts import CATEGORIES
from synergy_jax.training import text, tokenizer

# A row stops after this many drawn lines in a row that do not fit its remaining space.
_MAX_MISSES = 4
_TASK_LEVELS = tuple((f, k) for f in families.FAMILIES for k in families.levels(f))


def _line(rng: np.random.Generator, task_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Token ids of one line including its newline, and their loss weights (as targets)."""
  if rng.random() < task_fraction:
    family, level = _TASK_LEVELS[int(rng.integers(0, len(_TASK_LEVELS)))]
    ex = families.sample_one(family, level, rng)
    ids = tokenizer.encode(ex.prompt + ex.answer + families.END)
    weights = np.zeros(len(ids), np.float32)
    weights[len(ex.prompt):] = 1.0
  else:
    line = text.sample_line(CATEGORIES[int(rng.integers(0, len(CATEGORIES)))], rng)
    ids = tokenizer.encode(line + "\n")
    weights = np.ones(len(ids), np.float32)
  return ids, weights


def make_row(rng: np.random.Generator, seq_len: int, task_fraction: float
             ) -> tuple[np.ndarray, np.ndarray]:
  """One row: ids int32 (seq_len + 1,) starting with BOS, weights float32 (seq_len,) for targets."""
  ids = np.full(seq_len + 1, tokenizer.PAD_ID, np.int32)
  weights = np.zeros(seq_len, np.float32)
  ids[0] = tokenizer.BOS_ID
  pos, misses = 1, 0
  while misses < _MAX_MISSES:
    line, w = _line(rng, task_fraction)
    if len(line) > seq_len:
      raise ValueError(f"a corpus line of {len(line)} tokens does not fit seq_len={seq_len}")
    if pos + len(line) > seq_len + 1:
      misses += 1
      continue
    ids[pos:pos + len(line)] = line
    weights[pos - 1:pos - 1 + len(line)] = w  # target at t is ids[t + 1]
    pos += len(line)
  return ids, weights


def batch(seed: int, step: int, batch_size: int, seq_len: int, task_fraction: float = 0.6
          ) -> dict[str, np.ndarray]:
  """The batch for ``step`` of a run with ``seed``.

  Returns ``inputs`` int32 (B, T), ``targets`` int32 (B, T), ``weights`` float32 (B, T) with
  T = seq_len.
  """
  if not 0.0 <= task_fraction <= 1.0:
    raise ValueError(f"task_fraction must lie in [0, 1], got {task_fraction}")
  rng = np.random.default_rng([int(seed), int(step), 0xDA7A])
  rows = [make_row(rng, seq_len, task_fraction) for _ in range(batch_size)]
  ids = np.stack([r for r, _ in rows])
  return {"inputs": ids[:, :-1], "targets": ids[:, 1:], "weights": np.stack([w for _, w in rows])}
