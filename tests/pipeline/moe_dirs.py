"""Tiny random mixture-of-experts model directories with the default tokenizer, for pipeline
tests (``--model=<dir>`` / ``random:<dir>``): Qwen2-MoE layout with a shared expert and a dense
layer, so every kind of unit occurs (heads, routed experts, a shared expert)."""
import transformers

from synergy_jax import models, training
from synergy_jax.training import tokenizer

NUM_LAYERS, NUM_HEADS = 3, 2
NUM_EXPERTS, NUM_SHARED = 4, 1
MOE_LAYERS = (0, 2)  # decoder_sparse_step=1 and mlp_only_layers=[1]


def qwen2_moe_config():
  hf = transformers.Qwen2MoeConfig(
      vocab_size=tokenizer.VOCAB_SIZE, hidden_size=16, intermediate_size=24,
      moe_intermediate_size=8, shared_expert_intermediate_size=12, num_experts=NUM_EXPERTS,
      num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1],
      num_hidden_layers=NUM_LAYERS, num_attention_heads=NUM_HEADS, num_key_value_heads=NUM_HEADS,
      max_position_embeddings=256, bos_token_id=tokenizer.BOS_ID, eos_token_id=tokenizer.EOS_ID,
      pad_token_id=tokenizer.PAD_ID)
  return models.ModelConfig.from_hf(hf.to_dict())


def write_tiny_moe(path, seed: int = 0):
  """Saves a random tiny Qwen2-MoE model and the default tokenizer into ``path``; returns it."""
  models.save(models.init(qwen2_moe_config(), seed=seed), path)
  training.save_tokenizer(path)
  return path
