"""Checkpoint layout of MoE layers: per-expert HF tensors <-> arrays stacked on an expert axis,
and the MoE feed-forward's weights <-> the HF tensors of one layer (strict both ways).

HF on-disk names under a layer's MoE prefix P (`model.layers.{i}.mlp`, Mixtral
`model.layers.{i}.block_sparse_moe`), shapes with D hidden, F expert width, E experts:
  P.gate.weight (E, D)                                   router
  P.experts.{j}.{gate_proj,up_proj}.weight (F, D)        Mixtral: w1 (gate), w3 (up)
  P.experts.{j}.down_proj.weight (D, F)                  Mixtral: w2
  P.shared_expert.{gate,up,down}_proj.weight             Qwen2-MoE, one shared expert (F_s)
  P.shared_expert_gate.weight (1, D)                     Qwen2-MoE
  P.shared_experts.{gate,up,down}_proj.weight            DeepSeek-V2: ONE MLP of width H*F,
                                                         split here into H experts of width F
transformers 5 fuses the experts when it loads (P.experts.gate_up_proj (E, 2F, D) = [gate; up]
on axis 1, P.experts.down_proj (E, D, F)) and writes the per-expert layout back on save; both
layouts are read here, the per-expert one is written.

Module layout (block.MoEFeedForward): router.w (D, E); experts.gate, .up (E, D, F), .down
(E, F, D); shared.gate, .up (H, D, F_s), .down (H, F_s, D); shared_gate (D,).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax.numpy as jnp
import numpy as np
from flax import nnx

from synergy_jax.models.moe.config import MoESpec

# (our name, HF per-expert name) per model type; order: gate, up, down.
EXPERT_NAMES = {
    "mixtral": (("gate", "w1"), ("up", "w3"), ("down", "w2")),
    "qwen2_moe": (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")),
    "qwen3_moe": (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")),
    "deepseek_v2": (("gate", "gate_proj"), ("up", "up_proj"), ("down", "down_proj")),
}
SHARED_PREFIX = {"qwen2_moe": "shared_expert", "deepseek_v2": "shared_experts"}


def stack_experts(tensors: Mapping[str, Any], prefix: str, names: Sequence[str],
                  num_experts: int) -> dict[str, np.ndarray]:
  """{name: (E, *shape)} from `{prefix}.{j}.{name}.weight`, j = 0 .. E-1.

  Strict: a missing expert tensor, an expert index >= E, an unknown name or any other tensor
  under `{prefix}.` raises ValueError naming the tensor; experts of different shapes too.
  """
  pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.([A-Za-z0-9_]+)\.weight")
  found: dict[str, dict[int, Any]] = {n: {} for n in names}
  for key in tensors:
    if not key.startswith(prefix + "."):
      continue
    match = pattern.fullmatch(key)
    if match is None or match.group(2) not in found:
      raise ValueError(f"unexpected tensor {key!r} under {prefix!r} (expected "
                       f"{prefix}.<expert>.<{'|'.join(names)}>.weight)")
    j = int(match.group(1))
    if j >= num_experts:
      raise ValueError(f"tensor {key!r} names expert {j}, but the config has {num_experts} "
                       f"experts (0 .. {num_experts - 1})")
    found[match.group(2)][j] = tensors[key]
  out = {}
  for name in names:
    missing = [f"{prefix}.{j}.{name}.weight" for j in range(num_experts) if j not in found[name]]
    if missing:
      raise ValueError(f"missing expert tensors: {missing[:4]}{' ...' if len(missing) > 4 else ''}"
                       f" ({len(missing)} of {num_experts})")
    arrays = [np.asarray(found[name][j]) for j in range(num_experts)]
    for j, a in enumerate(arrays):
      if a.shape != arrays[0].shape:
        raise ValueError(f"tensor {prefix}.{j}.{name}.weight has shape {a.shape}, expert 0 has "
                         f"{arrays[0].shape}")
    out[name] = np.stack(arrays)
  return out


def unstack_experts(stacked: Mapping[str, Any], prefix: str) -> dict[str, np.ndarray]:
  """Inverse of stack_experts: {`{prefix}.{j}.{name}.weight`: stacked[name][j]}."""
  return {f"{prefix}.{j}.{name}.weight": np.asarray(a)[j]
          for name, a in stacked.items() for j in range(np.shape(a)[0])}


def moe_weights_from_hf(tensors: Mapping[str, Any], prefix: str, model_type: str,
                        spec: MoESpec) -> dict[str, Any]:
  """The module-layout weights (nested dict of numpy arrays) of the MoE layer at `prefix`.

  Every tensor under `{prefix}.` must be consumed exactly once (else ValueError naming it);
  shapes are checked against `spec`.
  """
  names = _names(model_type)
  m = spec.moe
  e, d, f = m.num_experts, spec.hidden_size, m.expert_intermediate_size
  used: set[str] = set()

  def take(key, shape):
    if key not in tensors:
      raise ValueError(f"missing tensor {key!r}")
    a = np.asarray(tensors[key])
    if a.shape != tuple(shape):
      raise ValueError(f"tensor {key!r} has shape {a.shape}, expected {tuple(shape)}")
    used.add(key)
    return a

  w = {"router": {"w": take(f"{prefix}.gate.weight", (e, d)).T}}
  fused = f"{prefix}.experts.gate_up_proj"
  if fused in tensors:
    gate_up = take(fused, (e, 2 * f, d))
    down = take(f"{prefix}.experts.down_proj", (e, d, f))
    w["experts"] = {"gate": gate_up[:, :f].transpose(0, 2, 1),
                    "up": gate_up[:, f:].transpose(0, 2, 1), "down": down.transpose(0, 2, 1)}
  else:
    ours = dict((hf, mine) for mine, hf in names)
    sub = {k: v for k, v in tensors.items() if k.startswith(f"{prefix}.experts.")}
    stacked = stack_experts(sub, f"{prefix}.experts", [hf for _, hf in names], e)
    used.update(sub)
    for hf_name, a in stacked.items():
      want = (e, d, f) if ours[hf_name] == "down" else (e, f, d)
      if a.shape != want:
        raise ValueError(f"tensors {prefix}.experts.*.{hf_name}.weight have shape "
                         f"{a.shape[1:]}, expected {want[1:]}")
      w["experts"] = {**w.get("experts", {}), ours[hf_name]: a.transpose(0, 2, 1)}
  if m.num_shared_experts:
    h, fs = m.num_shared_experts, m.shared_expert_intermediate_size
    sp = f"{prefix}.{SHARED_PREFIX[model_type]}"
    gate = take(f"{sp}.gate_proj.weight", (h * fs, d)).reshape(h, fs, d)
    up = take(f"{sp}.up_proj.weight", (h * fs, d)).reshape(h, fs, d)
    down = take(f"{sp}.down_proj.weight", (d, h * fs)).reshape(d, h, fs)
    w["shared"] = {"gate": gate.transpose(0, 2, 1), "up": up.transpose(0, 2, 1),
                   "down": down.transpose(1, 2, 0)}
  if m.shared_expert_gate:
    w["shared_gate"] = take(f"{prefix}.shared_expert_gate.weight", (1, d))[0]
  left = sorted(k for k in tensors if k.startswith(prefix + ".") and k not in used)
  if left:
    raise ValueError(f"unexpected tensors under {prefix!r}: {left}")
  return w


def moe_weights_to_hf(weights: Mapping[str, Any], prefix: str, model_type: str
                      ) -> dict[str, np.ndarray]:
  """Inverse of moe_weights_from_hf, in the per-expert on-disk layout."""
  names = _names(model_type)
  out = {f"{prefix}.gate.weight": np.asarray(weights["router"]["w"]).T}
  out.update(unstack_experts({hf: np.asarray(weights["experts"][mine]).transpose(0, 2, 1)
                              for mine, hf in names}, f"{prefix}.experts"))
  if "shared" in weights:
    s = weights["shared"]
    sp = f"{prefix}.{SHARED_PREFIX[model_type]}"
    gate, up, down = (np.asarray(s[k]) for k in ("gate", "up", "down"))
    h, d, fs = gate.shape
    out[f"{sp}.gate_proj.weight"] = gate.transpose(0, 2, 1).reshape(h * fs, d)
    out[f"{sp}.up_proj.weight"] = up.transpose(0, 2, 1).reshape(h * fs, d)
    out[f"{sp}.down_proj.weight"] = down.transpose(2, 0, 1).reshape(d, h * fs)
  if "shared_gate" in weights:
    out[f"{prefix}.shared_expert_gate.weight"] = np.asarray(weights["shared_gate"])[None, :]
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


def assign(module: nnx.Module, weights: Mapping[str, Any], where: str = "") -> None:
  """Sets every nnx.Param of `module` (built normally, or abstractly with nnx.eval_shape) from
  the nested dict `weights` (same names), strictly: missing, unexpected and wrongly shaped
  entries raise ValueError naming the path."""
  params = {k: v for k, v in vars(module).items() if isinstance(v, (nnx.Param, nnx.Module))}
  extra = sorted(set(weights) - set(params))
  if extra:
    raise ValueError(f"unexpected weights {[where + k for k in extra]}")
  for key, node in params.items():
    if key not in weights:
      raise ValueError(f"missing weight {where + key!r}")
    if isinstance(node, nnx.Module):
      assign(node, weights[key], f"{where}{key}.")
      continue
    want = node.get_value()  # an array, or a ShapeDtypeStruct in an nnx.eval_shape template
    value = jnp.asarray(weights[key], want.dtype)
    if value.shape != want.shape:
      raise ValueError(f"weight {where + key!r} has shape {value.shape}, the module expects "
                       f"{want.shape}")
    node.set_value(value)


def _names(model_type):
  if model_type not in EXPERT_NAMES:
    raise ValueError(f"model_type={model_type!r} has no MoE checkpoint layout (known: "
                     f"{sorted(EXPERT_NAMES)})")
  return EXPERT_NAMES[model_type]
