"""Prompts → generated tokens and per-head activity, the units' time series.

Activity is the paper's: the L2 norm of each head's attention output (before the output
projection) at every generated token. Units are numbered unit = layer * num_heads + head.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from synergy_jax import models
from synergy_jax.tasks import batching


@dataclasses.dataclass(frozen=True)
class Activity:
  """acts (P, U, T) float32 head-output norms; tokens (P, T) generated ids; prompt_ids: list of
  P token lists; texts: the P decoded continuations."""
  acts: np.ndarray
  tokens: np.ndarray
  prompt_ids: list
  texts: list
  num_layers: int
  num_heads: int


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
  """Token ids of each prompt (with the tokenizer's special tokens, e.g. BOS).

  Raises ValueError naming the prompt index of an empty prompt or one that encodes to no tokens.
  """
  out = []
  for i, text in enumerate(prompts):
    if not isinstance(text, str) or not text.strip():
      raise ValueError(f"prompt {i} is empty or not a string: {text!r}")
    ids = list(tokenizer(text)["input_ids"])
    if not ids:
      raise ValueError(f"prompt {i} ({text[:40]!r}) encodes to no tokens")
    out.append([int(t) for t in ids])
  return out


def collect_activity(model: "models.Model", tokenizer, prompts: Sequence[str], *,
                     max_new_tokens: int = 100, batch_size: int = 8, greedy: bool = True,
                     temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                     head_mask=None, progress: Callable | None = None) -> Activity:
  """Generates ``max_new_tokens`` tokens per prompt and records every head's output norm.

  Prompts go through ``models.generate`` in batches of ``batch_size`` with left padding; the last
  batch is filled up with copies of its final prompt (then dropped) so that every batch has the
  same shape and the decode loop compiles once per prompt-length bucket. Generation never stops at
  EOS, so every prompt yields exactly ``max_new_tokens`` samples per unit, as in the study.

  Returns:
    Activity with acts (P, L * H, T).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not prompts:
    raise ValueError("no prompts given")
  cfg = model.config
  token_lists = encode_prompts(tokenizer, prompts)
  starts = range(0, len(token_lists), batch_size)
  acts, toks = [], []
  for b, start in enumerate(progress(starts, desc="generation", unit="batch") if progress else starts):
    chunk = token_lists[start:start + batch_size]
    n_real = len(chunk)
    chunk = chunk + [chunk[-1]] * (batch_size - n_real)
    batch = batching.left_pad(chunk, cfg)
    rng = None if greedy else seed * 1_000_003 + b
    out = models.generate(model, batch.ids, batch.mask, max_new_tokens=max_new_tokens, greedy=greedy,
                          temperature=temperature, top_p=top_p, rng=rng, head_mask=head_mask)
    norms = np.asarray(out.head_norms, np.float32)[:n_real]  # (B, L, H, T)
    acts.append(norms.reshape(n_real, cfg.num_layers * cfg.num_heads, max_new_tokens))
    toks.append(np.asarray(out.tokens)[:n_real])
  tokens = np.concatenate(toks)
  texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
  return Activity(np.concatenate(acts), tokens, token_lists, texts, cfg.num_layers, cfg.num_heads)


def score_activity(model: "models.Model", tokenizer, prompts: Sequence[str], tokens: np.ndarray,
                   *, batch_size: int = 8) -> Activity:
  """Head activity of ``model`` teacher-forced on ``prompts`` followed by given continuations.

  The matched baseline: another model's generated ``tokens`` (P, T) are fed to this one through
  ``models.score``, so both see exactly the same token sequences. Activity at continuation step t
  is recorded at the position that predicts token t, as in ``collect_activity``.

  Returns:
    Activity with acts (P, L * H, T) and tokens equal to ``tokens``.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[0] != len(prompts):
    raise ValueError(f"tokens must be (prompts={len(prompts)}, T), got shape {tokens.shape}")
  cfg = model.config
  token_lists = encode_prompts(tokenizer, prompts)
  if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
    bad = int(np.argwhere((tokens < 0) | (tokens >= cfg.vocab_size))[0][0])
    raise ValueError(f"tokens of prompt {bad} fall outside the vocabulary 0..{cfg.vocab_size - 1}")
  t = tokens.shape[1]
  acts = []
  for start in range(0, len(token_lists), batch_size):
    chunk = token_lists[start:start + batch_size]
    n_real = len(chunk)
    rows = list(range(start, start + n_real)) + [start + n_real - 1] * (batch_size - n_real)
    chunk = chunk + [chunk[-1]] * (batch_size - n_real)
    seq, lengths = batching.with_continuations(chunk, tokens[rows], cfg)
    out = models.score(model, seq, lengths)
    norms = np.asarray(out.head_norms, np.float32)[:n_real]  # (B, L, H, T)
    acts.append(norms.reshape(n_real, cfg.num_layers * cfg.num_heads, t))
  texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
  return Activity(np.concatenate(acts), tokens.copy(), token_lists, texts, cfg.num_layers,
                  cfg.num_heads)
