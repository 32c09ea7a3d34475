"""Mixtral: HF model_type `mixtral` (Mistral attention, every layer's MLP a mixture of experts).

Router softmax over E experts, top-k, the chosen weights renormalised (always); on disk
`model.layers.{i}.block_sparse_moe.gate.weight` (E, D) and
`model.layers.{i}.block_sparse_moe.experts.{e}.w1|w3|w2.weight` (gate, up, down). Attention as
Mistral: no biases, an optional sliding window on every layer. `intermediate_size` is the
expert width (there are no dense MLPs). One layer segment "layers" of moe.layers.MoEBlock;
parameter layout in moe/layers.py.
"""
from __future__ import annotations

from synergy_jax.models import config as C
from synergy_jax.models import llama, modules
from synergy_jax.models.config import ModelConfig
from synergy_jax.models.moe import layers

MOE_PREFIX = "model.layers.{i}.block_sparse_moe"
EXPERT_NAMES = (("gate", "w1"), ("up", "w3"), ("down", "w2"))


def config_from_hf(hf: dict) -> ModelConfig:
  w = hf.get("sliding_window")
  n = int(hf["num_hidden_layers"])
  return layers.config_from_hf(hf, "mixtral", qkv_bias=False, o_bias=False, qk_norm=False,
                               windows=(int(w) if w else 0,) * n)


def config_to_hf(cfg: ModelConfig) -> dict:
  windows = set(cfg.layer_windows)
  if len(windows) > 1:
    raise ValueError("mixtral applies one sliding window to every layer, got "
                     f"{sorted(windows)}")
  if cfg.qkv_bias or cfg.o_bias or cfg.qk_norm or cfg.mlp_bias:
    raise ValueError("mixtral has no attention biases, MLP biases or q/k norms")
  hf = layers.config_to_hf(cfg, "MixtralForCausalLM")
  hf["sliding_window"] = windows.pop() or None
  return hf


def weights(cfg: ModelConfig):
  return layers.decoder_weights(cfg, MOE_PREFIX, EXPERT_NAMES)


FAMILY = C.register_family(C.Family(
    name="mixtral", model_types=("mixtral",), config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=layers.MoEBlock, outer=llama.outer,
    embed=llama.embed, unembed=modules.head_logits, ignorable=llama.ignorable,
    units=layers.units, shard_axes=layers.SHARD_AXES, segments=layers.segments))
