"""GPT-NeoX / Pythia (synergy_jax.models.gpt_neox) against tiny random transformers models:
partial rotary, parallel and sequential residuals, per-head interleaved fused qkv."""
import jax
import numpy as np
import pytest

from synergy_jax import models as M
import families_torch_refs as R
from models_torch_refs import assert_transformers_roundtrip, pair_factory

VARIANTS = ("gpt_neox", "gpt_neox_seq")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """name -> (torch model, our loaded Model, directory)."""
  return pair_factory(R.build, tmp_path_factory)


def test_config(pair):
  c = pair("gpt_neox")[1].config
  assert (c.family, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim) == (
      "gpt_neox", 2, 4, 4, 16)
  assert c.option("rotary_pct") == 0.5 and c.option("parallel_residual") is True
  assert c.rope_theta == 500.0 and c.qkv_bias and not c.tie_word_embeddings
  s = pair("gpt_neox_seq")[1].config
  assert s.option("parallel_residual") is False and not s.qkv_bias and s.tie_word_embeddings
  assert s.option("rotary_pct") == 0.25 and (s.rope_type, s.rope) == ("linear", {"factor": 2.0})
  for cfg in (c, s):
    assert M.ModelConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_transformers(pair, name):
  tm, m, _ = pair(name)
  ids = np.random.RandomState(0).randint(3, R.VOCAB, size=(2, 21))
  ref = R.torch_logits(tm, ids)
  out = np.asarray(M.forward(m, ids))
  assert out.shape == ref.shape == (2, 21, R.VOCAB)
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
  assert ref.std() > 0.1


def test_residual_variant_matters(pair):
  """Switching the residual form changes the logits: the flag is really read."""
  tm, m, _ = pair("gpt_neox")
  ids = np.random.RandomState(0).randint(3, R.VOCAB, size=(1, 9))
  flipped = m.replace(config=m.config.replace(options=tuple(sorted(
      dict(m.config.options, parallel_residual=False).items()))))
  assert np.abs(np.asarray(M.forward(flipped, ids)) - R.torch_logits(tm, ids)).max() > 1e-2


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_generate_and_head_norms_match_transformers(pair, name):
  tm, m, _ = pair(name)
  R.check_greedy_and_head_norms(tm, m)


def test_padded_logits(pair):
  tm, m, _ = pair("gpt_neox")
  R.check_padded_logits(tm, m)


def test_cached_decoding_equals_uncached_forward(pair):
  R.check_cached_equals_uncached(pair("gpt_neox")[1])


def test_left_padded_batch_equals_each_prompt_alone(pair):
  R.check_left_padding(pair("gpt_neox_seq")[1])


def test_interleaved_qkv_matches_torch_heads(pair):
  """Our q/k/v leaves == torch's query_key_value output viewed (N, 3K) and chunked."""
  import torch
  tm, m, _ = pair("gpt_neox")
  x = np.random.RandomState(5).randn(3, 64).astype(np.float32)
  with torch.no_grad():
    out = tm.gpt_neox.layers[1].attention.query_key_value(torch.tensor(x)).numpy()
  out = out.reshape(3, 4, 48)  # (S, N, 3K)
  p = m.params["layers"]["attn"]
  for j, name in enumerate("qkv"):
    ours = np.einsum("sd,dnk->snk", x, np.asarray(p[name][1])) + np.asarray(p[name + "_bias"][1])
    np.testing.assert_allclose(ours, out[..., 16 * j:16 * (j + 1)], atol=1e-5)


def test_save_load_roundtrip_and_transformers_reads_it(pair, tmp_path):
  tm, m, _ = pair("gpt_neox")
  ids = np.random.RandomState(1).randint(3, R.VOCAB, size=(1, 9))
  assert_transformers_roundtrip(tm, m, tmp_path, ids, atol=1e-6)


def test_old_pythia_buffers_are_ignored(pair, tmp_path):
  from safetensors.numpy import load_file, save_file
  _, m, d = pair("gpt_neox")
  tensors = load_file(str(d / "model.safetensors"))
  for i in range(2):
    tensors[f"gpt_neox.layers.{i}.attention.bias"] = np.ones((1, 1, 8, 8), bool)
    tensors[f"gpt_neox.layers.{i}.attention.masked_bias"] = np.array(-1e9, np.float32)
    tensors[f"gpt_neox.layers.{i}.attention.rotary_emb.inv_freq"] = np.ones(4, np.float32)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((d / "config.json").read_text())
  jax.tree_util.tree_map(np.testing.assert_array_equal, m.params, M.load(tmp_path).params)


# EleutherAI/pythia-1b config.json (as published).
PYTHIA_1B = {
    "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
    "hidden_act": "gelu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 8192, "layer_norm_eps": 1e-05, "max_position_embeddings": 2048,
    "model_type": "gpt_neox", "num_attention_heads": 8, "num_hidden_layers": 16,
    "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False,
    "torch_dtype": "float16", "transformers_version": "4.24.0", "use_cache": True,
    "use_parallel_residual": True, "vocab_size": 50304}


def test_pythia_1b_shapes_with_eval_shape():
  cfg = R.check_eval_shape(PYTHIA_1B, {
      "gpt_neox.layers.15.attention.query_key_value.weight": (6144, 2048),
      "gpt_neox.layers.15.attention.query_key_value.bias": (6144,),
      "gpt_neox.layers.0.attention.dense.weight": (2048, 2048),
      "gpt_neox.layers.3.mlp.dense_h_to_4h.weight": (8192, 2048),
      "gpt_neox.embed_in.weight": (50304, 2048),
      "embed_out.weight": (50304, 2048)}, n_params=1_011_781_632)
  assert (cfg.num_layers, cfg.num_heads, cfg.head_dim) == (16, 8, 256)
  assert cfg.option("rotary_pct") == 0.25
  from synergy_jax.models import gpt_neox
  assert gpt_neox.rope_tables(cfg)["default"].shape == (32,)  # 64 rotary dims of 256


@pytest.mark.parametrize("change,key", [
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "yarn"),
    ({"rotary_pct": 0.0}, "rotary_pct"),
    ({"hidden_act": "mish"}, "hidden_act"),
    ({"use_cache_quant": True}, "use_cache_quant"),
])
def test_unimplemented_config_values_are_named(change, key):
  with pytest.raises(ValueError, match=key):
    M.ModelConfig.from_hf(dict(PYTHIA_1B, **change))
