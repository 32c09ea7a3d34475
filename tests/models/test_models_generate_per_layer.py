"""generate(per_layer=True): the layers unrolled over per-layer weight and cache buffers
(decoder.split_layers, empty_cache(per_layer=True)) against the scanned stack (per_layer=False),
for every kind of family block: dense Llama-like, Gemma 2 (sliding window, soft-capping), GPT-2,
GPT-NeoX, a Qwen2-MoE with dense and MoE segments (expert capture and expert mask) and
DeepSeek-V2 (latent cache, slot-first entries). Both forms run the same operations in differently
compiled programs, so tokens must be identical and captured values equal within the tolerance the
suite uses for other pairs of programs computing the same thing (cached generation against
uncached scoring, test_models_generate.py: atol = rtol = 1e-5; float32 reassociation across
layers and steps); interventions, sampling and stop_at_eos included."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import families_torch_refs as F
import models_torch_refs as D
import moe_torch_refs as R
from models_torch_refs import pair_factory
from synergy_jax import models as M
from synergy_jax.models import decoder, generation, ops

MOE_CLASSES = {"qwen2_moe": transformers.Qwen2MoeForCausalLM,
               "deepseek_v2_greedy": transformers.DeepseekV2ForCausalLM}
NAMES = ("llama", "gemma2", "gpt2", "gpt_neox", "qwen2_moe", "deepseek_v2_greedy")


def _build(name):
  if name in MOE_CLASSES:
    cfg = R.config(name)
    cfg.vocab_size = F.VOCAB
    torch.manual_seed(0)
    return R.randomize(MOE_CLASSES[name](cfg).eval(), seed=4, std=0.2)
  if name in D.CONFIGS:
    return D.build(name)
  return F.build(name)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  return pair_factory(_build, tmp_path_factory)


def _same(a, b, what):
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens), err_msg=what)
  np.testing.assert_array_equal(np.asarray(a.lengths), np.asarray(b.lengths), err_msg=what)
  for field in ("head_norms", "head_outputs", "expert_norms"):
    x, y = getattr(a, field), getattr(b, field)
    assert (x is None) == (y is None), (what, field)
    if x is None:
      continue
    x, y = np.asarray(x), np.asarray(y)
    assert np.isfinite(x).any(), (what, field)  # not all NaN
    np.testing.assert_array_equal(np.isnan(x), np.isnan(y), err_msg=f"{what} {field}")
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5, equal_nan=True,
                               err_msg=f"{what} {field}")


def generator(m):
  """generate(**kw) on three left-padded prompts (lengths 4, 9, 6), 8 new tokens, with head
  outputs captured: the call the equality tests compare under two settings."""
  ids, mask = F.left_pad(F.prompts([4, 9, 6], seed=3))
  return lambda **kw: M.generate(m, ids, mask, max_new_tokens=8, capture_outputs=True, **kw)


def interventions(base, seed=1):
  """generate keywords for a random head mask (one head off), mean ablation and, for MoE models,
  an expert mask (one expert off, one halved), shaped after the GenerateResult `base`."""
  n_layers, n_heads, _, k = base.head_outputs.shape[1:]
  rng = np.random.default_rng(seed)
  hm = rng.uniform(0.2, 1.0, size=(n_layers, n_heads)).astype(np.float32)
  hm[0, 1] = 0.0
  kw = {"head_mask": hm,
        "head_means": rng.normal(size=(n_layers, n_heads, k)).astype(np.float32)}
  if base.expert_norms is not None:
    em = np.ones(base.expert_norms.shape[1:3], np.float32)
    em[0, 2], em[-1, 0] = 0.0, 0.5
    kw["expert_mask"] = em
  return kw


@pytest.mark.parametrize("name", NAMES)
def test_per_layer_generation_equals_the_scanned_stack(pair, name):
  generate = generator(pair(name)[1])
  run = lambda per_layer, **kw: generate(per_layer=per_layer, **kw)
  base = run(False)
  _same(base, run(True), f"{name} plain")
  kw = interventions(base)
  _same(run(False, **kw), run(True, **kw), f"{name} interventions")
  sample = {"greedy": False, "rng": 7, "temperature": 1.5, "stop_at_eos": True}
  a, b = run(False, **sample), run(True, **sample)
  _same(a, b, f"{name} sampling, stop_at_eos")


def test_default_is_per_layer_on_cpu(pair, monkeypatch):
  assert jax.default_backend() == "cpu"
  m = pair("llama")[1]
  calls = []
  real = decoder.split_layers
  monkeypatch.setattr(decoder, "split_layers", lambda model: calls.append(1) or real(model))
  ids, mask = F.left_pad(F.prompts([5, 3], seed=11))
  M.generate(m, ids, mask, max_new_tokens=3)  # a new trace (this max_new_tokens is unused above)
  assert calls == [1]
  M.generate(m, ids, mask, max_new_tokens=4, per_layer=False)
  assert calls == [1]


def test_default_is_the_scan_when_the_weight_copy_would_not_fit(pair, monkeypatch):
  m = pair("llama")[1]
  need = decoder.layer_weight_bytes(m)
  stacked = sum(int(np.prod(np.shape(x))) * np.asarray(x).dtype.itemsize
                for x in jax.tree_util.tree_leaves(m.params["layers"]))
  assert need == stacked > 0  # the stacked layer weights, what split_layers copies
  calls = []
  real = decoder.split_layers
  monkeypatch.setattr(decoder, "split_layers", lambda model: calls.append(1) or real(model))
  ids, mask = F.left_pad(F.prompts([4, 6], seed=12))
  monkeypatch.setattr(generation, "physical_memory_bytes", lambda: 4 * need - 1)
  assert not generation.per_layer_default(need)
  M.generate(m, ids, mask, max_new_tokens=5)  # a new trace
  assert calls == []
  monkeypatch.setattr(generation, "physical_memory_bytes", lambda: 4 * need)
  assert generation.per_layer_default(need)
  monkeypatch.setattr(generation, "physical_memory_bytes", lambda: None)
  assert generation.per_layer_default(need)  # unknown memory: the CPU default stands


def test_per_layer_cache_needs_static_layers(pair):
  m = pair("llama")[1]
  ids = jnp.ones((1, 3), jnp.int32)
  pos = jnp.arange(3, dtype=jnp.int32)[None]
  valid = jnp.ones((1, 3), bool)
  cache = decoder.empty_cache(m.config, pos, valid, 2, jnp.float32, per_layer=True)
  assert isinstance(cache.entries["k"], tuple) and len(cache.entries["k"]) == m.config.num_layers
  with pytest.raises(ValueError, match="per-layer cache needs a static layer index"):
    decoder.run(m, ids, pos, valid, cache=cache)
  with pytest.raises(ValueError, match="layers= has 2 segments"):
    decoder.run(m, ids, pos, valid, cache=cache, layers=decoder.split_layers(m) * 2)
  # with the layers split, the same cache works and matches the stacked cache's logits
  logits, new, *_ = decoder.run(m, ids, pos, valid, cache=cache, layers=decoder.split_layers(m))
  stacked = decoder.empty_cache(m.config, pos, valid, 2, jnp.float32)
  ref, ref_new, *_ = decoder.run(m, ids, pos, valid, cache=stacked)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), rtol=1e-5, atol=1e-6)
  for i in range(m.config.num_layers):
    np.testing.assert_allclose(np.asarray(new.entries["k"][i]),
                               np.asarray(ref_new.entries["k"][i]), rtol=1e-5, atol=1e-6)


def test_bfloat16_model_decodes_with_a_float32_cache_on_cpu(pair, monkeypatch):
  """decoder.cache_dtype: a bfloat16 dense-attention model keeps its K/V cache in float32 on CPU
  (holding exactly the bfloat16-rounded values), latent caches and float32 models keep theirs;
  generation agrees with a bfloat16 cache to rounding (same tokens)."""
  _, m32, directory = pair("llama")
  m = M.load(directory, dtype="bfloat16")
  assert decoder.cache_dtype(m.config, jnp.bfloat16) == jnp.float32
  assert decoder.cache_dtype(m.config, jnp.float32) == jnp.float32
  mla = pair("deepseek_v2_greedy")[1].config
  assert decoder.cache_dtype(mla, jnp.bfloat16) == jnp.bfloat16  # read by the latent path too
  x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(decoder._to_cache(x, jnp.float32)),  # pylint: disable=protected-access
                                np.asarray(x.astype(jnp.float32)))
  y = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  r = ops.rounded(y, jnp.bfloat16)  # the attention probabilities' rounding
  assert r.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(r, np.float32), np.asarray(y.astype(jnp.bfloat16),
                                                                       np.float32))
  assert ops.rounded(y, jnp.float32).dtype == jnp.float32
  ids, mask = F.left_pad(F.prompts([4, 9, 6], seed=5))
  for per_layer in (True, False):
    f32 = M.generate(m, ids, mask, max_new_tokens=8, per_layer=per_layer)
    with monkeypatch.context() as mp:
      mp.setattr(decoder, "cache_dtype", lambda cfg, dtype: dtype)
      b16 = M.generate(m, ids, mask, max_new_tokens=9, per_layer=per_layer)  # a new trace
    np.testing.assert_array_equal(np.asarray(f32.tokens), np.asarray(b16.tokens)[:, :8])
    x, y = np.asarray(f32.head_norms), np.asarray(b16.head_norms)[..., :8]
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x, y, rtol=1e-2, atol=1e-2)  # bfloat16's 2^-7 rounding
