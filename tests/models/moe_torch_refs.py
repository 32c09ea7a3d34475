"""Tiny random transformers (PyTorch) MoE / MLA configs and torch-side references for the
tests/models/test_models_moe_*.py files (no network; seeded)."""
import numpy as np
import torch
import transformers

VOCAB = 53

YARN = {"rope_type": "yarn", "rope_theta": 500.0, "factor": 4.0,
        "original_max_position_embeddings": 16, "mscale": 0.7, "mscale_all_dim": 0.9,
        "beta_fast": 8, "beta_slow": 1}


def _common(**kw):
  base = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1,
              eos_token_id=2)
  base.update(kw)
  return base


def _eager(cfg):
  cfg._experts_implementation = "eager"  # the reference per-expert loop, not a fused kernel
  cfg._attn_implementation = "eager"
  return cfg


CONFIGS = {
    "mixtral": lambda: transformers.MixtralConfig(**_common(
        intermediate_size=24, num_local_experts=6, num_experts_per_tok=2)),
    "qwen2_moe": lambda: transformers.Qwen2MoeConfig(**_common(
        intermediate_size=40, moe_intermediate_size=16, shared_expert_intermediate_size=20,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=False, num_hidden_layers=4,
        decoder_sparse_step=2, mlp_only_layers=[3])),
    "qwen2_moe_norm": lambda: transformers.Qwen2MoeConfig(**_common(
        intermediate_size=40, moe_intermediate_size=16, shared_expert_intermediate_size=20,
        num_experts=6, num_experts_per_tok=3, norm_topk_prob=True)),
    "qwen3_moe": lambda: transformers.Qwen3MoeConfig(**_common(
        intermediate_size=40, moe_intermediate_size=16, num_experts=8, num_experts_per_tok=3,
        norm_topk_prob=True, head_dim=8)),
    "deepseek_v2_greedy": lambda: transformers.DeepseekV2Config(**_common(
        intermediate_size=40, moe_intermediate_size=12, n_routed_experts=8,
        num_experts_per_tok=3, n_shared_experts=2, topk_method="greedy",
        routed_scaling_factor=2.5, first_k_dense_replace=1, num_hidden_layers=3,
        num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=None, qk_nope_head_dim=8,
        qk_rope_head_dim=4, v_head_dim=6, rope_parameters=dict(YARN))),
    "deepseek_v2_group": lambda: transformers.DeepseekV2Config(**_common(
        intermediate_size=40, moe_intermediate_size=12, n_routed_experts=8,
        num_experts_per_tok=3, n_shared_experts=1, topk_method="group_limited_greedy",
        n_group=4, topk_group=2, routed_scaling_factor=1.5, first_k_dense_replace=1,
        num_hidden_layers=3, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=12,
        qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6, rope_parameters=dict(YARN))),
}


def config(name):
  return _eager(CONFIGS[name]())


def randomize(module, seed, std=0.3):
  """Random weights (HF initialises fused experts with torch.empty); norm weights near 1."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in sorted(module.named_parameters()):
      noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
      if "norm" in name:
        p.copy_(1.0 + 0.1 * noise)
      else:
        p.copy_(std * noise)
  return module


def np32(t):
  return t.detach().to(torch.float32).cpu().numpy()


def npy(t):
  """The tensor as numpy in its own dtype (a float64 reference stays float64)."""
  return t.detach().cpu().numpy()


@torch.no_grad()
def every_expert_output(experts, x2d):
  """(T, E, D) numpy in x2d's dtype: torch's own expert math (the Experts module) evaluated for
  every expert at every token, with weight 1 (forcing top_k_index = e)."""
  t = x2d.shape[0]
  outs = []
  for e in range(experts.num_experts):
    idx = torch.full((t, 1), e, dtype=torch.long)
    outs.append(experts(x2d, idx, torch.ones(t, 1, dtype=x2d.dtype)))
  return np.stack([npy(o) for o in outs], axis=1)


@torch.no_grad()
def dense_gates(router, x2d):
  """(T, E) numpy in x2d's dtype: the torch router's chosen weights scattered into a dense
  matrix."""
  _, weights, indices = router(x2d)
  g = torch.zeros(x2d.shape[0], router.num_experts, dtype=x2d.dtype)
  g.scatter_(1, indices, weights.to(x2d.dtype))
  return g.numpy()


def deepseek_plain():
  """DeepSeek-V2 attention with the default rope and attention biases."""
  return _eager(transformers.DeepseekV2Config(**_common(
      intermediate_size=40, moe_intermediate_size=12, n_routed_experts=4, num_experts_per_tok=2,
      n_shared_experts=1, num_key_value_heads=4, kv_lora_rank=16, q_lora_rank=12,
      qk_nope_head_dim=8, qk_rope_head_dim=6, v_head_dim=10, attention_bias=True,
      rope_parameters={"rope_type": "default", "rope_theta": 300.0})))


def causal_additive_mask(b, s):
  """(B, 1, S, S) float32: 0 where key <= query, the float32 minimum elsewhere."""
  m = torch.full((s, s), torch.finfo(torch.float32).min).triu(1)
  return m[None, None].expand(b, 1, s, s)
