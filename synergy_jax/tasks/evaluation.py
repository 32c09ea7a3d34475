"""Exact-match accuracy of a model's greedy answers on a task family × level.

All ``n`` prompts of one family × level go through ``models.generate`` as one left-padded batch
(one compiled shape per family × level and batch size; prompts of one level have equal length
except where operands vary, and padding absorbs that). The continuation budget is the level's
longest possible answer plus the closing newline, so the decoded text can be cut at the newline
and compared exactly (``check``).
"""
from __future__ import annotations

import numpy as np

from synergy_jax.tasks import batching, families


def _encode(tokenizer, text: str) -> list[int]:
  """Token ids of ``text`` with the tokenizer's special tokens (BOS for the default model)."""
  ids = tokenizer(text)["input_ids"] if callable(tokenizer) else tokenizer.encode(text)
  return [int(i) for i in ids]


def generate_answers(model, tokenizer, examples: list[families.Example], *, head_mask=None,
                     max_new_tokens: int | None = None) -> list[str]:
  """Greedy continuations (decoded text, not yet cut at the newline) of the examples' prompts.

  head_mask: optional (L, N) scaling of each head's output, passed to ``models.generate``.
  max_new_tokens: default is the longest possible answer of the examples' levels + 1.
  """
  from synergy_jax import models

  if not examples:
    return []
  if max_new_tokens is None:
    max_new_tokens = 1 + max(families.max_answer_length(e.family, e.level) for e in examples)
  batch = batching.left_pad([_encode(tokenizer, e.prompt) for e in examples], model.config)
  result = models.generate(model, batch.ids, batch.mask, max_new_tokens=max_new_tokens, greedy=True,
                           head_mask=head_mask)
  new = np.asarray(result.tokens)[:, -max_new_tokens:]  # (B, max_new_tokens)
  return [tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in new]


def evaluate(model, tokenizer, family: str, level: int, n: int, seed: int, *,
             head_mask=None) -> float:
  """Fraction of ``tasks.sample(family, level, n, seed)`` answered exactly by greedy decoding."""
  if n <= 0:
    raise ValueError(f"evaluate needs n > 0 examples, got {n}")
  examples = families.sample(family, level, n, seed)
  outputs = generate_answers(model, tokenizer, examples, head_mask=head_mask)
  return float(np.mean([families.check(e, o) for e, o in zip(examples, outputs)]))
