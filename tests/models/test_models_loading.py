"""Model loading validates what it reads (issue 14): every bad file, tensor or config value is an
error naming its culprit; float64 checkpoints are cast explicitly; x64 runs generate."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from synergy_jax import models as M
from synergy_jax.models import hub

EMB = "model.embed_tokens.weight"
Q1 = "model.layers.1.self_attn.q_proj.weight"


@pytest.fixture
def model_dir(tmp_path):
  """A copy of the shipped default model (config, weights, tokenizer) to damage."""
  d = tmp_path / "m"
  shutil.copytree(hub.DEFAULT_DIR, d, ignore=shutil.ignore_patterns("checkpoints", "*.md"))
  return d


def _edit_tensors(d, **changes):
  path = d / "model.safetensors"
  t = load_file(str(path))
  for name, fn in changes.items():
    t[name.replace("__", ".")] = fn(t[name.replace("__", ".")])
  save_file(t, str(path))


def _edit_config(d, **changes):
  cfg = json.loads((d / "config.json").read_text())
  for k, v in changes.items():
    if v is None:
      cfg.pop(k)
    else:
      cfg[k] = v
  (d / "config.json").write_text(json.dumps(cfg))


def _set(x, idx, value):
  x = x.copy()
  x[idx] = value
  return x


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weight_names_tensor_and_index(model_dir, value):
  _edit_tensors(model_dir, **{Q1.replace(".", "__"): lambda x: _set(x, (5, 3), value)})
  with pytest.raises(ValueError, match=rf"{Q1}.*non-finite value {value} at index \(5, 3\)"):
    M.load(model_dir)


def test_integer_tensor_is_refused_float64_is_cast(model_dir):
  ref = M.load(model_dir)
  _edit_tensors(model_dir, **{EMB.replace(".", "__"): lambda x: x.astype(np.float64)})
  m = M.load(model_dir)  # documented explicit cast to the compute dtype
  assert m.params["embed"].dtype == np.float32
  np.testing.assert_array_equal(np.asarray(m.params["embed"]), np.asarray(ref.params["embed"]))
  _edit_tensors(model_dir, **{EMB.replace(".", "__"): lambda x: _set(x, (7, 1), 1e300)})
  with pytest.raises(ValueError, match=rf"{EMB}.*index \(7, 1\) overflows.*float32"):
    M.load(model_dir)
  _edit_tensors(model_dir, **{EMB.replace(".", "__"): lambda x: np.zeros(x.shape, np.int32)})
  with pytest.raises(ValueError, match=rf"{EMB}.*dtype int32"):
    M.load(model_dir)


def test_bfloat16_overflow_is_named(model_dir):
  _edit_tensors(model_dir, **{EMB.replace(".", "__"): lambda x: _set(x, (2, 2), 3.4e38)})
  M.load(model_dir)  # representable in float32
  with pytest.raises(ValueError, match=rf"{EMB}.*index \(2, 2\) overflows.*bfloat16"):
    M.load(model_dir, dtype="bfloat16")


@pytest.mark.parametrize("key,value,field", [
    ("rope_parameters", {"rope_theta": 0.0, "rope_type": "default"}, "rope_theta"),
    ("rms_norm_eps", -1e-5, "norm_eps"),
    ("rms_norm_eps", 0.0, "norm_eps"),
    ("hidden_size", 0, "hidden_size"),
    ("num_attention_heads", -8, "num_heads"),
    ("max_position_embeddings", 0, "max_position_embeddings"),
])
def test_config_values_out_of_range_name_file_and_field(model_dir, key, value, field):
  _edit_config(model_dir, **{key: value})
  with pytest.raises(ValueError, match=rf"config.json: .*ModelConfig.{field}"):
    M.load(model_dir)


def test_config_file_errors_name_file_and_key(model_dir):
  good = (model_dir / "config.json").read_text()
  _edit_config(model_dir, num_hidden_layers=None)
  with pytest.raises(ValueError, match=r"config.json: required config key 'num_hidden_layers'"):
    M.load_config(model_dir)
  hf = json.loads((model_dir / "config.json").read_text())
  with pytest.raises(ValueError, match=r"^required config key 'num_hidden_layers' is missing"):
    M.ModelConfig.from_hf(hf)
  (model_dir / "config.json").write_text(good[:40])
  with pytest.raises(ValueError, match=r"config.json: model config is malformed JSON \(line"):
    M.load(model_dir)
  (model_dir / "config.json").write_text("[1, 2]")
  with pytest.raises(ValueError, match=r"config.json: model config must be a JSON object"):
    M.load(model_dir)
  os.remove(model_dir / "config.json")
  with pytest.raises(FileNotFoundError, match=r"config.json does not exist"):
    M.load(model_dir)


def test_safetensors_and_index_errors_name_the_file(model_dir):
  path = model_dir / "model.safetensors"
  data = path.read_bytes()
  path.write_bytes(data[:len(data) // 2])  # truncated: header intact, data cut
  with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
    M.load(model_dir)
  path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json header}")
  with pytest.raises(ValueError, match=r"model.safetensors: not a readable safetensors file"):
    M.load(model_dir)
  path.write_bytes(data)
  index = model_dir / "model.safetensors.index.json"
  index.write_text('{"weight_map": {')
  with pytest.raises(ValueError, match=r"index.json: safetensors index is malformed JSON"):
    M.load(model_dir)
  index.write_text('{"metadata": {}}')
  with pytest.raises(ValueError, match=r"index.json: key 'weight_map'"):
    M.load(model_dir)
  index.write_text(json.dumps({"weight_map": {EMB: "model-00001.safetensors"}}))
  with pytest.raises(FileNotFoundError, match=r"absent: \['model-00001.safetensors'\]"):
    M.load(model_dir)


def test_tokenizer_errors_name_the_directory(model_dir):
  assert M.load_tokenizer(model_dir)("ab")["input_ids"]
  tok = model_dir / "tokenizer.json"
  good = tok.read_text()
  tok.write_text(good[:100])
  with pytest.raises(ValueError, match=r"tokenizer.json: tokenizer is malformed JSON"):
    M.load_tokenizer(model_dir)
  tok.write_text(json.dumps({"model": {"type": "NoSuchModel"}}))
  with pytest.raises(ValueError, match=rf"{model_dir}: the tokenizer \(tokenizer.json\) cannot"):
    M.load_tokenizer(model_dir)
  os.remove(tok)
  with pytest.raises(FileNotFoundError, match=rf"{model_dir}: no tokenizer files"):
    M.load_tokenizer(model_dir)


def test_generation_works_under_x64():
  """A fresh process with JAX_ENABLE_X64=1 generates and scores the default model end to end,
  with the same greedy tokens and head norms as float32 JAX here."""
  ids = [[1, 17, 33, 48], [1, 5]]
  ref = M.generate(M.load("default"), ids, max_new_tokens=6)
  code = ("import json, numpy as np, jax; from synergy_jax import models as M\n"
          "assert jax.config.jax_enable_x64\n"
          "m = M.load('default')\n"
          f"r = M.generate(m, {ids}, max_new_tokens=6)\n"
          "s = M.score(m, r.sequences, r.prompt_lengths)\n"
          "assert np.all(np.isfinite(np.asarray(s.token_logprobs)))\n"
          "print(json.dumps({'tokens': np.asarray(r.tokens).tolist(),"
          " 'norms': np.asarray(r.head_norms, np.float64).tolist()}))\n")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(M.__file__))))
  env = {**os.environ, "JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu",
         "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
  env.pop("XLA_FLAGS", None)
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=root)
  assert out.returncode == 0, out.stderr[-3000:]
  got = json.loads(out.stdout.strip().splitlines()[-1])
  np.testing.assert_array_equal(np.array(got["tokens"]), np.asarray(ref.tokens))
  np.testing.assert_allclose(np.array(got["norms"]), np.asarray(ref.head_norms), rtol=1e-5)


def test_torn_save_is_named_on_load(tmp_path):
  """models.save writes the weights, then a config recording their SHA-256: a directory whose
  weights come from another save (as a kill between the two writes would leave) fails to load,
  naming both files; an intact save loads with the same logits."""
  import jax.numpy as jnp
  cfg = M.load_config("default")
  a, b = M.init(cfg, 0), M.init(cfg, 1)
  M.save(a, tmp_path / "a")
  M.save(b, tmp_path / "b")
  ids = jnp.array([[1, 5, 9]])
  np.testing.assert_array_equal(np.asarray(M.load(tmp_path / "a")(ids).logits),
                                np.asarray(a(ids).logits))
  (tmp_path / "a" / "model.safetensors").write_bytes(
      (tmp_path / "b" / "model.safetensors").read_bytes())
  with pytest.raises(ValueError, match=r"model\.safetensors does not match .*config\.json"):
    M.load(tmp_path / "a")
