"""Strict readers of the mixture-of-experts part of HF configs: `mixtral`, `qwen2_moe`,
`qwen3_moe`, `deepseek_v2`.

`moe_from_hf(hf)` returns an `MoESpec`: the shared typed `synergy_jax.models.config.MoEConfig`
(routing and shared-expert settings included) plus the hidden size and activation.

Strictness: `check_moe_keys(hf)` raises naming every HF field that neither the MoE/MLA readers
here nor the dense decoder reader of the family (listed in `_DENSE_KEYS`, read by the family file
when it is wired in) consume; values we do not implement (router jitter, a scoring function other
than softmax, DeepSeek's moe_layer_freq != 1, ...) raise naming key and value.

Which layers are MoE layers (`moe_layers`), as the installed transformers builds them:
  mixtral              every layer;
  qwen2_moe/qwen3_moe  layer i iff i not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0;
  deepseek_v2          layer i iff i >= first_k_dense_replace (DeepSeek's original code also asks
                       i % moe_layer_freq == 0, which transformers ignores: we accept only
                       moe_layer_freq == 1, where both agree).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from synergy_jax.models import config as C
from synergy_jax.models.config import MoEConfig

MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2")
TOPK_METHODS = C.TOPK_METHODS

# Dense-decoder fields each family's own reader consumes (attention, norms, rope, embeddings).
_BASE = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
         "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps",
         "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
         "attention_dropout"}
_DENSE_KEYS = {
    "mixtral": _BASE | {"sliding_window"},
    "qwen2_moe": _BASE | {"use_sliding_window", "sliding_window", "max_window_layers",
                          "layer_types", "qkv_bias"},
    # transformers' Qwen3-MoE has no layer_types (one window for every layer, if any);
    # max_window_layers appears in released config.json files and is read by nothing.
    "qwen3_moe": _BASE | {"attention_bias", "use_sliding_window", "sliding_window",
                          "max_window_layers"},
    "deepseek_v2": _BASE | {"attention_bias", "mlp_bias"},
}
# Training-only fields (auxiliary load-balancing loss, router logits output): no effect on the
# forward pass, so accepted whatever their value.
_TRAINING_ONLY = {"output_router_logits", "router_aux_loss_coef", "aux_loss_alpha", "seq_aux"}
_MOE_KEYS = {
    "mixtral": {"num_local_experts", "num_experts_per_tok", "router_jitter_noise"},
    "qwen2_moe": {"num_experts", "num_experts_per_tok", "moe_intermediate_size",
                  "shared_expert_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
                  "mlp_only_layers"},
    # transformers 5 stores qwen3_moe's expert count as num_local_experts (alias num_experts,
    # the name in released config.json files); either is read, both must agree.
    "qwen3_moe": {"num_experts", "num_local_experts", "num_experts_per_tok",
                  "moe_intermediate_size", "norm_topk_prob", "decoder_sparse_step",
                  "mlp_only_layers"},
    # ep_size is DeepSeek's expert-parallel degree: placement only, not arithmetic.
    "deepseek_v2": {"n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
                    "n_shared_experts", "norm_topk_prob", "routed_scaling_factor", "topk_method",
                    "n_group", "topk_group", "scoring_func", "first_k_dense_replace",
                    "moe_layer_freq", "ep_size"},
}
# Multi-head latent attention fields (read by mla_config.mla_from_hf). transformers 5 also
# writes the derived qk_head_dim (= nope + rope) into config.json.
MLA_KEYS = {"q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
            "qk_head_dim"}


@dataclasses.dataclass(frozen=True)
class MoESpec:
  """What the MoE feed-forward module needs: the hidden size, the typed MoE config
  (`models.config.MoEConfig`, routing and shared-expert settings included) and the activation
  (our name, e.g. "silu"). `MoESpec.of(model_config)` for a model's config."""
  hidden_size: int
  moe: MoEConfig
  hidden_act: str = "silu"

  @classmethod
  def of(cls, cfg) -> "MoESpec":
    if cfg.moe is None:
      raise ValueError(f"{cfg.model_type} config has no mixture-of-experts settings (moe=None)")
    return cls(cfg.hidden_size, cfg.moe, cfg.hidden_act)

  @property
  def num_units(self) -> int:
    """Experts that are units at one MoE layer: E routed then S shared."""
    return self.moe.num_units


def check_moe_keys(hf: Mapping[str, Any]) -> None:
  """Raises naming every field of an MoE HF config that nothing we have (or will wire) reads."""
  mt = _model_type(hf)
  extra = MLA_KEYS if mt == "deepseek_v2" else set()
  C.check_keys(hf, _DENSE_KEYS[mt] | _MOE_KEYS[mt] | _TRAINING_ONLY | extra, mt)


def moe_layers(hf: Mapping[str, Any]) -> tuple[int, ...]:
  """Indices of the layers whose MLP is a mixture of experts (see the module docstring)."""
  mt = _model_type(hf)
  n = int(hf["num_hidden_layers"])
  if mt == "mixtral":
    return tuple(range(n))
  if mt in ("qwen2_moe", "qwen3_moe"):
    step = int(hf.get("decoder_sparse_step", 1))
    if step <= 0:
      raise ValueError(f"{mt} config field decoder_sparse_step={step} must be positive")
    dense = hf.get("mlp_only_layers") or []
    bad = [i for i in dense if not (isinstance(i, int) and 0 <= i < n)]
    if bad:
      raise ValueError(f"{mt} config field mlp_only_layers has entries {bad} outside the "
                       f"{n} layers")
    return tuple(i for i in range(n) if i not in dense and (i + 1) % step == 0)
  freq = hf.get("moe_layer_freq", 1)
  if freq != 1:
    raise ValueError(f"deepseek_v2 config field moe_layer_freq={freq!r} is not implemented "
                     "(transformers ignores it, DeepSeek's code uses it; only 1 is unambiguous)")
  first = int(hf.get("first_k_dense_replace", 0))
  if not 0 <= first <= n:
    raise ValueError(f"deepseek_v2 config field first_k_dense_replace={first} is outside "
                     f"0..num_hidden_layers={n}")
  return tuple(range(first, n))


def moe_from_hf(hf: Mapping[str, Any]) -> MoESpec:
  """The MoE settings of an HF config dict (strict; see the module docstring)."""
  check_moe_keys(hf)
  mt = _model_type(hf)
  act = C.activation_from_hf(hf.get("hidden_act", "silu"), mt)
  layers = moe_layers(hf)
  if mt == "mixtral":
    jitter = hf.get("router_jitter_noise", 0.0)
    if jitter:
      raise ValueError(f"mixtral config field router_jitter_noise={jitter} is not implemented "
                       "(training-time input noise; inference-only, must be 0)")
    moe = MoEConfig(num_experts=_int(hf, "num_local_experts", mt),
                    experts_per_token=_int(hf, "num_experts_per_tok", mt),
                    expert_intermediate_size=_int(hf, "intermediate_size", mt),
                    moe_layers=layers, norm_topk_prob=True)
    return MoESpec(_int(hf, "hidden_size", mt), moe, act)
  if mt in ("qwen2_moe", "qwen3_moe"):
    shared = int(hf.get("shared_expert_intermediate_size") or 0) if mt == "qwen2_moe" else 0
    moe = MoEConfig(num_experts=_num_experts(hf, mt),
                    experts_per_token=_int(hf, "num_experts_per_tok", mt),
                    expert_intermediate_size=_int(hf, "moe_intermediate_size", mt),
                    moe_layers=layers, num_shared_experts=1 if shared else 0,
                    norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
                    shared_expert_intermediate_size=shared, shared_expert_gate=bool(shared))
    return MoESpec(_int(hf, "hidden_size", mt), moe, act)
  return _deepseek(hf, layers, act)


def _deepseek(hf, layers, act) -> MoESpec:
  mt = "deepseek_v2"
  C.require(hf, "scoring_func", ("softmax",), mt)
  if hf.get("mlp_bias"):
    # transformers gives the dense and shared MLPs biases then, but not the routed experts
    raise ValueError("deepseek_v2 config field mlp_bias=True is not implemented (biased shared "
                     "experts)")
  if hf.get("norm_topk_prob"):
    # transformers' DeepseekV2TopkRouter never reads norm_topk_prob, while DeepSeek's published
    # gate renormalises the top-k weights (copies differ on whether routed_scaling_factor is then
    # applied). The two disagree, so we refuse rather than pick one silently.
    raise ValueError("deepseek_v2 config field norm_topk_prob=True is not implemented "
                     "(transformers ignores it while DeepSeek's code renormalises)")
  method = hf.get("topk_method") or "greedy"
  if method not in TOPK_METHODS:
    raise ValueError(f"deepseek_v2 config field topk_method={method!r} is not implemented "
                     f"(implemented: {list(TOPK_METHODS)})")
  group = method == "group_limited_greedy"
  n_group = _int(hf, "n_group", mt) if group else 1
  topk_group = _int(hf, "topk_group", mt) if group else 1
  width = _int(hf, "moe_intermediate_size", mt)
  n_shared = int(hf.get("n_shared_experts") or 0)
  # HF (and DeepSeek) build the shared experts as ONE MLP of width n_shared * F; we split it into
  # n_shared units of width F (their outputs sum to the fused MLP's output exactly).
  moe = MoEConfig(num_experts=_int(hf, "n_routed_experts", mt),
                  experts_per_token=_int(hf, "num_experts_per_tok", mt),
                  expert_intermediate_size=width, moe_layers=layers,
                  num_shared_experts=n_shared, norm_topk_prob=False,
                  routed_scaling_factor=float(hf.get("routed_scaling_factor", 1.0)),
                  topk_method=method, n_group=n_group, topk_group=topk_group,
                  shared_expert_intermediate_size=width if n_shared else 0)
  return MoESpec(_int(hf, "hidden_size", mt), moe, act)


def _model_type(hf: Mapping[str, Any]) -> str:
  mt = hf.get("model_type")
  if mt not in MODEL_TYPES:
    raise ValueError(f"config model_type={mt!r} is not a mixture-of-experts type we read "
                     f"(known: {list(MODEL_TYPES)})")
  return mt


def _num_experts(hf, mt) -> int:
  if mt == "qwen3_moe" and "num_local_experts" in hf:
    n = _int(hf, "num_local_experts", mt)
    if "num_experts" in hf and hf["num_experts"] != n:
      raise ValueError(f"qwen3_moe config fields num_experts={hf['num_experts']!r} and "
                       f"num_local_experts={n} disagree")
    return n
  return _int(hf, "num_experts", mt)


def _int(hf, key, mt) -> int:
  if hf.get(key) is None:
    raise ValueError(f"{mt} config field {key!r} is required (missing or null)")
  value = hf[key]
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{mt} config field {key}={value!r} must be an integer")
  return value


def moe_to_hf(spec: MoESpec, model_type: str, num_layers: int) -> dict[str, Any]:
  """The MoE fields of the HF config of `model_type` (inverse of moe_from_hf on those fields;
  the dense fields are the family's). Raises if the spec cannot be written in that format."""
  m = spec.moe
  layers = tuple(m.moe_layers)
  if any(l >= num_layers for l in layers):
    raise ValueError(f"MoE layers {layers} exceed num_layers={num_layers}")
  if model_type == "mixtral":
    if layers != tuple(range(num_layers)) or m.num_shared_experts or not m.norm_topk_prob \
        or m.routed_scaling_factor != 1.0 or m.topk_method != "greedy" or m.n_group != 1 \
        or m.topk_group != 1:
      raise ValueError(f"mixtral cannot express {spec} (all layers MoE, renormalised top-k, "
                       "no shared experts, greedy routing only)")
    return {"num_local_experts": m.num_experts, "num_experts_per_tok": m.experts_per_token,
            "intermediate_size": m.expert_intermediate_size}
  if model_type in ("qwen2_moe", "qwen3_moe"):
    shared_ok = ((m.num_shared_experts == 1 and m.shared_expert_gate) if model_type == "qwen2_moe"
                 else m.num_shared_experts == 0)
    if not shared_ok or m.routed_scaling_factor != 1.0 or m.topk_method != "greedy":
      raise ValueError(f"{model_type} cannot express {spec}")
    out = {"num_experts": m.num_experts, "num_experts_per_tok": m.experts_per_token,
           "moe_intermediate_size": m.expert_intermediate_size,
           "norm_topk_prob": m.norm_topk_prob, "decoder_sparse_step": 1,
           "mlp_only_layers": [i for i in range(num_layers) if i not in layers]}
    if model_type == "qwen2_moe":
      out["shared_expert_intermediate_size"] = m.shared_expert_intermediate_size
    return out
  if model_type == "deepseek_v2":
    first = layers[0] if layers else num_layers
    if layers != tuple(range(first, num_layers)) or m.norm_topk_prob or m.shared_expert_gate \
        or (m.num_shared_experts and m.shared_expert_intermediate_size
            != m.expert_intermediate_size):
      raise ValueError(f"deepseek_v2 cannot express {spec} (dense layers then MoE layers, no "
                       "renormalisation, ungated shared experts of the routed width)")
    return {"n_routed_experts": m.num_experts, "num_experts_per_tok": m.experts_per_token,
            "moe_intermediate_size": m.expert_intermediate_size,
            "n_shared_experts": m.num_shared_experts, "norm_topk_prob": False,
            "routed_scaling_factor": m.routed_scaling_factor, "topk_method": m.topk_method,
            "n_group": m.n_group, "topk_group": m.topk_group, "scoring_func": "softmax",
            "first_k_dense_replace": first, "moe_layer_freq": 1}
  raise ValueError(f"model_type={model_type!r} is not a mixture-of-experts type we write "
                   f"(known: {list(MODEL_TYPES)})")
