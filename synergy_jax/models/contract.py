"""The family contract: everything a model family file tells the rest of `synergy_jax.models`.

A family registers one `Family` record (config.register_family): the config reader and writer,
the checkpoint's weight specs, its Flax NNX modules (a Block module per layer segment, built
from the shared ones in modules.py, plus the weights outside the layer stack), and in data:

Paths below are paths into the parameter state `nnx.state(model, nnx.Param)` (equivalently
`model.params`): ("layers", "attn", "q") is model.layers.attn.q, the query projection of every
layer stacked on axis 0.

  units(config)        which parameter slices belong to each unit (`UnitParam`s): a head's
                       query rows and output columns today, an expert's weights for MoE families.
                       Perturbation, head ablation masks, fine-tuning masks and the weight-RMS
                       scale ask this description; nothing outside the family names a leaf.
  shard_axes           for each parameter path ("layers/attn/q"), the axis split over the
                       mesh's model axis (attached to every `nnx.Param` as its sharding
                       annotation, `out_sharding`).
  cache_layout(config) the key/value cache entries one layer stores per token slot and where
                       the slot axis sits among them (`CacheEntry`; dense attention: k and v,
                       (M, K) each, stored heads first, (M, C, K), the layout the attention
                       dots read; latent attention stores the latent and the shared rope key,
                       slot first).
  segments(config)     runs of consecutive layers with the same parameter structure, each
                       a stacked Block module at model.<segment.key>, scanned
                       (dense models: one segment "layers"; DeepSeek-style MoE: dense layers,
                       then MoE layers).

Every field has a default that fits the dense families (llama, gemma, gpt2, gpt_neox), so a new
dense family only states what differs. See docs/adding_a_family.md.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:  # pragma: no cover
  from synergy_jax.models.config import ModelConfig


UNIT_KINDS = ("heads", "experts")


@dataclasses.dataclass(frozen=True)
class UnitParam:
  """One parameter leaf's share of a kind of unit.

  path: the leaf's path in the parameter state, e.g. ("layers", "attn", "q").
  layer_axis / unit_axis: the leaf's axes indexed by the layer and by the unit within the layer
    (attn.q (L, D, N, K): 0 and 2; attn.o (L, N, K, D): 0 and 1). Entry [.., l, .., u, ..] belongs to unit
    (l, u); the other axes are the unit's own parameters.
  kind: "weight" (perturbed by noise, counted in the weight RMS) or "bias" (owned by the unit
    for fine-tuning masks, not perturbed — the study perturbs weights only).
  units: which kind of unit the slice belongs to: "heads" (attention heads, layers numbered
    0 .. L-1) or "experts" (MoE experts, layers numbered by MoE layer 0 .. L_moe-1, units
    0 .. E+S-1 with the routed experts first).
  layer_start / unit_start: the leaf's index 0 on its layer / unit axis is layer layer_start /
    unit unit_start of that numbering (a leaf of a later layer segment, or the shared experts
    after the E routed ones).
  """
  path: tuple[str, ...]
  layer_axis: int
  unit_axis: int
  kind: str = "weight"
  units: str = "heads"
  layer_start: int = 0
  unit_start: int = 0

  def __post_init__(self):
    if self.kind not in ("weight", "bias"):
      raise ValueError(f"UnitParam {self.path}: kind={self.kind!r} must be 'weight' or 'bias'")
    if self.units not in UNIT_KINDS:
      raise ValueError(f"UnitParam {self.path}: units={self.units!r} must be one of {UNIT_KINDS}")
    if self.layer_axis == self.unit_axis:
      raise ValueError(f"UnitParam {self.path}: layer_axis and unit_axis are both "
                       f"{self.layer_axis}")


@dataclasses.dataclass(frozen=True)
class Segment:
  """Layers start .. stop-1: model.<key> is `block(maker, config)` built with a leading layer
  axis on every parameter (an nnx.Module class, called as block(x, attend) -> x; decoder.py)."""
  key: str
  start: int
  stop: int
  block: Callable

  @property
  def num_layers(self) -> int:
    return self.stop - self.start


# Units of the dense families: attention heads. A head owns its query-projection rows
# layers.attn.q[l, :, h, :] (and attn.q_bias[l, h, :] where the model has q/k/v biases) and its
# output-projection columns attn.o[l, h, :, :]; keys and values are shared by a query group
# under GQA and belong to no head.
ATTENTION_HEADS = (UnitParam(("layers", "attn", "q"), 0, 2),
                   UnitParam(("layers", "attn", "q_bias"), 0, 1, "bias"),
                   UnitParam(("layers", "attn", "o"), 0, 1))


def attention_heads(cfg: "ModelConfig", segments=None) -> tuple[UnitParam, ...]:
  """ATTENTION_HEADS, without the q bias when the config has no q/k/v biases; with
  `segments` (Segment records), one copy per segment at its key and first layer."""
  base = tuple(u for u in ATTENTION_HEADS if cfg.qkv_bias or u.kind != "bias")
  if segments is None:
    return base
  return tuple(dataclasses.replace(u, path=(seg.key,) + u.path[1:], layer_start=seg.start)
               for seg in segments for u in base)


# Axis split over the mesh's model axis, per parameter path "layers/attn/q" or "embed" (counting
# the leading layer axis); parameters not listed are replicated. A per-layer parameter of any
# segment is looked up under "layers/..." when its own path is not listed (sharding.annotation). Heads for attention, the hidden
# width for MLPs, the vocabulary for embeddings.
DENSE_SHARD_AXES: Mapping[str, int] = {
    "layers/attn/q": 2, "layers/attn/k": 2, "layers/attn/v": 2, "layers/attn/o": 1,
    "layers/attn/q_bias": 1, "layers/attn/k_bias": 1, "layers/attn/v_bias": 1,
    "layers/mlp/gate": 2, "layers/mlp/up": 2, "layers/mlp/down": 1, "layers/mlp/gate_bias": 1,
    "layers/mlp/up_bias": 1, "embed": 0, "lm_head": 0}


@dataclasses.dataclass(frozen=True)
class CacheEntry:
  """One named cache entry of a layer: `shape` per token slot, and the position of the slot
  axis C among those axes in storage (0: slot first, (C, *shape); dense k/v use 1: (M, C, K),
  so that the attention dots read each head's keys contiguously, without a transposing copy
  per decode step; docs/perf_capture.md)."""
  shape: tuple[int, ...]
  slot_axis: int = 0

  def __post_init__(self):
    if not 0 <= self.slot_axis <= len(self.shape):
      raise ValueError(f"CacheEntry{self.shape}: slot_axis={self.slot_axis} is outside "
                       f"0..{len(self.shape)}")

  def stored(self, slots: int) -> tuple[int, ...]:
    """The entry's shape per layer and batch row with `slots` slots: shape with C inserted."""
    a = self.slot_axis
    return self.shape[:a] + (slots,) + self.shape[a:]


def cache_entry(entry) -> CacheEntry:
  """A layout value as a CacheEntry (a plain per-slot shape tuple means slot first)."""
  return entry if isinstance(entry, CacheEntry) else CacheEntry(tuple(entry))


def dense_cache_layout(cfg: "ModelConfig") -> dict[str, CacheEntry]:
  """Per layer and token slot: k and v of every key/value head, (M, K) each, stored heads
  first: (M, C, K)."""
  kv = CacheEntry((cfg.num_kv_heads, cfg.head_dim), slot_axis=1)
  return {"k": kv, "v": kv}


@dataclasses.dataclass(frozen=True)
class Family:
  """What a model family file registers.

  name: the `ModelConfig.family` value. model_types: HF `model_type`s it reads.
  config_from_hf(dict) -> ModelConfig; config_to_hf(ModelConfig) -> dict.
  weights(config) -> list[convert.Weight]: the HF checkpoint's tensors and how each maps onto
    parameter paths (used by load, save, init and the strict checks); a Weight names its
    segment and, for MoE tensors, an expert index "{e}".
  block: the Block nnx.Module class of the default segment: block(maker, config) declares one
    layer's parameters through the modules.ParamMaker (which stacks them over layers), and
    block(x, attend) -> x runs one layer (decoder.py scans the stack).
  outer(config, maker) -> dict name -> nnx.Param | nnx.Module: the weights outside the layer
    stack (embeddings, final norm, output head), set as Model attributes of those names.
  embed(config, model, ids, positions) -> x; unembed(config, model, x) -> logits (float32):
    read the Model's outer weights.
  rope_tables(config) -> dict name -> inverse frequencies (R/2,) float32; the tables a block
    can ask for with attend.rope(x, name). Default: {"default": ops.rope_inv_freq(config)}.
  ignorable(name) -> bool: checkpoint keys that may be present and are skipped (e.g. stale rotary
    buffers).
  rename(name) -> name: maps a stored checkpoint tensor name onto the family's canonical name
    before the strict checks (older layouts, e.g. GPT-2 checkpoints saved without the
    "transformer." prefix). Default: names are used as stored.
  units(config) -> tuple[UnitParam]: the parameter slices of each head (default
    `attention_heads`).
  shard_axes: leaf path -> axis split over the model axis (default `DENSE_SHARD_AXES`).
  cache_layout(config) -> name -> CacheEntry, or a per-slot shape tuple (slot axis first)
    (default `dense_cache_layout`).
  segments(config) -> tuple[Segment] (default: one segment "layers" of every layer, run by
    `block`).
  """
  name: str
  model_types: tuple[str, ...]
  config_from_hf: Callable[[dict], "ModelConfig"]
  config_to_hf: Callable[["ModelConfig"], dict]
  weights: Callable[["ModelConfig"], list]
  block: Callable
  embed: Callable
  unembed: Callable
  outer: Callable
  ignorable: Callable[[str], bool] = lambda name: False
  rope_tables: Callable[["ModelConfig"], dict] | None = None
  rename: Callable[[str], str] | None = None
  units: Callable[["ModelConfig"], tuple[UnitParam, ...]] = attention_heads
  shard_axes: Mapping[str, int] = dataclasses.field(default_factory=lambda: DENSE_SHARD_AXES)
  cache_layout: Callable[["ModelConfig"], dict] = dense_cache_layout
  segments: Callable[["ModelConfig"], tuple[Segment, ...]] | None = None

  def segments_of(self, cfg: "ModelConfig") -> tuple[Segment, ...]:
    """The layer segments of cfg, checked to cover layers 0 .. L-1 in order."""
    segs = (self.segments(cfg) if self.segments is not None
            else (Segment("layers", 0, cfg.num_layers, self.block),))
    at = 0
    for s in segs:
      if s.start != at or s.stop <= s.start:
        raise ValueError(f"family {self.name!r}: segment {s.key!r} covers layers "
                         f"{s.start}..{s.stop - 1}, expected to start at layer {at}")
      at = s.stop
    if at != cfg.num_layers:
      raise ValueError(f"family {self.name!r}: segments cover {at} of {cfg.num_layers} layers")
    return segs
