"""Qwen mixtures of experts: HF model_types `qwen2_moe` (Qwen1.5-MoE / Qwen2-MoE) and
`qwen3_moe` (Qwen3-MoE).

Router softmax over E experts, top-k, the chosen weights renormalised only if norm_topk_prob.
A layer i is an MoE layer iff i is not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0
(the others are dense llama MLPs of width intermediate_size), so a config can give several
layer segments (moe/layers.py). On disk `model.layers.{i}.mlp.gate.weight` (E, D),
`mlp.experts.{e}.gate_proj|up_proj|down_proj.weight`.
  qwen2_moe  q/k/v biases (qkv_bias, default true); ONE shared expert
             `mlp.shared_expert.*` added as sigmoid(x · shared_expert_gate) · shared_expert(x)
             (unit E of every MoE layer); sliding windows by layer_types (HF computes them
             from use_sliding_window / max_window_layers when absent).
  qwen3_moe  Qwen3 attention: per-head RMSNorm of q and k, optional attention_bias (q/k/v and
             o); no shared expert; one sliding window on every layer iff use_sliding_window.
"""
from __future__ import annotations

from synergy_jax.models import config as C
from synergy_jax.models import llama, modules
from synergy_jax.models.config import ModelConfig
from synergy_jax.models.moe import layers

MOE_PREFIX = "model.layers.{i}.mlp"
EXPERT_NAMES = (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj"))


def _qwen2_windows(hf: dict, n: int) -> tuple[int, ...]:
  types = hf.get("layer_types")
  sliding = bool(hf.get("use_sliding_window", False))
  if types is None:
    # as transformers' Qwen2MoeConfig computes them (sliding on even layers below
    # max_window_layers when use_sliding_window)
    first = int(hf.get("max_window_layers", n))
    types = ["sliding_attention" if sliding and (i + 1) % 2 and i < first else "full_attention"
             for i in range(n)]
  return C.windows_from_layer_types(types, hf, "qwen2_moe", n)


def config_from_hf(hf: dict) -> ModelConfig:
  mt = hf.get("model_type")
  n = int(hf["num_hidden_layers"])
  if mt == "qwen2_moe":
    return layers.config_from_hf(hf, "qwen_moe", qkv_bias=bool(hf.get("qkv_bias", True)),
                                 o_bias=False, qk_norm=False, windows=_qwen2_windows(hf, n))
  w = hf.get("sliding_window") if hf.get("use_sliding_window", False) else None
  bias = bool(hf.get("attention_bias", False))
  return layers.config_from_hf(hf, "qwen_moe", qkv_bias=bias, o_bias=bias, qk_norm=True,
                               windows=(int(w) if w else 0,) * n)


def config_to_hf(cfg: ModelConfig) -> dict:
  mt = cfg.model_type
  windows = set(cfg.layer_windows) - {0}
  if len(windows) > 1:
    raise ValueError(f"{mt} cannot express several sliding windows {sorted(windows)}")
  window = windows.pop() if windows else None
  if mt == "qwen2_moe":
    if cfg.o_bias or cfg.qk_norm or cfg.mlp_bias:
      raise ValueError("qwen2_moe has no o_proj bias, MLP biases or q/k norms")
    hf = layers.config_to_hf(cfg, "Qwen2MoeForCausalLM")
    hf.update(qkv_bias=cfg.qkv_bias, use_sliding_window=bool(window), sliding_window=window,
              layer_types=["sliding_attention" if w else "full_attention"
                           for w in cfg.layer_windows],
              max_window_layers=cfg.num_layers)
    return hf
  if cfg.qkv_bias != cfg.o_bias or not cfg.qk_norm or cfg.mlp_bias:
    raise ValueError("qwen3_moe: attention_bias covers q/k/v and o together, q/k norms always, "
                     f"no MLP biases; got qkv_bias={cfg.qkv_bias}, o_bias={cfg.o_bias}, "
                     f"qk_norm={cfg.qk_norm}, mlp_bias={cfg.mlp_bias}")
  if window and any(w != window for w in cfg.layer_windows):
    raise ValueError("qwen3_moe applies its sliding window to every layer")
  hf = layers.config_to_hf(cfg, "Qwen3MoeForCausalLM")
  hf.update(attention_bias=cfg.qkv_bias, use_sliding_window=bool(window), sliding_window=window)
  return hf


def weights(cfg: ModelConfig):
  return layers.decoder_weights(cfg, MOE_PREFIX, EXPERT_NAMES)


FAMILY = C.register_family(C.Family(
    name="qwen_moe", model_types=("qwen2_moe", "qwen3_moe"), config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, weights=weights, block=layers.MoEBlock, outer=llama.outer,
    embed=llama.embed, unembed=modules.head_logits, ignorable=llama.ignorable,
    units=layers.units, shard_axes=layers.SHARD_AXES, segments=layers.segments))
