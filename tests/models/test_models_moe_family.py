"""The mixtral, qwen2_moe and qwen3_moe families against transformers (float32, tiny random
models built here, loaded from save_pretrained through models.load): logits within 1e-4,
greedy generation identical for 16 tokens, cached decoding (generate) equal to uncached scoring,
and head / expert activity equal to norms of the PyTorch model's own modules on the same
inputs (forward hooks: o_proj inputs for heads; each MoE block's input run through torch's
expert and router modules for experts, "dense" and "routed")."""
import numpy as np
import pytest
import torch
import transformers

import moe_torch_refs as R
from synergy_jax import models

ATOL = 1e-4
CLASSES = {"mixtral": transformers.MixtralForCausalLM,
           "qwen2_moe": transformers.Qwen2MoeForCausalLM,       # shared expert; layers dense,
           "qwen2_moe_norm": transformers.Qwen2MoeForCausalLM,  # MoE, dense, dense; no renorm
           "qwen3_moe": transformers.Qwen3MoeForCausalLM}
NAMES = sorted(CLASSES)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
  """name -> (torch model, our Model loaded from its save_pretrained directory), built lazily."""
  cache = {}

  def get(name):
    if name not in cache:
      torch.manual_seed(0)
      hf = R.randomize(CLASSES[name](R.config(name)).eval(), seed=3, std=0.25)
      hf.generation_config.eos_token_id = None  # generate all 16 tokens, as ours does
      hf.generation_config.pad_token_id = 0
      d = tmp_path_factory.mktemp(name)
      hf.save_pretrained(d)
      cache[name] = (hf, models.load(d))
    return cache[name]
  return get


def _ids(shape, seed=0):
  return np.random.default_rng(seed).integers(3, R.VOCAB, shape)


@torch.no_grad()
def _torch_activity(hf, ids):
  """Per MoE layer (dense (B, S, U), routed (B, S, U)) and per layer head norms (B, S, N),
  from torch's own modules on the inputs the torch model gives them."""
  layers = hf.model.layers
  moe_in, heads = {}, {}
  hooks = []
  for i, layer in enumerate(layers):
    hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(
        lambda mod, a, i=i: heads.update({i: a[0].detach()})))
    if hasattr(layer.mlp, "experts"):
      hooks.append(layer.mlp.register_forward_pre_hook(
          lambda mod, a, i=i: moe_in.update({i: a[0].detach()})))
  hf(torch.tensor(ids))
  for h in hooks:
    h.remove()
  b, s = ids.shape
  n = hf.config.num_attention_heads
  head_norms = [np.linalg.norm(R.np32(heads[i]).reshape(b, s, n, -1), axis=-1)
                for i in range(len(layers))]
  acts = []
  for i in sorted(moe_in):
    block, x2d = layers[i].mlp, moe_in[i].reshape(b * s, -1)
    y = R.every_expert_output(block.experts, x2d)  # (T, E, D): torch's expert math
    norm = np.linalg.norm(y, axis=-1)
    gates = R.dense_gates(block.gate, x2d)  # (T, E)
    dense, routed = [norm], [gates * norm]
    if hasattr(block, "shared_expert"):
      zn = np.linalg.norm(R.np32(block.shared_expert(x2d)), axis=-1)[:, None]
      c = R.np32(torch.sigmoid(block.shared_expert_gate(x2d)))
      dense.append(zn)
      routed.append(c * zn)
    acts.append((np.concatenate(dense, -1).reshape(b, s, -1),
                 np.concatenate(routed, -1).reshape(b, s, -1)))
  return acts, head_norms


@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(name, pairs):
  hf, ours = pairs(name)
  ids = _ids((2, 11))
  with torch.no_grad():
    want = hf(torch.tensor(ids)).logits.numpy()
  got = np.asarray(models.forward(ours, ids))
  assert np.isfinite(got).all()
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_hf_and_cached_equals_uncached(name, pairs):
  hf, ours = pairs(name)
  prompts = _ids((2, 5), seed=1)
  with torch.no_grad():
    want = hf.generate(torch.tensor(prompts), max_new_tokens=16, do_sample=False,
                       attention_mask=torch.ones(prompts.shape, dtype=torch.long))
  res = models.generate(ours, prompts, max_new_tokens=16)
  np.testing.assert_array_equal(np.asarray(res.tokens), want[:, 5:].numpy())
  m = ours.config.moe
  assert res.expert_norms.shape == (2, m.num_moe_layers, m.num_units, 16)
  # the cached decode's activity equals uncached teacher-forced scoring of the same tokens
  sc = models.score(ours, res.sequences, res.prompt_lengths)
  for a, b in ((res.head_norms, sc.head_norms), (res.expert_norms, sc.expert_norms)):
    a, b = np.asarray(a), np.asarray(b)
    assert np.isfinite(a).all() and np.isfinite(b).all()
    np.testing.assert_allclose(a, b, atol=ATOL, rtol=1e-5)
  np.testing.assert_array_equal(np.argmax(np.asarray(sc.logprobs), -1), np.asarray(res.tokens))
  if name != "qwen2_moe":  # "routed" through the cache once (shared expert, three segments)
    return
  routed = models.generate(ours, prompts, max_new_tokens=16, expert_activity="routed")
  routed_sc = models.score(ours, res.sequences, res.prompt_lengths, expert_activity="routed")
  np.testing.assert_allclose(np.asarray(routed.expert_norms), np.asarray(routed_sc.expert_norms),
                             atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_expert_and_head_norms_equal_torch_modules(name, pairs):
  hf, ours = pairs(name)
  ids = _ids((2, 9), seed=2)
  acts, head_norms = _torch_activity(hf, ids)
  m = ours.config.moe
  assert len(acts) == m.num_moe_layers
  lens = np.ones(2, np.int64)  # score positions 0 .. S-2
  for kind, k in (("dense", 0), ("routed", 1)):
    got = np.asarray(models.score(ours, ids, lens, expert_activity=kind).expert_norms)
    assert got.shape == (2, m.num_moe_layers, m.num_units, 8)
    want = np.stack([a[k] for a in acts], 1)[:, :, :8].transpose(0, 1, 3, 2)  # (B, L_moe, U, T)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=ATOL, rtol=1e-4, err_msg=kind)
    if kind == "routed":  # exactly zero where the router did not choose a routed expert
      chosen = (want[:, :, :m.num_experts] > 0).sum(2)
      assert (chosen == m.experts_per_token).all()
      assert (got[:, :, :m.num_experts][want[:, :, :m.num_experts] == 0] == 0).all()
  heads = np.asarray(models.score(ours, ids, lens).head_norms)  # (B, L, N, T)
  want_h = np.stack(head_norms, 1)[:, :, :8].transpose(0, 1, 3, 2)
  np.testing.assert_allclose(heads, want_h, atol=ATOL, rtol=1e-4)


def test_dense_models_return_no_expert_norms_and_reject_expert_masks():
  cfg = models.ModelConfig(family="llama", model_type="llama", vocab_size=11, hidden_size=16,
                           intermediate_size=8, num_layers=1, num_heads=2, num_kv_heads=2,
                           head_dim=8)
  model = models.init(cfg, 0)
  assert models.generate(model, [[3, 4]], max_new_tokens=2).expert_norms is None
  assert models.score(model, [[3, 4, 5]], [2]).expert_norms is None
  with pytest.raises(ValueError, match="no experts"):
    models.score(model, [[3, 4, 5]], [2], expert_mask=np.ones((1, 2)))
  with pytest.raises(ValueError, match="expert_activity='sparse'"):
    models.score(model, [[3, 4, 5]], [2], expert_activity="sparse")
