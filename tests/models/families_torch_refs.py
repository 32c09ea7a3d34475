"""Tiny random transformers (PyTorch) models for the gpt2 / gpt_neox / gemma family tests, and
the torch-side references they are compared with (greedy generation, per-head output norms)."""
import numpy as np
import torch
import transformers

from models_torch_refs import torch_logits  # noqa: F401  (shared reference, used by tests via R)

VOCAB = 61
NEW = 20  # generated tokens compared with transformers' greedy decoding


def _gemma3_text(**kw):
  base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=4,
              num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
              sliding_window_pattern=3, query_pre_attn_scalar=20, max_position_embeddings=128,
              rope_theta=5000.0, rope_local_base_freq=100.0,
              rope_scaling={"rope_type": "linear", "factor": 4.0},
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
  base.update(kw)
  return base


CONFIGS = {
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=4, n_positions=64,
        activation_function="gelu_new", bos_token_id=1, eos_token_id=2),
    # untied output head, unscaled attention scores, explicit MLP width, exact GELU
    "gpt2_variant": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_inner=40, n_positions=32,
        activation_function="gelu", scale_attn_weights=False, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=96, rotary_pct=0.5, rotary_emb_base=500, max_position_embeddings=128,
        use_parallel_residual=True, bos_token_id=1, eos_token_id=2),
    # the sequential-residual variant, without attention biases, with a tied output head
    "gpt_neox_seq": lambda: transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=80, rotary_pct=0.25, max_position_embeddings=128,
        use_parallel_residual=False, attention_bias=False, tie_word_embeddings=True,
        rope_scaling={"rope_type": "linear", "factor": 2.0}, bos_token_id=1, eos_token_id=2),
    # Gemma 1 with multi-query attention and head_dim != hidden / heads
    "gemma": lambda: transformers.GemmaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=24, max_position_embeddings=128,
        rope_theta=300.0, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    # soft-capping small enough to bend the random model's scores and logits
    "gemma2": lambda: transformers.Gemma2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=6,
        query_pre_attn_scalar=24, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
        max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0),
    "gemma3_text": lambda: transformers.Gemma3TextConfig(**_gemma3_text()),
    "gemma3": lambda: transformers.Gemma3Config(
        text_config=_gemma3_text(num_hidden_layers=3, num_key_value_heads=1,
                                 sliding_window_pattern=2),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=28, patch_size=14),
        mm_tokens_per_image=4, image_token_index=VOCAB - 1, boi_token_index=VOCAB - 3,
        eoi_token_index=VOCAB - 2),
}

CLASSES = {"gpt2": transformers.GPT2LMHeadModel, "gpt2_variant": transformers.GPT2LMHeadModel,
           "gpt_neox": transformers.GPTNeoXForCausalLM,
           "gpt_neox_seq": transformers.GPTNeoXForCausalLM,
           "gemma": transformers.GemmaForCausalLM, "gemma2": transformers.Gemma2ForCausalLM,
           "gemma3_text": transformers.Gemma3ForCausalLM,
           "gemma3": transformers.Gemma3ForConditionalGeneration}


def build(name: str, seed: int = 0):
  """A random eager-attention HF model (std 0.15 weights, random norm weights and biases),
  float32, eval mode."""
  torch.manual_seed(seed)
  cfg = CONFIGS[name]()
  cfg._attn_implementation = "eager"
  if hasattr(cfg, "text_config"):
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
  model = CLASSES[name](cfg).eval()
  with torch.no_grad():
    for pname, p in model.named_parameters():
      if "norm" in pname or "ln_" in pname:
        p.copy_(1.0 + 0.2 * torch.randn_like(p) if pname.endswith("weight")
                else 0.1 * torch.randn_like(p))
      elif pname.endswith("bias"):
        p.copy_(0.1 * torch.randn_like(p))
      else:
        p.copy_(0.15 * torch.randn_like(p))
  return model


def save(model, directory):
  model.save_pretrained(directory)
  return directory




def torch_greedy(model, prompt, n=NEW):
  with torch.no_grad():
    out = model.generate(torch.tensor(prompt[None]),
                         attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                         max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0,
                         eos_token_id=None)
  return out[0, len(prompt):].numpy()


def out_projections(model):
  """The modules whose input is the concatenated per-head attention output, one per layer."""
  name = type(model).__name__
  if name == "GPT2LMHeadModel":
    return [blk.attn.c_proj for blk in model.transformer.h]
  if name == "GPTNeoXForCausalLM":
    return [layer.attention.dense for layer in model.gpt_neox.layers]
  if name == "Gemma3ForConditionalGeneration":
    return [layer.self_attn.o_proj for layer in model.model.language_model.layers]
  return [layer.self_attn.o_proj for layer in model.model.layers]


def torch_head_norms(model, seq, num_heads, head_dim):
  """‖head output‖₂ at the output projection's input for one sequence: (L, S, N)."""
  captured = []
  hooks = [mod.register_forward_pre_hook(
      lambda mod, args: captured.append(
          args[0][0].reshape(-1, num_heads, head_dim).norm(dim=-1)))
      for mod in out_projections(model)]
  try:
    with torch.no_grad():
      model(torch.tensor(seq[None]))
  finally:
    for h in hooks:
      h.remove()
  return torch.stack(captured).numpy()


def prompts(lengths, seed=0):
  rs = np.random.RandomState(seed)
  return [rs.randint(3, VOCAB - 3, size=n) for n in lengths]


def left_pad(ps, pad=0):
  width = max(len(p) for p in ps)
  ids = np.full((len(ps), width), pad)
  mask = np.zeros((len(ps), width), int)
  for i, p in enumerate(ps):
    ids[i, width - len(p):] = p
    mask[i, width - len(p):] = 1
  return ids, mask


# ----------------------------------------------------------------------------------------------
# Checks shared by the family test files (each asserts; the reference is always torch or an
# independent recomputation, never the code under test alone)
# ----------------------------------------------------------------------------------------------

def check_greedy_and_head_norms(tm, m, prompt_len=5, seed=0):
  """Greedy tokens == transformers' greedy tokens; head_norms == torch hook norms at positions
  P-1 .. P+NEW-2 (the positions whose logits produced each new token)."""
  from synergy_jax import models as M
  prompt = prompts([prompt_len], seed)[0]
  ref = torch_greedy(tm, prompt)
  r = M.generate(m, prompt[None], max_new_tokens=NEW)
  np.testing.assert_array_equal(np.asarray(r.tokens[0]), ref)
  c = m.config
  seq = np.concatenate([prompt, ref])
  norms = torch_head_norms(tm, seq, c.num_heads, c.head_dim)[:, prompt_len - 1:
                                                               prompt_len - 1 + NEW]
  ours = np.asarray(r.head_norms[0])  # (L, N, T)
  assert ours.shape == (c.num_layers, c.num_heads, NEW)
  np.testing.assert_allclose(ours, norms.transpose(0, 2, 1), atol=1e-4, rtol=1e-4)
  assert norms.std() > 0.05
  assert len(set(ref.tolist())) > 1  # the continuation is not one repeated token


def check_cached_equals_uncached(m, lengths=(3, 9, 6), seed=1):
  """Tokens and norms from the KV-cached decode loop == one uncached forward pass over the whole
  generated sequence (per row, unpadded), and == teacher-forced `score`."""
  from scipy.special import log_softmax
  from synergy_jax import models as M
  ps = prompts(list(lengths), seed)
  ids, mask = left_pad(ps)
  r = M.generate(m, ids, mask, max_new_tokens=NEW, capture_outputs=True)
  s = M.score(m, r.sequences, r.prompt_lengths, capture_outputs=True)
  np.testing.assert_array_equal(np.argmax(np.asarray(s.logprobs), -1), np.asarray(r.tokens))
  np.testing.assert_allclose(np.asarray(s.head_norms), np.asarray(r.head_norms), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(r.head_outputs), axis=-1),
                             np.asarray(r.head_norms), rtol=1e-5, atol=1e-6)
  for b, p in enumerate(ps):
    row = np.concatenate([p, np.asarray(r.tokens[b])])[None]
    logits = np.asarray(M.forward(m, row))[0, len(p) - 1:-1]  # (NEW, V)
    np.testing.assert_array_equal(np.argmax(logits, -1), np.asarray(r.tokens[b]))
    np.testing.assert_allclose(np.asarray(s.logprobs[b]), log_softmax(logits, -1), atol=1e-4)


def check_left_padding(m, lengths=(2, 11, 5, 8), seed=2):
  """A left-padded batch generates exactly what each prompt generates alone."""
  from synergy_jax import models as M
  ps = prompts(list(lengths), seed)
  ids, mask = left_pad(ps, pad=17)
  batch = M.generate(m, ids, mask, max_new_tokens=NEW)
  for b, p in enumerate(ps):
    alone = M.generate(m, p[None], max_new_tokens=NEW)
    np.testing.assert_array_equal(np.asarray(batch.tokens[b]), np.asarray(alone.tokens[0]))
    np.testing.assert_allclose(np.asarray(batch.head_norms[b]), np.asarray(alone.head_norms[0]),
                               atol=1e-5, rtol=1e-5)


def check_padded_logits(tm, m, seed=3):
  """Left-padded forward == torch with the same mask and position_ids (positions count real
  tokens), on the real tokens."""
  from synergy_jax import models as M
  ids = np.random.RandomState(seed).randint(3, VOCAB - 3, size=(2, 14))
  mask = np.ones_like(ids)
  mask[0, :5] = 0
  pos = np.maximum(np.cumsum(mask, 1) - 1, 0)
  ref = torch_logits(tm, ids, attention_mask=mask, position_ids=pos)
  out = np.asarray(M.forward(m, ids, mask))
  np.testing.assert_allclose(out[0, 5:], ref[0, 5:], atol=1e-4, rtol=0)
  np.testing.assert_allclose(out[1], ref[1], atol=1e-4, rtol=0)


def check_eval_shape(hf, expected, n_params):
  """Full-size config: the converter's HF shapes include `expected` (hard-coded from the
  published checkpoints), converting abstract tensors with jax.eval_shape gives the params
  template, and the parameter count is `n_params` (published figure)."""
  import jax
  from synergy_jax import models as M
  from synergy_jax.models import convert
  cfg = M.ModelConfig.from_hf(hf)
  shapes = convert.hf_shapes(cfg)
  for k, v in expected.items():
    assert shapes[k] == v, (k, shapes.get(k), v)
  abstract = {k: jax.ShapeDtypeStruct(v, np.float32) for k, v in shapes.items()}
  converted = jax.eval_shape(lambda t: convert.params_from_hf(t, cfg), abstract)
  template = M.param_shapes(cfg)
  assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(template)
  for a, b in zip(jax.tree_util.tree_leaves(converted), jax.tree_util.tree_leaves(template)):
    assert (a.shape, a.dtype) == (b.shape, b.dtype)
  n = sum(int(np.prod(s)) for s in shapes.values())
  assert n == n_params, n
  q = template["layers"]["attn"]["q"].shape
  o = template["layers"]["attn"]["o"].shape
  assert q == (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.head_dim)
  assert o == (cfg.num_layers, cfg.num_heads, cfg.head_dim, cfg.hidden_size)
  return cfg
