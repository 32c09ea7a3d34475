"""Frozen model configuration and the family registry.

`ModelConfig` is the one description of an architecture that every jitted function receives as a
static (hashable) argument. It is read from a Hugging Face `config.json` dictionary by the family
that claims the dictionary's `model_type` (see `register_family`), and written back by `to_hf`.

Strictness: a family lists the HF keys it understands; any other key that can change the
computation raises a ValueError naming it (metadata keys such as `architectures` or generation
defaults are ignored, see `METADATA_KEYS`). Unknown values of known keys (an unknown
`rope_scaling` type, an activation we do not implement, ...) also raise, naming key and value.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Mapping

from synergy_jax.models.contract import (Family, Segment, UnitParam,  # noqa: F401 (re-exported)
                                         attention_heads)

# HF keys that never change what the network computes (bookkeeping, generation defaults, labels).
METADATA_KEYS = frozenset({
    "synergy_jax_weights_sha256",  # written by models.save, checked by load (files.py)
    "_name_or_path", "transformers_version", "architectures", "model_type", "dtype", "torch_dtype",
    "output_hidden_states", "output_attentions", "return_dict", "use_cache", "chunk_size_feed_forward",
    "is_encoder_decoder", "is_decoder", "id2label", "label2id", "problem_type", "num_labels",
    "tokenizer_class", "prefix", "task_specific_params", "finetuning_task", "torchscript",
    "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_encoder_decoder", "add_cross_attention",
    "cross_attention_hidden_size", "decoder_start_token_id", "sep_token_id", "bos_token_id",
    "eos_token_id", "pad_token_id", "initializer_range", "max_position_embeddings", "max_length",
    "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens", "pretraining_tp", "model_name", "auto_map", "custom_pipelines",
    "_attn_implementation_autoset", "attn_implementation", "_commit_hash", "base_model_tp_plan",
    "base_model_pp_plan", "transformers.js_config", "tokenizer_file", "vocab_file", "is_llama_config",
})

ACTIVATIONS = ("silu", "gelu", "gelu_tanh", "relu")
_HF_ACT = {"silu": "silu", "swish": "silu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh",
           "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh", "relu": "relu"}
_ACT_TO_HF = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}
ROPE_TYPES = ("default", "linear", "llama3")


TOPK_METHODS = ("greedy", "group_limited_greedy")


@dataclasses.dataclass(frozen=True)
class MoEConfig:
  """Mixture-of-experts settings of a family with expert layers (the one typed MoE config).

  num_experts E routed experts per MoE layer, experts_per_token (top-k) of them chosen per
  token, num_shared_experts S always-on experts, expert_intermediate_size the width F_e of one
  routed expert's MLP, moe_layers the indices of the layers whose MLP is a mixture (the other
  layers are dense), norm_topk_prob renormalises the chosen router weights to sum to 1,
  routed_scaling_factor multiplies the routed sum (DeepSeek-V2).
  topk_method: "greedy" (top-k over all experts) or "group_limited_greedy" (DeepSeek-V2: the
    experts form n_group equal groups; only experts in the topk_group groups with the largest
    per-group maximum score compete for the top k).
  shared_expert_intermediate_size: width F_s of ONE shared expert (0 without shared experts).
  shared_expert_gate: the shared experts' output is multiplied by sigmoid(x · w_gate) (Qwen2-MoE).

  Units of an MoE layer: U = E + S, the routed experts first (router order), then the shared
  ones (`is_shared(u)`); MoE layer m (0 .. L_moe-1) is decoder layer moe_layers[m].
  """
  num_experts: int
  experts_per_token: int
  expert_intermediate_size: int
  moe_layers: tuple[int, ...]
  num_shared_experts: int = 0
  norm_topk_prob: bool = True
  routed_scaling_factor: float = 1.0
  topk_method: str = "greedy"
  n_group: int = 1
  topk_group: int = 1
  shared_expert_intermediate_size: int = 0
  shared_expert_gate: bool = False

  def __post_init__(self):
    for name in ("num_experts", "experts_per_token", "expert_intermediate_size"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"MoEConfig.{name} must be positive, got {getattr(self, name)}")
    if self.experts_per_token > self.num_experts:
      raise ValueError(f"MoEConfig.experts_per_token={self.experts_per_token} exceeds "
                       f"num_experts={self.num_experts}")
    if self.num_shared_experts < 0:
      raise ValueError(f"MoEConfig.num_shared_experts must be >= 0, got "
                       f"{self.num_shared_experts}")
    if not (math.isfinite(self.routed_scaling_factor) and self.routed_scaling_factor > 0):
      raise ValueError(f"MoEConfig.routed_scaling_factor must be a positive finite number, got "
                       f"{self.routed_scaling_factor}")
    object.__setattr__(self, "moe_layers", tuple(int(l) for l in self.moe_layers))
    if list(self.moe_layers) != sorted(set(self.moe_layers)) or any(l < 0 for l in self.moe_layers):
      raise ValueError(f"MoEConfig.moe_layers must be distinct non-negative layer indices in "
                       f"increasing order, got {self.moe_layers}")
    if self.topk_method not in TOPK_METHODS:
      raise ValueError(f"MoEConfig.topk_method={self.topk_method!r} is not implemented "
                       f"(implemented: {list(TOPK_METHODS)})")
    if self.n_group <= 0 or not 0 < self.topk_group <= self.n_group:
      raise ValueError(f"MoEConfig needs 0 < topk_group <= n_group, got n_group="
                       f"{self.n_group}, topk_group={self.topk_group}")
    if self.topk_method == "group_limited_greedy":
      if self.num_experts % self.n_group:
        raise ValueError(f"MoEConfig.num_experts={self.num_experts} is not a multiple of "
                         f"n_group={self.n_group}")
      if self.experts_per_token > self.topk_group * (self.num_experts // self.n_group):
        raise ValueError(f"MoEConfig.experts_per_token={self.experts_per_token} exceeds the "
                         f"{self.topk_group} groups x {self.num_experts // self.n_group} "
                         "experts allowed")
    if self.shared_expert_intermediate_size < 0:
      raise ValueError(f"MoEConfig.shared_expert_intermediate_size must be >= 0, got "
                       f"{self.shared_expert_intermediate_size}")
    if self.num_shared_experts and self.shared_expert_intermediate_size <= 0:
      raise ValueError(f"MoEConfig.num_shared_experts={self.num_shared_experts} needs a positive "
                       "shared_expert_intermediate_size")
    if self.shared_expert_gate and not self.num_shared_experts:
      raise ValueError("MoEConfig.shared_expert_gate needs at least one shared expert")

  @property
  def num_units(self) -> int:
    """Experts that are units at one MoE layer: E routed then S shared."""
    return self.num_experts + self.num_shared_experts

  @property
  def num_moe_layers(self) -> int:
    return len(self.moe_layers)

  def is_shared(self, unit: int) -> bool:
    """Whether unit u (0 .. U-1) of an MoE layer is a shared expert (u >= E)."""
    if not 0 <= unit < self.num_units:
      raise ValueError(f"expert unit {unit} is out of range for {self.num_experts} routed + "
                       f"{self.num_shared_experts} shared experts")
    return unit >= self.num_experts

  def moe_index(self, layer: int) -> int:
    """The MoE-layer index m of decoder layer `layer` (ValueError if that layer is dense)."""
    if layer not in self.moe_layers:
      raise ValueError(f"layer {layer} is not an MoE layer (MoE layers: {self.moe_layers})")
    return self.moe_layers.index(layer)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture of a decoder-only transformer (hashable; a static jit argument).

  Shape letters used across `synergy_jax.models`: L layers, D hidden_size, N query heads,
  M key/value heads (N % M == 0, query head n reads key/value head n // (N // M)), K head_dim,
  F intermediate_size, V vocab_size.

  layer_windows: per layer, the sliding-window length W (a query at position p sees keys at
    positions p-W+1 .. p) or 0 for full causal attention.
  rope_scaling: None, or sorted (key, value) pairs of the HF rope parameters other than
    rope_type/rope_theta (e.g. factor, low_freq_factor, high_freq_factor,
    original_max_position_embeddings for "llama3").
  options: sorted (key, value) pairs of family-specific settings (hashable values only), read
    with `cfg.option(name, default)`; for small scalar switches only. Structured settings get a
    typed sub-config instead (`moe`).
  moe: the mixture-of-experts sub-config, or None for a dense model.
  mla: the multi-head latent attention sub-config (moe.mla_config.MLAConfig) of deepseek_v2, or
    None.

  Values are range-checked here (positive sizes, rope_theta > 0, norm_eps > 0, ...), so a
  config that would silently give NaN logits is rejected when it is built.
  """
  family: str
  model_type: str
  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int
  max_position_embeddings: int = 2048
  norm_eps: float = 1e-6
  rope_theta: float = 10000.0
  rope_type: str = "default"
  rope_scaling: tuple[tuple[str, Any], ...] | None = None
  hidden_act: str = "silu"
  qkv_bias: bool = False
  o_bias: bool = False
  mlp_bias: bool = False
  qk_norm: bool = False
  tie_word_embeddings: bool = False
  layer_windows: tuple[int, ...] = ()
  initializer_range: float = 0.02
  bos_token_id: int | None = None
  eos_token_ids: tuple[int, ...] = ()
  pad_token_id: int | None = None
  options: tuple[tuple[str, Any], ...] = ()
  moe: MoEConfig | None = None
  mla: Any = None

  def __post_init__(self):
    if self.family not in FAMILIES:
      raise ValueError(f"ModelConfig.family={self.family!r} is not a registered family "
                       f"(known: {sorted(FAMILIES)})")
    for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
                 "num_kv_heads", "head_dim"):
      if int(getattr(self, name)) <= 0:
        raise ValueError(f"ModelConfig.{name} must be positive, got {getattr(self, name)}")
    if self.num_heads % self.num_kv_heads:
      raise ValueError(f"num_heads={self.num_heads} is not a multiple of "
                       f"num_kv_heads={self.num_kv_heads}")
    if self.hidden_act not in ACTIVATIONS:
      raise ValueError(f"hidden_act={self.hidden_act!r} is not implemented (known: {ACTIVATIONS})")
    if self.rope_type not in ROPE_TYPES:
      raise ValueError(f"rope_type={self.rope_type!r} is not implemented (known: {ROPE_TYPES})")
    if not self.layer_windows:
      object.__setattr__(self, "layer_windows", (0,) * self.num_layers)
    if len(self.layer_windows) != self.num_layers:
      raise ValueError(f"layer_windows has {len(self.layer_windows)} entries for "
                       f"num_layers={self.num_layers}")
    _check_ranges(self)

  @property
  def num_units(self) -> int:
    """Attention heads in the whole model; unit = layer * num_heads + head."""
    return self.num_layers * self.num_heads

  def option(self, name: str, default: Any = None) -> Any:
    return dict(self.options).get(name, default)

  @property
  def rope(self) -> dict[str, Any]:
    return dict(self.rope_scaling or ())

  @classmethod
  def from_hf(cls, hf: Mapping[str, Any] | str) -> "ModelConfig":
    """Builds a config from an HF config dict (or a path to config.json), strictly."""
    path = None
    if isinstance(hf, (str, os.PathLike)):
      path = os.fspath(hf)
      hf = read_json(path, "model config")
    where = f"{path}: " if path else ""
    try:
      return family_for_model_type(hf.get("model_type")).config_from_hf(dict(hf))
    except KeyError as e:
      raise ValueError(f"{where}required config key {e.args[0]!r} is missing") from e
    except (ValueError, TypeError) as e:
      if not path:
        raise
      raise ValueError(f"{path}: {e}") from e

  def to_hf(self) -> dict[str, Any]:
    """The HF config.json dictionary of this architecture (inverse of `from_hf`)."""
    return FAMILIES[self.family].config_to_hf(self)

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)


# HF names of the fields checked below, for messages (families spell them differently).
_HF_NAMES = {"norm_eps": "rms_norm_eps / layer_norm_eps / layer_norm_epsilon",
             "rope_theta": "rope_theta / rope_parameters.rope_theta / rotary_emb_base",
             "max_position_embeddings": "max_position_embeddings / n_positions",
             "initializer_range": "initializer_range"}


def _check_ranges(cfg: "ModelConfig") -> None:
  """Raises naming the first config value outside the range the computation needs."""
  def bad(field, value, need):
    raise ValueError(f"ModelConfig.{field}={value!r} (HF {_HF_NAMES.get(field, field)}) {need}")
  for field in ("norm_eps", "rope_theta"):
    v = getattr(cfg, field)
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
      bad(field, v, "must be a positive finite number")
  if int(cfg.max_position_embeddings) <= 0:
    bad("max_position_embeddings", cfg.max_position_embeddings, "must be positive")
  if not (math.isfinite(cfg.initializer_range) and cfg.initializer_range >= 0):
    bad("initializer_range", cfg.initializer_range, "must be a finite number >= 0")
  neg = [(i, w) for i, w in enumerate(cfg.layer_windows) if int(w) < 0]
  if neg:
    bad("layer_windows", cfg.layer_windows, f"has negative windows at layers {[i for i, _ in neg]}")
  for key, value in (cfg.rope_scaling or ()):
    if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
      bad("rope_scaling", dict(cfg.rope_scaling), f"entry {key}={value} must be positive")
  r = cfg.rope
  if cfg.rope_type == "llama3" and not r["low_freq_factor"] < r["high_freq_factor"]:
    bad("rope_scaling", r, "needs low_freq_factor < high_freq_factor")
  if cfg.moe is not None and any(l >= cfg.num_layers for l in cfg.moe.moe_layers):
    bad("moe", cfg.moe, f"names MoE layers beyond num_layers={cfg.num_layers}")


def read_json(path: str, what: str) -> dict:
  """A JSON object from `path`; FileNotFoundError/ValueError naming the file (and position)."""
  try:
    with open(path) as f:
      data = json.load(f)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{path}: {what} file does not exist") from e
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: {what} is not UTF-8 text ({e})") from e
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: {what} is malformed JSON (line {e.lineno}, column {e.colno}: "
                     f"{e.msg})") from e
  if not isinstance(data, dict):
    raise ValueError(f"{path}: {what} must be a JSON object, got {type(data).__name__}")
  return data


# ---------------------------------------------------------------------------------------------
# Family registry
# ---------------------------------------------------------------------------------------------

FAMILIES: dict[str, Family] = {}
_BY_MODEL_TYPE: dict[str, Family] = {}


def register_family(family: Family) -> Family:
  FAMILIES[family.name] = family
  for mt in family.model_types:
    _BY_MODEL_TYPE[mt] = family
  return family


def family_for_model_type(model_type: Any) -> Family:
  from synergy_jax.models import _families  # noqa: F401  (registers the built-in families)
  if model_type not in _BY_MODEL_TYPE:
    raise ValueError(f"config.json model_type={model_type!r} is not supported "
                     f"(supported: {sorted(_BY_MODEL_TYPE)})")
  return _BY_MODEL_TYPE[model_type]


# ---------------------------------------------------------------------------------------------
# Helpers for family config readers
# ---------------------------------------------------------------------------------------------

def check_keys(hf: Mapping[str, Any], handled: set[str] | frozenset[str], model_type: str):
  """Raises naming every HF key that is neither handled by the family nor pure metadata."""
  unknown = sorted(k for k in hf if k not in handled and k not in METADATA_KEYS)
  if unknown:
    raise ValueError(f"{model_type} config has fields we do not implement: {unknown}")


def require(hf: Mapping[str, Any], key: str, allowed, model_type: str):
  """Raises if hf[key] is present and not among `allowed` values."""
  if key in hf and hf[key] not in allowed:
    raise ValueError(f"{model_type} config field {key}={hf[key]!r} is not implemented "
                     f"(implemented: {list(allowed)})")


def require_no_attention_dropout(hf: Mapping[str, Any], model_type: str) -> None:
  """Raises naming attention_dropout when it is set non-zero (inference-only models)."""
  dropout = hf.get("attention_dropout", 0.0)
  if dropout:
    raise ValueError(f"{model_type} config field attention_dropout={dropout} is not implemented "
                     "(inference-only models; must be 0)")


def activation_from_hf(name: Any, model_type: str, key: str = "hidden_act") -> str:
  if name not in _HF_ACT:
    raise ValueError(f"{model_type} config field {key}={name!r} is not implemented "
                     f"(implemented: {sorted(_HF_ACT)})")
  return _HF_ACT[name]


def activation_to_hf(name: str) -> str:
  return _ACT_TO_HF[name]


_ROPE_KEYS = {
    "default": set(),
    "linear": {"factor"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
}


def rope_from_hf(hf: Mapping[str, Any], model_type: str):
  """(rope_theta, rope_type, rope_scaling) from legacy (rope_theta/rope_scaling) or
  transformers-5 (`rope_parameters`) fields; raises on unknown types or parameters."""
  params = dict(hf.get("rope_parameters") or {})
  legacy = hf.get("rope_scaling")
  if legacy:
    params = {**dict(legacy), **params} if params else dict(legacy)
  theta = params.pop("rope_theta", hf.get("rope_theta", 10000.0))
  rope_type = params.pop("rope_type", params.pop("type", "default"))
  if rope_type not in _ROPE_KEYS:
    raise ValueError(f"{model_type} config field rope_scaling/rope_parameters rope_type="
                     f"{rope_type!r} is not implemented (implemented: {sorted(_ROPE_KEYS)})")
  prf = params.pop("partial_rotary_factor", 1.0)
  if prf != 1.0:
    raise ValueError(f"{model_type} config field partial_rotary_factor={prf} is not implemented "
                     "for this family")
  need = _ROPE_KEYS[rope_type]
  extra = sorted(set(params) - need)
  missing = sorted(need - set(params))
  if extra or missing:
    raise ValueError(f"{model_type} rope parameters for rope_type={rope_type!r}: unexpected "
                     f"{extra}, missing {missing}")
  scaling = tuple(sorted(params.items())) if params else None
  return float(theta), rope_type, scaling


def rope_to_hf(cfg: ModelConfig) -> dict[str, Any]:
  return {"rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": cfg.rope_type,
                              **cfg.rope}}


def eos_ids(value) -> tuple[int, ...]:
  if value is None:
    return ()
  if isinstance(value, (list, tuple)):
    return tuple(int(v) for v in value)
  return (int(value),)


def eos_to_hf(ids: tuple[int, ...]):
  """ModelConfig.eos_token_ids -> HF `eos_token_id`: a list for several, an int for one, None."""
  if len(ids) > 1:
    return list(ids)
  return ids[0] if ids else None


LAYER_TYPES = ("full_attention", "sliding_attention")


def windows_from_layer_types(types, hf: Mapping[str, Any], model_type: str,
                             n_layers: int) -> tuple[int, ...]:
  """Per-layer attention windows (0 = full) from HF `layer_types`, checked: one entry per layer,
  only LAYER_TYPES values, and a positive `sliding_window` when any layer slides."""
  types = list(types)
  if len(types) != n_layers:
    raise ValueError(f"{model_type} config layer_types has {len(types)} entries for "
                     f"num_hidden_layers={n_layers}")
  bad = sorted(set(types) - set(LAYER_TYPES))
  if bad:
    raise ValueError(f"{model_type} config layer_types values {bad} are not implemented")
  w = hf.get("sliding_window")
  if "sliding_attention" in types and not w:
    raise ValueError(f"{model_type} config has sliding_attention layers but sliding_window={w!r}")
  return tuple(int(w) if t == "sliding_attention" else 0 for t in types)
