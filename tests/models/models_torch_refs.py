"""Tiny random Hugging Face (PyTorch) models used as independent references in model tests."""
import numpy as np
import torch
import transformers

VOCAB = 61

# One tiny config per model_type, covering GQA/MQA, llama3 rope scaling, biases, sliding windows
# (sequences in the tests are longer than the window) and q/k norms.
CONFIGS = {
    "llama": lambda: transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
        attention_bias=True, mlp_bias=True, rope_theta=500.0, max_position_embeddings=64,
        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        bos_token_id=1, eos_token_id=2),
    "mistral": lambda: transformers.MistralConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=6,
        max_position_embeddings=128, bos_token_id=1, eos_token_id=2),
    "qwen2": lambda: transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2),
    # qwen2 with sliding-window attention on the layers from max_window_layers on
    "qwen2_sliding": lambda: transformers.Qwen2Config(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
        num_attention_heads=6, num_key_value_heads=3, max_position_embeddings=128,
        use_sliding_window=True, sliding_window=4, max_window_layers=1,
        bos_token_id=1, eos_token_id=2),
    "qwen3": lambda: transformers.Qwen3Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=128,
        tie_word_embeddings=True, bos_token_id=1, eos_token_id=2),
}

CLASSES = {"llama": transformers.LlamaForCausalLM, "mistral": transformers.MistralForCausalLM,
           "qwen2": transformers.Qwen2ForCausalLM, "qwen2_sliding": transformers.Qwen2ForCausalLM, "qwen3": transformers.Qwen3ForCausalLM}


def build(model_type: str, seed: int = 0):
  """A random eager-attention HF model whose weights are large enough to matter (std 0.15) and
  whose norm weights are random (1 + N(0, 0.2)), in float32 eval mode."""
  torch.manual_seed(seed)
  cfg = CONFIGS[model_type]()
  cfg._attn_implementation = "eager"
  model = CLASSES[model_type](cfg).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name:
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif name.endswith("bias"):
        p.copy_(0.1 * torch.randn_like(p))
      else:
        p.copy_(0.15 * torch.randn_like(p))
  return model


def torch_logits(model, ids, attention_mask=None, position_ids=None):
  """(B, S, V) float32 logits of a transformers model."""
  kw = {}
  if attention_mask is not None:
    kw["attention_mask"] = torch.as_tensor(np.asarray(attention_mask))
  if position_ids is not None:
    kw["position_ids"] = torch.as_tensor(np.asarray(position_ids))
  with torch.no_grad():
    return model(input_ids=torch.as_tensor(np.array(ids)), **kw).logits.float().numpy()


def pair_factory(build_fn, tmp_path_factory):
  """name -> (torch model, our Model loaded from its saved directory, that directory); each
  name is built, saved and loaded once per test module."""
  from synergy_jax import models as M
  cache = {}

  def get(name):
    if name not in cache:
      tm = build_fn(name)
      d = tmp_path_factory.mktemp(name)
      tm.save_pretrained(d)
      cache[name] = (tm, M.load(d), d)
    return cache[name]

  return get


def assert_transformers_roundtrip(tm, m, directory, ids, *, atol):
  """models.save → models.load gives the same config and params, and transformers reads the
  saved directory into a model with the same logits as the original torch model."""
  import jax
  from synergy_jax import models as M
  M.save(m, directory)
  m2 = M.load(directory)
  assert m2.config == m.config
  jax.tree_util.tree_map(np.testing.assert_array_equal, m.params, m2.params)
  tm2 = transformers.AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager")
  np.testing.assert_allclose(torch_logits(tm2, ids), torch_logits(tm, ids), atol=atol, rtol=0)
