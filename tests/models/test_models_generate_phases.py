"""generate's cache phases (generation.cache_phase_stops, decoder.grow_cache) and its greedy
argmax (generation.first_argmax).

A phased call holds a smaller cache early and grows it between decoding loops; the slots it
does not hold are masked out in a single-phase call, so tokens must be identical and captured
values equal within the tolerance the suite uses for two programs computing the same thing
(test_models_generate_per_layer.py: atol = rtol = 1e-5). Checked for every kind of family block
(dense heads-first caches, Gemma 2's sliding window, GPT-2, GPT-NeoX, MoE segments, DeepSeek-V2's
slot-first latent cache), per-layer and stacked, with interventions, sampling and stop_at_eos;
and the default (several phases for 40 new tokens) against transformers' own greedy decoding."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import families_torch_refs as F
from test_models_generate_per_layer import _build, _same, generator, interventions, NAMES
from models_torch_refs import pair_factory
from synergy_jax import models as M
from synergy_jax.models import decoder, generation


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  return pair_factory(_build, tmp_path_factory)


def test_phase_stops_by_hand():
  stops = generation.cache_phase_stops
  assert stops(100) == (25, 50, 75, 100)  # ceil(100 / 32) = 4 phases
  assert stops(32) == (32,) and stops(1) == (1,)
  assert stops(33) == (16, 33)
  assert stops(40) == (20, 40)
  assert stops(1000) == (250, 500, 750, 1000)  # at most 4
  assert stops(8, 3) == (2, 5, 8)
  assert stops(8, 8) == (1, 2, 3, 4, 5, 6, 7, 8)
  assert stops(8, np.int64(2)) == (4, 8)
  for bad in (0, 9, -1, 2.5, True, "3"):
    with pytest.raises(ValueError, match="cache_phases must be an int from 1 to max_new_tokens=8"):
      stops(8, bad)


def test_generate_names_a_bad_cache_phases(pair):
  m = pair("llama")[1]
  with pytest.raises(ValueError, match=r"cache_phases .* max_new_tokens=4, got 5"):
    M.generate(m, np.array([[5, 6, 7]]), max_new_tokens=4, cache_phases=5)


@pytest.mark.parametrize("per_layer", [True, False])
def test_grow_cache_keeps_entries_and_continues_positions(pair, per_layer):
  for name in ("llama", "deepseek_v2_greedy"):  # heads-first k/v; slot-first latent entries
    cfg = pair(name)[1].config
    valid = jnp.asarray([[False, True, True], [True, True, True]])
    pos = decoder.positions_from_mask(valid)
    cache = decoder.empty_cache(cfg, pos, valid, 2, jnp.float32, per_layer=per_layer)
    rng = np.random.default_rng(0)
    filled = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype), cache.entries)
    cache = decoder.Cache(filled, cache.pos, cache.valid)
    grown = decoder.grow_cache(cfg, cache, 3)
    full = decoder.empty_cache(cfg, pos, valid, 5, jnp.float32, per_layer=per_layer)
    # positions and validity: those of a cache made for 5 new tokens at once
    np.testing.assert_array_equal(np.asarray(grown.pos), np.asarray(full.pos))
    np.testing.assert_array_equal(np.asarray(grown.valid), np.asarray(full.valid))
    np.testing.assert_array_equal(np.asarray(grown.pos)[1], [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_array_equal(np.asarray(grown.pos)[0, 1:], [0, 1, 2, 3, 4, 5, 6])
    layout = decoder.cache_layout(cfg)
    for key, entry in layout.items():
      olds = filled[key] if per_layer else (filled[key],)
      news = grown.entries[key] if per_layer else (grown.entries[key],)
      fulls = full.entries[key] if per_layer else (full.entries[key],)
      assert len(news) == len(olds)
      axis = (1 if per_layer else 2) + entry.slot_axis
      for old, new, want in zip(olds, news, fulls):
        assert new.shape == want.shape and new.shape[axis] == 3 + 5, (name, key)
        kept = np.take(np.asarray(new), np.arange(5), axis=axis)
        np.testing.assert_array_equal(kept, np.asarray(old))  # the 5 old slots, unchanged
        added = np.take(np.asarray(new), np.arange(5, 8), axis=axis)
        assert not added.any(), (name, key)  # the 3 new slots: zeros
  with pytest.raises(ValueError, match="new_slots must be >= 1, got 0"):
    decoder.grow_cache(cfg, cache, 0)


def test_phased_call_grows_the_cache_between_loops(pair, monkeypatch):
  m = pair("llama")[1]
  grown = []
  real = decoder.grow_cache
  monkeypatch.setattr(decoder, "grow_cache", lambda cfg, cache, n: grown.append(
      (cache.pos.shape[1], n)) or real(cfg, cache, n))
  M.generate(m, np.array([[5, 6, 7]]), max_new_tokens=10, cache_phases=3)  # a new trace
  # bucket 8: phase caches of 8 + 3, 8 + 6, 8 + 10 slots
  assert grown == [(11, 3), (14, 4)]


@pytest.mark.parametrize("name", NAMES)
def test_phased_generation_equals_one_phase(pair, name):
  generate = generator(pair(name)[1])
  run = lambda phases, **kw: generate(cache_phases=phases, **kw)
  base = run(1)
  assert np.asarray(base.tokens).std() > 0  # not a constant output
  _same(base, run(3), f"{name} 3 phases")
  kw = {**interventions(base), "greedy": False, "rng": 7, "temperature": 1.5, "stop_at_eos": True}
  _same(run(1, **kw), run(3, **kw), f"{name} interventions, sampling, stop_at_eos")


def test_one_slot_phases_and_the_stacked_layers(pair):
  m = pair("llama")[1]
  ids, mask = F.left_pad(F.prompts([7, 2], seed=9))
  run = lambda phases, per_layer: M.generate(m, ids, mask, max_new_tokens=6, per_layer=per_layer,
                                             cache_phases=phases)
  base = run(1, True)
  _same(base, run(6, True), "6 phases (the first runs no loop step)")
  _same(base, run(2, False), "2 phases, stacked layers")


def test_default_phases_match_transformers_greedy(pair):
  """40 new tokens: two phases by default; tokens equal torch's greedy decoding and the head
  norms its forward pass over the same sequence (the tolerance of test_models_generate.py)."""
  new = 40
  assert len(generation.cache_phase_stops(new)) == 2
  tm, m, _ = pair("llama")
  prompt = F.prompts([5], seed=4)[0]
  ref = F.torch_greedy(tm, prompt, new)
  r = M.generate(m, prompt[None], max_new_tokens=new)
  np.testing.assert_array_equal(np.asarray(r.tokens[0]), ref)
  cfg = m.config
  seq = np.concatenate([prompt, ref])
  norms = F.torch_head_norms(tm, seq, cfg.num_heads, cfg.head_dim)
  want = norms[:, len(prompt) - 1:len(prompt) - 1 + new]  # (L, T, N)
  np.testing.assert_allclose(np.asarray(r.head_norms[0]), want.transpose(0, 2, 1), atol=1e-4,
                             rtol=1e-4)
  assert want.std() > 0.05


def test_first_argmax_by_hand():
  nan, inf = np.nan, np.inf
  logits = np.array([[0.0, 3.0, 1.0, 3.0],    # a tie: the first
                     [-inf, -inf, -inf, -inf],  # all -inf: index 0, as argmax
                     [1.0, nan, 5.0, nan],    # NaN: the first NaN, as argmax
                     [-2.0, -1.0, -7.0, inf]], np.float32)
  got = np.asarray(generation.first_argmax(jnp.asarray(logits)))
  np.testing.assert_array_equal(got, [1, 0, 1, 3])
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(logits), -1)))
  rows = np.random.default_rng(2).normal(size=(64, 4096)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(jax.jit(generation.first_argmax)(rows)),
                                rows.argmax(-1))
