"""Ragged prompts → one left-padded batch, the layout ``models.generate`` and ``models.score`` take.

The one pad-id rule: padding uses ``models.generation.pad_id_of(config)`` — the model config's
``pad_token_id``, else its first EOS id, else 0. It is the id ``generate`` and ``score`` fill their
own buffers with, so a batch built here reaches the model exactly as if the model had padded it.

Why no choice of pad id can change a result: every padded position is masked. ``generate``
rebuilds each row from the attention mask's real tokens; ``score`` masks the first
``P - prompt_length`` columns; masked keys get a large finite negative logit (``models.ops.MASK_VALUE``
= -1e30), whose softmax weight is exactly 0 in float32, and positions count from each row's first
real token. A pad token's embedding is computed but never read by a real position, so any valid
vocabulary id gives the same logits, head norms and continuations (tests/tasks/test_batching.py
checks this). The rule above only has to give an id inside the vocabulary on every model, which
0 (the fallback) and the config's own ids are; a tokenizer's pad id need not be (a tokenizer may
add tokens the checkpoint has no embedding rows for), so the tokenizer is not consulted.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class LeftPadded:
  """ids (B, W) int32, each row's tokens flush right after pad ids; mask (B, W) bool, True on
  real tokens; lengths (B,) int32 real tokens per row."""
  ids: np.ndarray
  mask: np.ndarray
  lengths: np.ndarray


def pad_id(config) -> int:
  """The pad id for ``config`` (a ``models.ModelConfig``); the rule is in the module docstring."""
  from synergy_jax.models import generation  # tasks/ stays importable without loading JAX
  return generation.pad_id_of(config)


def left_pad(rows: Sequence[Sequence[int]], config, *, width: int | None = None) -> LeftPadded:
  """Left-pads token-id rows into one batch with ``config``'s pad id.

  Args:
    rows: B non-empty sequences of token ids.
    config: the model config the batch is for (its pad id; see the module docstring).
    width: W, the batch width (default: the longest row). A fixed width keeps one compiled shape
      across batches of different prompts.
  Raises ValueError naming the row of an empty row or one longer than ``width``.
  """
  if not rows:
    raise ValueError("left_pad needs at least one row")
  lengths = np.array([len(r) for r in rows], np.int32)
  for b, n in enumerate(lengths):
    if n == 0:
      raise ValueError(f"prompt {b} encodes to no tokens")
  width = int(lengths.max()) if width is None else int(width)
  if lengths.max() > width:
    b = int(np.argmax(lengths))
    raise ValueError(f"prompt {b} has {lengths[b]} tokens, more than the batch width {width}")
  ids = np.full((len(rows), width), pad_id(config), np.int32)
  mask = np.zeros((len(rows), width), bool)
  for b, r in enumerate(rows):
    ids[b, width - len(r):] = r
    mask[b, width - len(r):] = True
  return LeftPadded(ids, mask, lengths)


def with_continuations(rows: Sequence[Sequence[int]], continuations: np.ndarray, config
                       ) -> tuple[np.ndarray, np.ndarray]:
  """``models.score``'s layout: (B, P + T) int32 tokens, each row [pad ids | prompt | its T
  continuation ids], and (B,) int32 prompt lengths (P = the longest prompt).

  continuations: (B, T) ids, row b continuing ``rows[b]``.
  """
  cont = np.asarray(continuations)
  if cont.ndim != 2 or cont.shape[0] != len(rows):
    raise ValueError(f"continuations must be ({len(rows)} prompts, T), got shape {cont.shape}")
  batch = left_pad(rows, config)
  return np.concatenate([batch.ids, cont.astype(np.int32)], axis=1), batch.lengths
