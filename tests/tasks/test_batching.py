"""tasks.batching: one left-padding helper with one pad-id rule.

The four helpers it replaced are kept below verbatim (from the commit before the merge) as
references: where their pad id agrees with the rule, the new helper gives the same arrays; where
it does not (a config without pad_token_id: the old capture/ablation helpers padded with 0), a
tiny model shows the pad id cannot change what the model computes.
"""
import dataclasses

import numpy as np
import pytest

from synergy_jax import models, training
from synergy_jax.tasks import batching


# --- the replaced helpers, verbatim -------------------------------------------------------------
def _old_capture_left_pad(token_lists, pad_id):  # pipeline/capture.left_pad
  width = max(len(t) for t in token_lists)
  ids = np.full((len(token_lists), width), pad_id, np.int32)
  mask = np.zeros((len(token_lists), width), np.int32)
  for b, toks in enumerate(token_lists):
    ids[b, width - len(toks):] = toks
    mask[b, width - len(toks):] = 1
  return ids, mask


def _old_evaluation_left_pad(token_lists, pad_id):  # tasks/evaluation.left_pad
  width = max(len(t) for t in token_lists)
  ids = np.full((len(token_lists), width), pad_id, np.int32)
  mask = np.zeros((len(token_lists), width), bool)
  for i, t in enumerate(token_lists):
    if not t:
      raise ValueError(f"prompt {i} encodes to no tokens")
    ids[i, width - len(t):] = t
    mask[i, width - len(t):] = True
  return ids, mask


def _old_continuation_batch(ids, continuations, pad_id):  # ablation/divergence, after encoding
  cont = np.asarray(continuations)
  width = max(len(t) for t in ids)
  out = np.full((len(ids), width + cont.shape[1]), pad_id, np.int32)
  for b, t in enumerate(ids):
    out[b, width - len(t):width] = t
  out[:, width:] = cont
  return out, np.array([len(t) for t in ids], np.int32)


def _old_left_pad_block(rows, width, pad_id):  # training/tuning.left_pad_block
  ids = np.full((len(rows), width), pad_id, np.int32)
  for b, r in enumerate(rows):
    ids[b, width - len(r):] = r
  return ids, np.array([len(r) for r in rows], np.int32)
# -------------------------------------------------------------------------------------------------


CFG = training.default_model_config(hidden_size=32, intermediate_size=64, num_layers=2,
                                    num_heads=4, head_dim=8)
NO_PAD = dataclasses.replace(CFG, pad_token_id=None)           # pad falls back to EOS (2)
BARE = dataclasses.replace(CFG, pad_token_id=None, eos_token_ids=())  # pad falls back to 0


def _rows(seed=0, n=6):
  rng = np.random.default_rng(seed)
  return [rng.integers(4, CFG.vocab_size, size=rng.integers(1, 9)).tolist() for _ in range(n)]


def test_layout_by_hand():
  b = batching.left_pad([[7, 8, 9], [5]], CFG, width=4)
  np.testing.assert_array_equal(b.ids, [[0, 7, 8, 9], [0, 0, 0, 5]])
  np.testing.assert_array_equal(b.mask, [[0, 1, 1, 1], [0, 0, 0, 1]])
  np.testing.assert_array_equal(b.lengths, [3, 1])
  assert b.ids.dtype == np.int32 and b.mask.dtype == bool and b.lengths.dtype == np.int32
  tokens, plen = batching.with_continuations([[7, 8, 9], [5]], np.array([[1, 2], [3, 4]]), CFG)
  np.testing.assert_array_equal(tokens, [[7, 8, 9, 1, 2], [0, 0, 5, 3, 4]])
  np.testing.assert_array_equal(plen, [3, 1])


def test_the_one_pad_id_rule():
  assert CFG.pad_token_id == 0 and CFG.eos_token_ids == (2,)
  assert batching.pad_id(CFG) == 0                      # the config's pad id
  assert batching.pad_id(dataclasses.replace(CFG, pad_token_id=3)) == 3
  assert batching.pad_id(NO_PAD) == 2                   # else its first EOS
  assert batching.pad_id(BARE) == 0                     # else 0
  assert batching.left_pad([[5], [6, 7]], NO_PAD).ids[0, 0] == 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_old_helpers_outputs_unchanged_where_their_pad_id_agrees(seed):
  rows = _rows(seed)
  pad = batching.pad_id(CFG)
  new = batching.left_pad(rows, CFG)
  for old in (_old_capture_left_pad, _old_evaluation_left_pad):
    ids, mask = old(rows, pad)
    np.testing.assert_array_equal(new.ids, ids)
    np.testing.assert_array_equal(new.mask, mask.astype(bool))
  cont = np.random.default_rng(seed + 10).integers(4, CFG.vocab_size, size=(len(rows), 5))
  for got, want in zip(batching.with_continuations(rows, cont, CFG),
                       _old_continuation_batch(rows, cont, pad)):
    np.testing.assert_array_equal(got, want)
  # GRPO's fixed-width block (already used pad_id_of, the rule here, for every config)
  for cfg in (CFG, NO_PAD, BARE):
    fixed = batching.left_pad(rows, cfg, width=12)
    ids, lengths = _old_left_pad_block(rows, 12, batching.pad_id(cfg))
    np.testing.assert_array_equal(fixed.ids, ids)
    np.testing.assert_array_equal(fixed.lengths, lengths)
    # GRPO derived the mask from the lengths; the helper's mask is the same
    np.testing.assert_array_equal(fixed.mask, np.arange(12)[None] >= (12 - lengths)[:, None])


@pytest.fixture(scope="module")
def no_pad_model():
  """A tiny random model whose config has no pad_token_id (like GPT-2): the old capture and
  ablation helpers padded its batches with 0, the rule now pads with its EOS id."""
  return models.init(NO_PAD, seed=4)


def test_pad_id_cannot_change_generation_or_scores(no_pad_model):
  rows = _rows(3, n=4)
  old = batching.left_pad(rows, dataclasses.replace(NO_PAD, pad_token_id=0))  # old rule: 0
  new = batching.left_pad(rows, NO_PAD)                                         # rule: EOS
  assert (old.ids != new.ids).any()  # the batches really differ in their pad slots
  g_old = models.generate(no_pad_model, old.ids, old.mask, max_new_tokens=5)
  g_new = models.generate(no_pad_model, new.ids, new.mask, max_new_tokens=5)
  np.testing.assert_array_equal(np.asarray(g_old.tokens), np.asarray(g_new.tokens))
  np.testing.assert_array_equal(np.asarray(g_old.head_norms), np.asarray(g_new.head_norms))

  # score keeps the caller's pad slots (masked), so here the pad ids do reach the embedding
  cont = np.asarray(g_new.tokens)
  t_old, p_old = batching.with_continuations(rows, cont, dataclasses.replace(NO_PAD, pad_token_id=0))
  t_new, p_new = batching.with_continuations(rows, cont, NO_PAD)
  assert (t_old != t_new).any()
  s_old = models.score(no_pad_model, t_old, p_old)
  s_new = models.score(no_pad_model, t_new, p_new)
  for a, b in ((s_old.token_logprobs, s_new.token_logprobs), (s_old.head_norms, s_new.head_norms)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_errors_name_the_row():
  with pytest.raises(ValueError, match="prompt 1 encodes to no tokens"):
    batching.left_pad([[1], []], CFG)
  with pytest.raises(ValueError, match="prompt 0 has 3 tokens, more than the batch width 2"):
    batching.left_pad([[1, 2, 3], [1]], CFG, width=2)
  with pytest.raises(ValueError, match="at least one row"):
    batching.left_pad([], CFG)
  with pytest.raises(ValueError, match=r"continuations must be \(2 prompts, T\)"):
    batching.with_continuations([[1], [2]], np.zeros((3, 2), int), CFG)
