"""Llama-family models (llama, mistral, qwen2, qwen3) against tiny random transformers models."""
import json
import os

import jax
import numpy as np
import pytest

from synergy_jax import models as M
from models_torch_refs import assert_transformers_roundtrip, pair_factory, VOCAB, build, torch_logits

TYPES = ("llama", "mistral", "qwen2", "qwen3")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """name -> (torch model, our loaded Model, directory)."""
  return pair_factory(build, tmp_path_factory)


def _ids(b, s, seed=0):
  return np.random.RandomState(seed).randint(3, VOCAB, size=(b, s))


@pytest.mark.parametrize("model_type", TYPES + ("qwen2_sliding",))
def test_logits_match_transformers(pair, model_type):
  tm, m, _ = pair(model_type)
  ids = _ids(2, 21)  # longer than mistral's window of 6
  ref = torch_logits(tm, ids)
  out = np.asarray(M.forward(m, ids))
  assert out.shape == ref.shape == (2, 21, VOCAB)
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
  # a non-trivial model: logits vary well beyond the tolerance
  assert ref.std() > 0.1


def test_config_fields(pair):
  _, m, _ = pair("llama")
  c = m.config
  assert (c.family, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, c.vocab_size) == (
      "llama", 3, 4, 2, 16, VOCAB)
  assert c.rope_type == "llama3"
  _, m, _ = pair("mistral")
  assert m.config.layer_windows == (6, 6)
  _, m, _ = pair("qwen2_sliding")
  assert m.config.layer_windows == (0, 4, 4)
  _, m, _ = pair("qwen3")
  assert m.config.qk_norm and m.config.tie_word_embeddings and m.config.num_kv_heads == 1


def test_padded_logits_match_transformers_with_positions(pair):
  """Left padding: our positions count real tokens only; torch gets the same position_ids."""
  tm, m, _ = pair("qwen2")
  ids = _ids(2, 12, seed=1)
  mask = np.ones_like(ids)
  mask[0, :4] = 0
  pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
  ref = torch_logits(tm, ids, attention_mask=mask, position_ids=pos)
  out = np.asarray(M.forward(m, ids, mask))
  np.testing.assert_allclose(out[0, 4:], ref[0, 4:], atol=1e-4, rtol=0)
  np.testing.assert_allclose(out[1], ref[1], atol=1e-4, rtol=0)
  # and a padded row equals the same prompt alone
  alone = np.asarray(M.forward(m, ids[:1, 4:]))
  np.testing.assert_allclose(out[0, 4:], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("model_type", ["llama", "qwen3"])
def test_save_load_roundtrip_and_transformers_reads_it(pair, model_type, tmp_path):
  tm, m, _ = pair(model_type)
  assert_transformers_roundtrip(tm, m, tmp_path, _ids(1, 9), atol=1e-6)
  assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]


def test_to_hf_roundtrip(pair):
  for t in TYPES + ("qwen2_sliding",):
    c = pair(t)[1].config
    assert M.ModelConfig.from_hf(c.to_hf()) == c


def test_init_matches_hf_statistics_and_loads_in_transformers(tmp_path):
  cfg = M.ModelConfig(family="llama", model_type="llama", vocab_size=300, hidden_size=64,
                      intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                      head_dim=16, initializer_range=0.05)
  m = M.init(cfg, seed=3)
  p = m.params
  assert p["layers"]["attn"]["q"].shape == (2, 64, 4, 16) and p["layers"]["attn"]["o"].shape == (2, 4, 16, 64)
  assert abs(float(np.std(p["embed"])) - 0.05) < 0.003
  np.testing.assert_array_equal(p["layers"]["attn_norm"]["weight"], 1.0)
  assert not np.array_equal(M.init(cfg, seed=4).params["embed"], p["embed"])
  M.save(m, tmp_path)
  import transformers
  tm = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, attn_implementation="eager")
  ids = _ids(2, 7)
  np.testing.assert_allclose(np.asarray(M.forward(m, ids)), torch_logits(tm, ids), atol=1e-5)


def test_logits_fn_is_pure_and_differentiable(pair):
  _, m, _ = pair("llama")
  f = M.logits_fn(m.config)
  ids = _ids(2, 8)

  def loss(params):
    logits = f(params, ids[:, :-1])
    logp = jax.nn.log_softmax(logits)
    return -np.take_along_axis(logp, ids[:, 1:, None], -1).mean()

  val, grads = jax.jit(jax.value_and_grad(loss))(m.params)
  assert np.isfinite(val)
  assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(m.params)
  g = float(np.abs(grads["layers"]["attn"]["q"]).sum())
  assert g > 0 and np.isfinite(g)
  np.testing.assert_allclose(np.asarray(jax.jit(f)(m.params, ids)),
                             np.asarray(M.forward(m, ids)), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------

def _write_cfg(d, **changes):
  hf = build("llama").config.to_dict()
  hf.update(changes)
  os.makedirs(d, exist_ok=True)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(hf, f)
  return hf


def test_unknown_model_type_is_named(tmp_path):
  _write_cfg(tmp_path, model_type="mamba_x")
  with pytest.raises(ValueError, match="mamba_x"):
    M.load(tmp_path)


def test_unknown_rope_type_and_unknown_field_are_named():
  hf = build("llama").config.to_dict()
  bad = dict(hf, rope_parameters={"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4})
  with pytest.raises(ValueError, match="yarn"):
    M.ModelConfig.from_hf(bad)
  with pytest.raises(ValueError, match="quantization_config"):
    M.ModelConfig.from_hf(dict(hf, quantization_config={"bits": 4}))
  with pytest.raises(ValueError, match="hidden_act"):
    M.ModelConfig.from_hf(dict(hf, hidden_act="mish"))


def test_directory_without_weights_is_named(tmp_path):
  _write_cfg(tmp_path)
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    M.load(tmp_path)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    M.load(tmp_path / "nope")


def test_wrong_shape_missing_and_unexpected_are_named(pair, tmp_path):
  from safetensors.numpy import load_file, save_file
  _, _, d = pair("llama")
  tensors = load_file(os.path.join(d, "model.safetensors"))
  with open(os.path.join(d, "config.json")) as f:
    hf = json.load(f)

  def write(ts, sub):
    p = tmp_path / sub
    p.mkdir()
    with open(p / "config.json", "w") as f:
      json.dump(hf, f)
    save_file(ts, str(p / "model.safetensors"))
    return p

  key = "model.layers.1.self_attn.k_proj.weight"
  bad = dict(tensors, **{key: np.zeros((16, 64), np.float32)})
  with pytest.raises(ValueError, match=r"k_proj.weight.*\(16, 64\).*\(32, 64\)"):
    M.load(write(bad, "shape"))
  missing = {k: v for k, v in tensors.items() if k != key}
  extra = dict(tensors, **{"model.layers.0.extra.weight": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="k_proj"):
    M.load(write(missing, "missing"))
  with pytest.raises(ValueError, match="extra.weight"):
    M.load(write(extra, "extra"))


def test_sharded_index_loads(pair, tmp_path):
  from safetensors.numpy import load_file, save_file
  tm, m, d = pair("mistral")
  tensors = load_file(os.path.join(d, "model.safetensors"))
  names = sorted(tensors)
  half = len(names) // 2
  parts = {"model-00001-of-00002.safetensors": names[:half],
           "model-00002-of-00002.safetensors": names[half:]}
  for fname, ns in parts.items():
    save_file({n: tensors[n] for n in ns}, str(tmp_path / fname))
  index = {"metadata": {}, "weight_map": {n: f for f, ns in parts.items() for n in ns}}
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
  (tmp_path / "config.json").write_text((d / "config.json").read_text())
  m2 = M.load(tmp_path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, m.params, m2.params)


def test_default_missing_is_clear():
  from synergy_jax.models import hub
  if (hub.DEFAULT_DIR / "config.json").exists():
    m = M.load("default")
    assert m.config.num_layers > 0
  else:
    with pytest.raises(FileNotFoundError, match="shipped default model is missing"):
      M.load("default")


def test_uncached_hub_id_offline_is_named(tmp_path, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="someone/not-a-model.*not in the local Hugging Face cache"):
    M.load("someone/not-a-model")


# ----------------------------------------------------------------------------------------------
# Full-size shapes without memory
# ----------------------------------------------------------------------------------------------

LLAMA3_8B = {  # from meta-llama/Meta-Llama-3-8B config.json
    "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
    "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False,
    "bos_token_id": 128000, "eos_token_id": 128001, "torch_dtype": "bfloat16",
    "architectures": ["LlamaForCausalLM"], "initializer_range": 0.02, "mlp_bias": False,
    "pretraining_tp": 1, "rope_scaling": None, "attention_dropout": 0.0, "use_cache": True}
QWEN3_8B = {  # from Qwen/Qwen3-8B config.json
    "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288,
    "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
    "max_position_embeddings": 40960, "hidden_act": "silu", "tie_word_embeddings": False,
    "attention_bias": False, "use_sliding_window": False, "sliding_window": None,
    "max_window_layers": 36, "bos_token_id": 151643, "eos_token_id": 151645,
    "torch_dtype": "bfloat16", "architectures": ["Qwen3ForCausalLM"], "rope_scaling": None,
    "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True}


@pytest.mark.parametrize("hf,expected", [
    (LLAMA3_8B, {"model.layers.31.self_attn.k_proj.weight": (1024, 4096),
                 "model.layers.0.mlp.down_proj.weight": (4096, 14336),
                 "lm_head.weight": (128256, 4096)}),
    (QWEN3_8B, {"model.layers.35.self_attn.q_proj.weight": (4096, 4096),
                "model.layers.35.self_attn.q_norm.weight": (128,),
                "model.embed_tokens.weight": (151936, 4096)}),
])
def test_full_size_shapes_with_eval_shape(hf, expected):
  from synergy_jax.models import convert
  cfg = M.ModelConfig.from_hf(hf)
  shapes = convert.hf_shapes(cfg)
  for k, v in expected.items():
    assert shapes[k] == v
  abstract = {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in shapes.items()}
  converted = jax.eval_shape(lambda t: convert.params_from_hf(t, cfg), abstract)
  template = M.param_shapes(cfg)
  assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(template)
  jax.tree_util.tree_map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail(
      f"{a} != {b}"), converted, template)
  n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(template))
  assert 7.5e9 < n < 8.5e9 + 0.3e9
  assert template["layers"]["attn"]["q"].shape == (cfg.num_layers, 4096, 32, 128)


def test_remat_gives_the_same_gradients(pair):
  _, m, _ = pair("qwen2")
  ids = _ids(2, 9)

  def loss(f):
    return lambda p: (f(p, ids) ** 2).mean()

  g0 = jax.grad(loss(M.logits_fn(m.config)))(m.params)
  g1 = jax.grad(loss(M.logits_fn(m.config, remat=True)))(m.params)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                         g0, g1)


def test_no_torch_import_in_package():
  import pathlib
  root = pathlib.Path(M.__file__).resolve().parents[1]
  offenders = [str(p) for p in root.rglob("*.py")
               if any(line.strip().startswith(("import torch", "from torch"))
                      for line in p.read_text().splitlines())]
  assert offenders == []


SMOLLM_135M = {  # HuggingFaceTB/SmolLM-135M config.json (as published)
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "silu", "hidden_size": 576,
    "initializer_range": 0.02, "intermediate_size": 1536, "is_llama_config": True,
    "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 9,
    "num_hidden_layers": 30, "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_interleaved": False, "rope_scaling": None, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "torch_dtype": "float32", "transformers_version": "4.40.1",
    "use_cache": True, "vocab_size": 49152}


def test_published_smollm_config_reads_and_interleaved_rope_is_refused():
  cfg = M.ModelConfig.from_hf(SMOLLM_135M)
  assert (cfg.num_layers, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim) == (30, 9, 3, 64)
  with pytest.raises(ValueError, match="rope_interleaved"):
    M.ModelConfig.from_hf(dict(SMOLLM_135M, rope_interleaved=True))
