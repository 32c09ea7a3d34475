"""Mixture-of-experts and multi-head latent attention building blocks (flax.nnx), family
independent, for the `mixtral`, `qwen2_moe`, `qwen3_moe` and `deepseek_v2` families.

  config.py          MoESpec (MoEConfig + sizes) from (and to) HF configs, strict; which layers are MoE
  mla_config.py      MLAConfig from (and to) a deepseek_v2 HF config, strict
  router.py          softmax -> (group-limited) top-k -> renormalise / scale; dense gates
  experts.py         E expert MLPs stacked on an expert axis, evaluated as one einsum
  block.py           MoEFeedForward: routed + shared experts, expert_mask, expert activity
  perturb.py         Gaussian noise on all of one expert's parameters
  checkpoint.py      per-expert HF tensors <-> stacked expert axis, MoE layer weights
  yarn.py            YaRN inverse frequencies, attention factor, MLA softmax scale
  mla.py             MultiHeadLatentAttention (full-sequence causal forward, per-head outputs)
  checkpoint_mla.py  HF attention tensors <-> MLA module layout
  annotate.py        sharding annotations (logical axis "model") of every nnx.Param
See docs/moe.md.
"""
from synergy_jax.models.moe.block import ACTIVITY_KINDS, MoEFeedForward, MoEOutput
from synergy_jax.models.moe.checkpoint import (assign, moe_weights_from_hf, moe_weights_to_hf,
                                               stack_experts, unstack_experts)
from synergy_jax.models.moe.checkpoint_mla import mla_weights_from_hf, mla_weights_to_hf
from synergy_jax.models.moe.config import (MoESpec, check_moe_keys, moe_from_hf,
                                           moe_layers, moe_to_hf)
from synergy_jax.models.moe.mla import MLAOutput, MultiHeadLatentAttention
from synergy_jax.models.moe.mla_config import MLAConfig, mla_from_hf, mla_to_hf
from synergy_jax.models.moe.perturb import perturb_expert, perturb_unit_weights, unit_weight_rms
from synergy_jax.models.moe.router import Router, Routing, route

__all__ = ["ACTIVITY_KINDS", "MLAConfig", "MLAOutput", "MoEFeedForward", "MoEOutput", "MoESpec",
           "MultiHeadLatentAttention", "Router", "Routing", "assign",
           "check_moe_keys", "mla_from_hf", "mla_to_hf", "mla_weights_from_hf", "mla_weights_to_hf",
           "moe_from_hf", "moe_layers", "moe_to_hf", "moe_weights_from_hf", "moe_weights_to_hf",
           "perturb_expert", "perturb_unit_weights", "route", "stack_experts", "unit_weight_rms",
           "unstack_experts"]
