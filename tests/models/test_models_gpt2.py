"""GPT-2 (synergy_jax.models.gpt2) against a tiny random transformers GPT2LMHeadModel."""
import os

import jax
import numpy as np
import pytest

from synergy_jax import models as M
import families_torch_refs as R
from models_torch_refs import assert_transformers_roundtrip


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  tm = R.build("gpt2")
  d = tmp_path_factory.mktemp("gpt2")
  tm.save_pretrained(d)
  return tm, M.load(d), d


def test_config(pair):
  _, m, _ = pair
  c = m.config
  assert (c.family, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (
      "gpt2", 2, 4, 4, 12, R.VOCAB)
  assert c.hidden_act == "gelu_tanh" and c.tie_word_embeddings
  assert c.max_position_embeddings == 64
  assert M.ModelConfig.from_hf(c.to_hf()) == c


def test_logits_match_transformers(pair):
  tm, m, _ = pair
  ids = np.random.RandomState(0).randint(3, R.VOCAB, size=(2, 21))
  ref = R.torch_logits(tm, ids)
  out = np.asarray(M.forward(m, ids))
  assert out.shape == ref.shape == (2, 21, R.VOCAB)
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
  assert ref.std() > 0.1


def test_variant_logits_match_transformers(tmp_path):
  """Untied lm_head, scale_attn_weights=False, n_inner and exact GELU."""
  tm = R.build("gpt2_variant")
  tm.save_pretrained(tmp_path)
  m = M.load(tmp_path)
  c = m.config
  assert (not c.tie_word_embeddings, c.option("scale_attn_weights"), c.intermediate_size,
          c.hidden_act) == (True, False, 40, "gelu")
  assert M.ModelConfig.from_hf(c.to_hf()) == c
  ids = np.random.RandomState(2).randint(3, R.VOCAB, size=(2, 32))  # the whole position table
  ref = R.torch_logits(tm, ids)
  np.testing.assert_allclose(np.asarray(M.forward(m, ids)), ref, atol=1e-4, rtol=0)
  assert ref.std() > 0.1


def test_generation_up_to_the_last_learned_position(pair):
  """A prompt of 44 + 20 new tokens uses all 64 rows of wpe; still equal to transformers."""
  tm, m, _ = pair
  R.check_greedy_and_head_norms(tm, m, prompt_len=64 - R.NEW, seed=4)
  with pytest.raises(ValueError, match="max_position_embeddings"):
    M.generate(m, np.ones((1, 64 - R.NEW + 1), int), max_new_tokens=R.NEW)


def test_padded_logits_use_learned_positions_of_real_tokens(pair):
  tm, m, _ = pair
  R.check_padded_logits(tm, m)


def test_greedy_generate_and_head_norms_match_transformers(pair):
  tm, m, _ = pair
  R.check_greedy_and_head_norms(tm, m)


def test_cached_decoding_equals_uncached_forward(pair):
  R.check_cached_equals_uncached(pair[1])


def test_left_padded_batch_equals_each_prompt_alone(pair):
  R.check_left_padding(pair[1])


def test_save_load_roundtrip_and_transformers_reads_it(pair, tmp_path):
  tm, m, _ = pair
  ids = np.random.RandomState(1).randint(3, R.VOCAB, size=(1, 9))
  assert_transformers_roundtrip(tm, m, tmp_path, ids, atol=1e-6)


def test_original_openai_layout_loads(pair, tmp_path):
  """Hub GPT-2 checkpoints were saved from GPT2Model: no "transformer." prefix, and they carry
  the causal-mask buffers attn.bias / attn.masked_bias. Both must load to the same params."""
  from safetensors.numpy import load_file, save_file
  _, m, d = pair
  tensors = load_file(os.path.join(d, "model.safetensors"))
  old = {k[len("transformer."):]: v for k, v in tensors.items()}
  for i in range(2):
    old[f"h.{i}.attn.bias"] = np.tril(np.ones((64, 64), np.float32))[None, None]
    old[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
  save_file(old, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((d / "config.json").read_text())
  m2 = M.load(tmp_path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, m.params, m2.params)
  # an unknown tensor is still an error naming it
  old["h.0.attn.extra.weight"] = np.zeros(3, np.float32)
  save_file(old, str(tmp_path / "model.safetensors"))
  with pytest.raises(ValueError, match="transformer.h.0.attn.extra.weight"):
    M.load(tmp_path)


# From openai-community/gpt2 config.json (as published).
GPT2_SMALL = {
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
    "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257}


def test_gpt2_small_shapes_with_eval_shape():
  cfg = R.check_eval_shape(GPT2_SMALL, {
      "transformer.h.0.attn.c_attn.weight": (768, 2304),
      "transformer.h.11.attn.c_attn.bias": (2304,),
      "transformer.h.5.mlp.c_fc.weight": (768, 3072),
      "transformer.h.11.mlp.c_proj.weight": (3072, 768),
      "transformer.wpe.weight": (1024, 768),
      "transformer.wte.weight": (50257, 768)}, n_params=124_439_808)
  assert (cfg.num_layers, cfg.num_heads, cfg.head_dim) == (12, 12, 64)
  assert "lm_head.weight" not in __import__(
      "synergy_jax.models.convert", fromlist=["x"]).hf_shapes(cfg)


@pytest.mark.parametrize("key,value", [
    ("scale_attn_by_inverse_layer_idx", True), ("add_cross_attention", True),
    ("activation_function", "swiglu"), ("n_ctx", 512), ("rotary_dim", 64)])
def test_unimplemented_config_values_are_named(key, value):
  with pytest.raises(ValueError, match=key):
    M.ModelConfig.from_hf(dict(GPT2_SMALL, **{key: value}))


def test_fused_qkv_conversion_matches_torch_split(pair):
  """q/k/v leaves == torch's split of c_attn's output into (q, k, v), each viewed (N, K)."""
  import torch
  tm, m, _ = pair
  x = np.random.RandomState(5).randn(3, 48).astype(np.float32)
  with torch.no_grad():
    out = tm.transformer.h[1].attn.c_attn(torch.tensor(x)).numpy()  # (3, 3D)
  q, k, v = np.split(out, 3, axis=-1)
  p = m.params["layers"]["attn"]
  for name, ref in (("q", q), ("k", k), ("v", v)):
    ours = np.einsum("sd,dnk->snk", x, np.asarray(p[name][1])) + np.asarray(p[name + "_bias"][1])
    np.testing.assert_allclose(ours.reshape(3, -1), ref, atol=1e-5)
