"""Prompts → generated tokens and per-unit activity, the units' time series.

Activity is the paper's: the L2 norm of each head's attention output (before the output
projection) at every generated token; in mixture-of-experts models also (or instead) the L2 norm
of each expert's output (``models.generate``'s ``expert_norms``, "dense" or "routed" activity).
Which units, and in which order, is ``analysis.units.Units.of_config(cfg, units)``: heads
(unit = layer · H + head), experts (unit = m · (E + S) + e of MoE layer m), or heads then experts.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from synergy_jax import models
from synergy_jax.analysis.units import Units, check_which
from synergy_jax.tasks import batching


@dataclasses.dataclass(frozen=True)
class Activity:
  """acts (P, U, T) float32 unit-output norms; tokens (P, T) generated ids; prompt_ids: list of
  P token lists; texts: the P decoded continuations; units: what each of the U units is."""
  acts: np.ndarray
  tokens: np.ndarray
  prompt_ids: list
  texts: list
  units: Units

  @property
  def num_layers(self) -> int:
    return self.units.num_layers


def _unit_series(out, units: str, n_real: int) -> np.ndarray:
  """(n_real, U, T) float32 series of the chosen units from a generate/score result."""
  parts = []
  if units in ("heads", "heads+experts"):
    h = np.asarray(out.head_norms, np.float32)[:n_real]  # (B, L, H, T)
    parts.append(h.reshape(n_real, -1, h.shape[-1]))
  if units in ("experts", "heads+experts"):
    if out.expert_norms is None:
      raise ValueError(f"units={units!r}: the model returned no expert norms (not an MoE model)")
    e = np.asarray(out.expert_norms, np.float32)[:n_real]  # (B, L_moe, E + S, T)
    parts.append(e.reshape(n_real, -1, e.shape[-1]))
  return np.concatenate(parts, axis=1)


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
                     head_mask=None, expert_mask=None, units: str = "heads",
                     expert_activity: str = "dense",
                     progress: Callable | None = None) -> Activity:
  """Generates ``max_new_tokens`` tokens per prompt and records every unit's output norm.

  Prompts go through ``models.generate`` in batches of ``batch_size`` with left padding; the last
  batch is filled up with copies of its final prompt (then dropped) so that every batch has the
  same shape and the decode loop compiles once per prompt-length bucket. Generation never stops at
  EOS, so every prompt yields exactly ``max_new_tokens`` samples per unit, as in the study.

  units: "heads", "experts" or "heads+experts" (MoE models; see the module docstring);
  expert_activity: "dense" or "routed" (``models.generate``); head_mask (L, H) and expert_mask
  (L_moe, E + S) scale units' outputs as in ``models.generate``.

  Returns:
    Activity with acts (P, U, T) and its unit table.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not prompts:
    raise ValueError("no prompts given")
  cfg = model.config
  table = Units.of_config(cfg, check_which(units))
  moe = {"expert_mask": expert_mask, "expert_activity": expert_activity}
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
                          temperature=temperature, top_p=top_p, rng=rng, head_mask=head_mask,
                          **moe)
    acts.append(_unit_series(out, units, n_real))
    toks.append(np.asarray(out.tokens)[:n_real])
  tokens = np.concatenate(toks)
  texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
  return Activity(np.concatenate(acts), tokens, token_lists, texts, table)


def score_activity(model: "models.Model", tokenizer, prompts: Sequence[str], tokens: np.ndarray,
                   *, batch_size: int = 8, units: str = "heads",
                   expert_activity: str = "dense") -> Activity:
  """Unit activity of ``model`` teacher-forced on ``prompts`` followed by given continuations.

  The matched baseline: another model's generated ``tokens`` (P, T) are fed to this one through
  ``models.score``, so both see exactly the same token sequences. Activity at continuation step t
  is recorded at the position that predicts token t, as in ``collect_activity``.

  units, expert_activity: as in ``collect_activity``.

  Returns:
    Activity with acts (P, U, T) and tokens equal to ``tokens``.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  tokens = np.asarray(tokens)
  if tokens.ndim != 2 or tokens.shape[0] != len(prompts):
    raise ValueError(f"tokens must be (prompts={len(prompts)}, T), got shape {tokens.shape}")
  cfg = model.config
  table = Units.of_config(cfg, check_which(units))
  moe = {"expert_activity": expert_activity}
  token_lists = encode_prompts(tokenizer, prompts)
  if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.vocab_size):
    bad = int(np.argwhere((tokens < 0) | (tokens >= cfg.vocab_size))[0][0])
    raise ValueError(f"tokens of prompt {bad} fall outside the vocabulary 0..{cfg.vocab_size - 1}")
  acts = []
  for start in range(0, len(token_lists), batch_size):
    chunk = token_lists[start:start + batch_size]
    n_real = len(chunk)
    rows = list(range(start, start + n_real)) + [start + n_real - 1] * (batch_size - n_real)
    chunk = chunk + [chunk[-1]] * (batch_size - n_real)
    seq, lengths = batching.with_continuations(chunk, tokens[rows], cfg)
    out = models.score(model, seq, lengths, **moe)
    acts.append(_unit_series(out, units, n_real))
  texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
  return Activity(np.concatenate(acts), tokens.copy(), token_lists, texts, table)
