"""Gemma 1/2/3 (synergy_jax.models.gemma) against tiny random transformers models: (1 + w)
RMSNorm, sqrt(D) embedding scale, MQA/GQA, head_dim != D / N, soft-capping, alternating
sliding-window layers (sequences are longer than the windows), q/k norms, local/global rope
bases with linear scaling, and the text tower of multimodal Gemma 3 checkpoints."""

import jax
import numpy as np
import pytest

from synergy_jax import models as M
from synergy_jax.models import convert, gemma
import families_torch_refs as R
from models_torch_refs import assert_transformers_roundtrip, pair_factory

VARIANTS = ("gemma", "gemma2", "gemma3_text", "gemma3")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """name -> (torch model, our loaded Model, directory)."""
  return pair_factory(R.build, tmp_path_factory)


def test_configs(pair):
  c = pair("gemma")[1].config
  assert (c.family, c.model_type, c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_size) == (
      "gemma", "gemma", 4, 1, 24, 64)
  assert c.hidden_act == "gelu_tanh" and c.layer_windows == (0, 0)
  c = pair("gemma2")[1].config
  assert c.layer_windows == (6, 0, 6)
  assert (c.option("attn_softcap"), c.option("final_softcap"),
          c.option("query_pre_attn_scalar")) == (2.0, 3.0, 24)
  c = pair("gemma3_text")[1].config
  assert c.layer_windows == (5, 5, 0, 5) and c.qk_norm
  assert (c.rope_theta, c.rope_type, c.rope, c.option("local_rope_theta")) == (
      5000.0, "linear", {"factor": 4.0}, 100.0)
  c = pair("gemma3")[1].config
  assert c.model_type == "gemma3" and c.layer_windows == (5, 0, 5) and c.num_kv_heads == 1
  for name in VARIANTS:
    cfg = pair(name)[1].config
    assert M.ModelConfig.from_hf(cfg.to_hf()) == cfg


@pytest.mark.parametrize("name", VARIANTS)
def test_logits_match_transformers(pair, name):
  tm, m, _ = pair(name)
  ids = np.random.RandomState(0).randint(3, R.VOCAB - 3, size=(2, 19))  # > every window
  ref = R.torch_logits(tm, ids)
  out = np.asarray(M.forward(m, ids))
  assert out.shape == ref.shape == (2, 19, R.VOCAB)
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
  assert ref.std() > 0.1


def _with_options(m, **changes):
  return m.replace(config=m.config.replace(options=tuple(sorted(
      dict(m.config.options, **changes).items()))))


def test_windows_softcaps_and_local_rope_each_matter(pair):
  """Each Gemma-specific setting changes the logits on these inputs, so the parity above
  exercises it (turning it off moves the logits away from transformers')."""
  ids = np.random.RandomState(0).randint(3, R.VOCAB - 3, size=(1, 19))
  tm, m, _ = pair("gemma2")
  ref = R.torch_logits(tm, ids)
  # final soft-capping at 3: transformers' logits sit in the saturated part of 3 tanh(x / 3)
  assert 2.5 < np.abs(ref).max() < 3.0
  changed = [m.replace(config=m.config.replace(layer_windows=(0, 0, 0))),
             _with_options(m, attn_softcap=None)]
  tm3, m3, _ = pair("gemma3_text")
  ref3 = R.torch_logits(tm3, ids)
  for mm, r in [(x, ref) for x in changed] + [
      (_with_options(m3, local_rope_theta=5000.0), ref3),
      (m3.replace(config=m3.config.replace(rope_type="default", rope_scaling=None)), ref3)]:
    assert np.abs(np.asarray(M.forward(mm, ids)) - r).max() > 1e-2


@pytest.mark.parametrize("name", VARIANTS)
def test_greedy_generate_and_head_norms_match_transformers(pair, name):
  tm, m, _ = pair(name)
  R.check_greedy_and_head_norms(tm, m)


def test_cached_decoding_equals_uncached_forward(pair):
  R.check_cached_equals_uncached(pair("gemma3_text")[1])


def test_left_padded_batch_equals_each_prompt_alone(pair):
  R.check_left_padding(pair("gemma3_text")[1])


def test_padded_logits(pair):
  tm, m, _ = pair("gemma2")
  R.check_padded_logits(tm, m)


@pytest.mark.parametrize("name", ["gemma", "gemma3_text"])
def test_save_load_roundtrip_and_transformers_reads_it(pair, name, tmp_path):
  tm, m, _ = pair(name)
  ids = np.random.RandomState(1).randint(3, R.VOCAB - 3, size=(1, 12))
  assert_transformers_roundtrip(tm, m, tmp_path, ids, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Multimodal gemma3 checkpoints: only the text tower is read
# ----------------------------------------------------------------------------------------------

def _rewrite(d, tmp_path, edit):
  from safetensors.numpy import load_file, save_file
  tensors = edit(load_file(str(d / "model.safetensors")))
  tmp_path.mkdir(exist_ok=True)
  save_file(tensors, str(tmp_path / "model.safetensors"))
  (tmp_path / "config.json").write_text((d / "config.json").read_text())
  return tmp_path


def test_gemma3_multimodal_keys(pair, tmp_path):
  from safetensors import safe_open
  _, m, d = pair("gemma3")
  with safe_open(str(d / "model.safetensors"), "numpy") as f:
    stored = set(f.keys())
  vision = sorted(k for k in stored if not k.startswith("language_model."))
  assert vision and all(k.startswith(gemma.IGNORED_PREFIXES) for k in vision)
  assert "language_model.model.layers.2.self_attn.q_norm.weight" in stored
  assert set(convert.hf_shapes(m.config)) == stored - set(vision)
  # the in-memory layout of newer transformers ("model.language_model.") loads the same params
  moved = _rewrite(d, tmp_path / "moved", lambda t: {
      ("model.language_model." + k[len("language_model.model."):]
       if k.startswith("language_model.model.") else "model." + k): v for k, v in t.items()})
  jax.tree_util.tree_map(np.testing.assert_array_equal, m.params, M.load(moved).params)
  # anything that is neither text tower nor an ignored vision tensor is an error naming it
  extra = _rewrite(d, tmp_path / "extra", lambda t: dict(
      t, **{"audio_tower.layer.weight": np.zeros(2, np.float32)}))
  with pytest.raises(ValueError, match="audio_tower.layer.weight"):
    M.load(extra)
  missing = _rewrite(d, tmp_path / "missing", lambda t: {
      k: v for k, v in t.items() if k != "language_model.model.layers.1.mlp.up_proj.weight"})
  with pytest.raises(ValueError, match="language_model.model.layers.1.mlp.up_proj.weight"):
    M.load(missing)


# ----------------------------------------------------------------------------------------------
# Published full-size configs
# ----------------------------------------------------------------------------------------------

GEMMA_2B = {  # google/gemma-2b config.json
    "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 2, "eos_token_id": 1, "head_dim": 256, "hidden_act": "gelu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 16384,
    "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
    "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0, "rms_norm_eps": 1e-06,
    "rope_scaling": None, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
    "transformers_version": "4.38.0.dev0", "use_cache": True, "vocab_size": 256000}
GEMMA2_2B = {  # google/gemma-2-2b config.json
    "architectures": ["Gemma2ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "attn_logit_softcapping": 50.0, "bos_token_id": 2, "cache_implementation": "hybrid",
    "eos_token_id": 1, "final_logit_softcapping": 30.0, "head_dim": 256,
    "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh",
    "hidden_size": 2304, "initializer_range": 0.02, "intermediate_size": 9216,
    "max_position_embeddings": 8192, "model_type": "gemma2", "num_attention_heads": 8,
    "num_hidden_layers": 26, "num_key_value_heads": 4, "pad_token_id": 0,
    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_theta": 10000.0,
    "sliding_window": 4096, "torch_dtype": "float32", "transformers_version": "4.42.4",
    "use_cache": True, "vocab_size": 256000}
GEMMA3_1B = {  # google/gemma-3-1b-it config.json
    "architectures": ["Gemma3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "attn_logit_softcapping": None, "bos_token_id": 2, "cache_implementation": "hybrid",
    "eos_token_id": [1, 106], "final_logit_softcapping": None, "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 1152, "initializer_range": 0.02,
    "intermediate_size": 6912, "max_position_embeddings": 32768, "model_type": "gemma3_text",
    "num_attention_heads": 4, "num_hidden_layers": 26, "num_key_value_heads": 1,
    "pad_token_id": 0, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
    "rope_local_base_freq": 10000, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": 512, "sliding_window_pattern": 6, "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0", "use_cache": True, "vocab_size": 262144}
GEMMA3_4B = {  # google/gemma-3-4b-it config.json (text_config gives only non-default values)
    "architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
    "eoi_token_index": 256000, "eos_token_id": [1, 106], "image_token_index": 262144,
    "initializer_range": 0.02, "mm_tokens_per_image": 256, "model_type": "gemma3",
    "text_config": {"hidden_size": 2560, "intermediate_size": 10240,
                    "model_type": "gemma3_text", "num_hidden_layers": 34,
                    "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                    "sliding_window": 1024},
    "torch_dtype": "bfloat16", "transformers_version": "4.50.0.dev0",
    "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16,
                      "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}}


def test_gemma_2b_shapes_with_eval_shape():
  cfg = R.check_eval_shape(GEMMA_2B, {
      "model.layers.17.self_attn.q_proj.weight": (2048, 2048),
      "model.layers.17.self_attn.k_proj.weight": (256, 2048),
      "model.layers.0.mlp.gate_proj.weight": (16384, 2048),
      "model.embed_tokens.weight": (256000, 2048)}, n_params=2_506_172_416)
  assert cfg.hidden_act == "gelu_tanh"  # legacy "gelu" means the tanh approximation


def test_gemma2_2b_shapes_with_eval_shape():
  cfg = R.check_eval_shape(GEMMA2_2B, {
      "model.layers.25.self_attn.q_proj.weight": (2048, 2304),
      "model.layers.25.self_attn.k_proj.weight": (1024, 2304),
      "model.layers.25.pre_feedforward_layernorm.weight": (2304,),
      "model.embed_tokens.weight": (256000, 2304)}, n_params=2_614_341_888)
  assert cfg.layer_windows[:4] == (4096, 0, 4096, 0)
  assert (cfg.option("attn_softcap"), cfg.option("final_softcap")) == (50.0, 30.0)


def test_gemma3_1b_shapes_with_eval_shape():
  cfg = R.check_eval_shape(GEMMA3_1B, {
      "model.layers.25.self_attn.q_proj.weight": (1024, 1152),
      "model.layers.25.self_attn.k_proj.weight": (256, 1152),
      "model.layers.0.self_attn.q_norm.weight": (256,),
      "model.embed_tokens.weight": (262144, 1152)}, n_params=999_885_952)
  assert cfg.layer_windows[:6] == (512,) * 5 + (0,) and cfg.eos_token_ids == (1, 106)
  assert (cfg.rope_theta, cfg.option("local_rope_theta"), cfg.rope_type) == (
      1e6, 1e4, "default")


def test_gemma3_4b_text_tower_shapes_with_eval_shape():
  # 3,880,263,168 = 262208*2560 + 34*(2*2560*2048 + 2*2560*1024 + 3*2560*10240 + 4*2560
  #                 + 2*256) + 2560: the language model's share of the 4.3B published total.
  cfg = R.check_eval_shape(GEMMA3_4B, {
      "language_model.model.layers.33.self_attn.q_proj.weight": (2048, 2560),
      "language_model.model.layers.33.self_attn.k_proj.weight": (1024, 2560),
      "language_model.model.layers.0.mlp.down_proj.weight": (2560, 10240),
      "language_model.model.embed_tokens.weight": (262208, 2560)}, n_params=3_880_263_168)
  assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (34, 8, 4, 256)
  assert cfg.rope_type == "linear" and cfg.rope == {"factor": 8.0}
  assert cfg.layer_windows[:6] == (1024,) * 5 + (0,) and cfg.eos_token_ids == (1, 106)


@pytest.mark.parametrize("hf,change,key", [
    (GEMMA2_2B, {"attention_bias": True}, "attention_bias"),
    (GEMMA2_2B, {"hidden_activation": "mish"}, "hidden_activation"),
    (GEMMA2_2B, {"layer_types": ["chunked_attention"] * 26}, "chunked_attention"),
    (GEMMA3_1B, {"use_bidirectional_attention": True}, "use_bidirectional_attention"),
    (GEMMA3_1B, {"rope_scaling": {"rope_type": "yarn", "factor": 8.0}}, "yarn"),
    (GEMMA3_1B, {"altup_num_inputs": 4}, "altup_num_inputs"),
    (GEMMA_2B, {"attention_dropout": 0.1}, "attention_dropout"),
    (GEMMA3_4B, {"text_config": {"model_type": "gemma3n_text"}}, "text_config.model_type"),
    (GEMMA3_4B, {"audio_config": {}}, "audio_config"),
    (GEMMA3_4B, {"text_config": dict(GEMMA3_4B["text_config"], final_logit_softcapping=-1.0)},
     "final_logit_softcapping"),
])
def test_unimplemented_config_values_are_named(hf, change, key):
  with pytest.raises(ValueError, match=key):
    M.ModelConfig.from_hf(dict(hf, **change))
