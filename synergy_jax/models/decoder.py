"""The decoder stack shared by every family: embed, scan over layers, unembed.

`run(model, ...)` drives a `Model` (module.py): the family's `embed`, then each layer segment's
stacked Block module (an nnx.Module whose every nnx.Param has a leading layer axis, e.g.
model.layers.attn.q (L, D, N, K)), then the family's `unembed`. This file owns everything around
the attention core that families should not repeat: positions and masks, the key/value cache,
per-layer sliding windows, head masks (interventions) and per-head capture (`Attend`, handed
to every Block call).

Scanning a stack: the Block stack is split once (`nnx.split`) into its graph definition and
its stacked state; `lax.scan` runs over the state's leading axis and rebuilds one layer's Block
in the body with `nnx.merge` (the functional pattern Flax documents for layer stacks), so
compile time does not grow with depth and the traced program is the plain per-layer math.

Axis letters: B batch, S query time, C key/cache time, L layers, N query heads, M key/value heads,
K head dim, D hidden, V vocabulary.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from flax import nnx

from synergy_jax.models import ops
from synergy_jax.models.config import FAMILIES, ModelConfig
from synergy_jax.models.contract import CacheEntry, cache_entry


@dataclasses.dataclass(frozen=True)
class Cache:
  """Preallocated cache for all layers, laid out as the family says (Family.cache_layout).

  entries: name -> (L, B, *stored shape) in the parameter dtype, the stored shape being the
  per-slot shape with the slot axis C inserted where the layout's CacheEntry says; dense
  attention stores "k" and "v" heads first, (L, B, M, C, K) each; a slot-first entry is
  (L, B, C, *per-slot shape); or, per-layer storage (empty_cache(per_layer=True), used with
  run(layers=...)), name -> a tuple of L buffers (B, *stored shape), one per layer, so that a
  layer reads its entries without slicing them out of a stacked array (XLA:CPU copies such a
  slice at every decoding step). pos: (B, C) int32 token position of each slot.
  valid: (B, C) bool, True for slots holding a real token (not left padding); slots not yet
  written are excluded by causality (their positions lie in the future).
  """
  entries: dict
  pos: Any
  valid: Any


jax.tree_util.register_dataclass(Cache, data_fields=["entries", "pos", "valid"], meta_fields=[])


def cache_layout(cfg: ModelConfig) -> dict[str, CacheEntry]:
  """The family's cache layout (Family.cache_layout), every entry as a CacheEntry."""
  return {name: cache_entry(e) for name, e in FAMILIES[cfg.family].cache_layout(cfg).items()}


def cache_dtype(cfg: ModelConfig, dtype):
  """The dtype a decoding cache of a `dtype` model is stored in.

  float32 for a bfloat16/float16 model of a dense-attention family (cache entries k and v, read
  only by ops.attend) on JAX's CPU backend: XLA:CPU has no lower-precision batched dot, so
  ops.attend widens its cache operands to float32, and a cache held in the model dtype was
  widened — read and written again — at every decoding step (bfloat16, batch 64, 21 M Llama:
  +38–62 % tok/s with the float32 cache, docs/perf_capture.md). Values written are first
  rounded to the model dtype (``_to_cache``), so the cache holds the same numbers. Otherwise the
  model dtype (GPU/TPU, float32 models, latent caches such as MLA's)."""
  low = jnp.issubdtype(dtype, jnp.floating) and jnp.dtype(dtype).itemsize < 4
  if low and jax.default_backend() == "cpu" and set(cache_layout(cfg)) == {"k", "v"}:
    return jnp.float32
  return dtype


def _to_cache(x, dtype):
  """x in the cache dtype, keeping x's own rounding when the cache is wider (``ops.rounded``)."""
  return ops.rounded(x, x.dtype, dtype)


def empty_cache(cfg: ModelConfig, positions, valid, max_new_tokens: int, dtype,
                per_layer: bool = False) -> Cache:
  """A zero cache for prompts with positions/valid (B, P) plus max_new_tokens future slots;
  per_layer: one buffer per layer and entry (see Cache), for run(layers=...)."""
  b, p = positions.shape
  lens = valid.sum(1).astype(jnp.int32)
  shapes = {name: (b, *e.stored(p + max_new_tokens)) for name, e in cache_layout(cfg).items()}
  if per_layer:
    entries = {name: tuple(jnp.zeros(shape, dtype) for _ in range(cfg.num_layers))
               for name, shape in shapes.items()}
  else:
    entries = {name: jnp.zeros((cfg.num_layers, *shape), dtype) for name, shape in shapes.items()}
  return Cache(entries=entries,
               pos=jnp.concatenate([positions, lens[:, None] + jnp.arange(
                   max_new_tokens, dtype=jnp.int32)[None]], axis=1),
               valid=jnp.concatenate([valid, jnp.ones((b, max_new_tokens), bool)], axis=1))


def grow_cache(cfg: ModelConfig, cache: Cache, new_slots: int) -> Cache:
  """`cache` with `new_slots` more future slots at its end: zero entries (stacked or per-layer),
  positions continuing from the last slot's, valid. The cache must already end in a future slot
  (one made by empty_cache with max_new_tokens >= 1), so that its last position is a generated
  token's and the next slot's position is one more.

  generate grows its cache in phases (generation.cache_phase_stops): every decoding step reads
  every slot of the cache, so a cache that holds only the slots the phase can fill reads fewer.
  One copy of the cache per growth."""
  new_slots = int(new_slots)
  if new_slots < 1:
    raise ValueError(f"grow_cache: new_slots must be >= 1, got {new_slots}")
  layout = cache_layout(cfg)

  def pad(a, entry, lead):  # lead: axes before the stored shape ((L, B) stacked, (B,) per layer)
    width = [(0, 0)] * a.ndim
    width[lead + entry.slot_axis] = (0, new_slots)
    return jnp.pad(a, width)

  entries = {}
  for name, value in cache.entries.items():
    entry = layout[name]
    entries[name] = (tuple(pad(a, entry, 1) for a in value) if isinstance(value, tuple)
                     else pad(value, entry, 2))
  b = cache.pos.shape[0]
  pos = cache.pos[:, -1:] + 1 + jnp.arange(new_slots, dtype=cache.pos.dtype)[None]
  return Cache(entries=entries, pos=jnp.concatenate([cache.pos, pos], axis=1),
               valid=jnp.concatenate([cache.valid, jnp.ones((b, new_slots), bool)], axis=1))


class Attend:
  """Handed to a family's Block call: rotary embedding, the layer's cache and the attention core.

  `attend.rope(x, table="default")` rotates q or k (B, S, heads, K) to the current positions;
  `attend.positions` (B, S) are those positions; `attend.layer` (traced int) and
  `attend.window` (traced int, 0 = full attention) describe the current layer, for families
  whose layers differ (e.g. local/global rope tables).

  Dense attention: `attend(q, k, v)` writes k, v (B, S, M, K) into the cache (if any; stored
  heads first, (L, B, M, C, K)), attends, applies the head mask and returns the per-head
  outputs (B, S, N, K) that enter the output projection. Those outputs are what `head_norms`
  measures.

  Families with another cache layout (Family.cache_layout; e.g. deepseek_v2 caches a latent and
  a rope key, not K/V) use the two halves of that call:
    full = attend.cache({name: (B, S, *slot shape)})  writes the current tokens' entries and
      returns every slot of this layer in the stored layout, name -> (B, *stored shape)
      ((B, C, *slot shape) for a slot-first entry; without a cache, the entries themselves,
      C = S, axes in the same order);
    attend.core(q, keys, values, scale=...)  attends q (B, S, N, K) over keys (B, C, M, K) and
      values (B, C, M, Kv) built from `full` (or keys (B, M, C, K), values (B, M, C, Kv) with
      heads_first=True), with the cache's positions and validity, applies the head mask and
      returns the per-head outputs (B, S, N, Kv); `project=` maps attention results computed in
      another space to the per-head outputs first (see core).

  Mixture-of-experts layers: `attend.expert_mask` is this MoE layer's row (U,) of the traced
  expert mask (or None: all experts on); the Block calls `res = self.moe(h,
  expert_mask=attend.expert_mask)`, then `attend.record_experts(res)` (a moe.MoEOutput), then
  adds res.out to the residual. The decoder collects the recorded activity of every MoE layer.
  """

  def __init__(self, cfg, positions, valid, tables, layer, window, cache, cache_keys, slot,
               mask_row, mean_row):
    self.cfg, self.positions, self.valid = cfg, positions, valid
    self.layout = cache_layout(cfg)  # name -> CacheEntry
    self.entries = cache  # name -> (L, B, *stored) or a tuple of L (B, *stored): or None
    self.cache_keys = cache_keys  # (pos (B, C), valid (B, C)) of the cache slots, or None
    self.tables = tables  # name -> (cos, sin), each (B, S, R)
    self.layer, self.window, self.slot = layer, window, slot
    self.mask_row, self.mean_row = mask_row, mean_row
    self.heads = None  # set by core(): (B, S, N, Kv)
    self.new_kv = None  # set by cache() when caching: the updated cache entries
    self.expert_mask = None  # MoE layers: (U,) traced row of the expert mask, set by run()
    self.experts = None  # set by record_experts: the layer's moe.MoEOutput

  def rope(self, x, table: str = "default"):
    """Rotates x (B, S, heads, K) to the current positions with the named frequency table."""
    cos, sin = self.tables[table]
    return ops.apply_rope(x, cos, sin)

  def record_experts(self, res):
    """Records an MoE layer's output (moe.MoEOutput: activity (B, S, U) of its experts)."""
    if self.experts is not None:
      raise ValueError(f"family {self.cfg.family!r}: record_experts called twice in one layer")
    self.experts = res

  def cache(self, entries: dict) -> dict:
    """Writes this layer's cache entries for the current tokens (slots slot .. slot+S-1) and
    returns the layer's full entries in the stored layout: name -> (B, *stored shape) (see the
    class docstring).

    entries: name -> (B, S, *slot shape), exactly the names of the family's cache layout.
    """
    if set(entries) != set(self.layout):
      raise ValueError(f"family {self.cfg.family!r}: the block writes cache entries "
                       f"{sorted(entries)}, its cache layout has {sorted(self.layout)}")
    stored = {}  # name -> (B, *stored shape with C = S)
    for name, x in entries.items():
      e = self.layout[name]
      if tuple(x.shape[2:]) != e.shape:
        raise ValueError(f"family {self.cfg.family!r}: cache entry {name!r} per slot has shape "
                         f"{tuple(x.shape[2:])}, the cache layout says {e.shape}")
      stored[name] = jnp.moveaxis(x, 1, 1 + e.slot_axis)
    if self.entries is None:
      return stored
    new, layer_entries = {}, {}
    for name, x in stored.items():
      full = self.entries[name]  # (L, B, *stored shape), or L buffers (B, *stored shape)
      # int32 indices whatever jax_enable_x64 says (dynamic_update_slice needs one index type)
      a = self.layout[name].slot_axis
      at = (0,) + (0,) * a + (self.slot,) + (0,) * (x.ndim - 2 - a)
      if isinstance(full, tuple):  # per-layer buffers: the layer index must be static
        if not isinstance(self.layer, int):
          raise ValueError(f"family {self.cfg.family!r}: a per-layer cache needs a static "
                           "layer index (decoder.run(layers=...), not the scanned stack)")
        buf = full[self.layer]
        buf = jax.lax.dynamic_update_slice(
            buf, _to_cache(x, buf.dtype), tuple(jnp.asarray(i, jnp.int32) for i in at))
        new[name] = full[:self.layer] + (buf,) + full[self.layer + 1:]
        layer_entries[name] = buf
      else:
        start = tuple(jnp.asarray(i, jnp.int32) for i in (self.layer,) + at)
        new[name] = jax.lax.dynamic_update_slice(full, _to_cache(x[None], full.dtype), start)
        layer_entries[name] = new[name][self.layer]
    self.new_kv = {**self.entries, **new}
    return layer_entries

  def core(self, q, keys, values, *, scale: float, softcap: float | None = None,
           heads_first: bool = False, project=None):
    """Per-head outputs (B, S, N, Kv) of q (B, S, N, K) over keys (B, C, M, K) and values
    (B, C, M, Kv) (heads_first: (B, M, C, K) and (B, M, C, Kv)) of every cache slot (after
    `cache`), or of the current tokens without a cache; masked by causality, validity and the
    layer's window; head mask applied.

    project: optional map of the attention-weighted values (B, S, N, Kv) to the per-head outputs
    (B, S, N, V), applied before the head mask and the recording, for families that attend in
    another space than the heads' outputs (deepseek_v2's absorbed decoding attends over latents;
    its W_UV gives each head's output). Mask, mean ablation and head_norms then all act on the
    per-head outputs, whichever form computed them."""
    if self.entries is None:
      k_pos, k_valid = self.positions, self.valid
    else:
      if self.new_kv is None:
        raise ValueError(f"family {self.cfg.family!r}: the block attends before writing its "
                         "cache entries (call attend.cache(...) first)")
      k_pos, k_valid = self.cache_keys
    mask = ops.attention_mask(self.positions, k_pos, k_valid, self.window)
    heads = ops.attend(q, keys, values, mask, scale=scale, softcap=softcap,
                       heads_first=heads_first)
    if project is not None:
      heads = project(heads)
    if self.mask_row is not None:
      scale_h = self.mask_row.astype(heads.dtype)[None, None, :, None]  # (1, 1, N, 1)
      heads = heads * scale_h
      if self.mean_row is not None:
        heads = heads + (1 - scale_h) * self.mean_row.astype(heads.dtype)[None, None]
    self.heads = heads
    return heads

  def __call__(self, q, k, v, *, scale: float | None = None, softcap: float | None = None):
    scale = self.cfg.head_dim ** -0.5 if scale is None else scale
    full = self.cache({"k": k, "v": v})  # (B, M, C, K) each (dense_cache_layout)
    heads_first = self.layout["k"].slot_axis == 1
    return self.core(q, full["k"], full["v"], scale=scale, softcap=softcap,
                     heads_first=heads_first)


def positions_from_mask(valid):
  """Token positions (B, S) int32: 0 at each row's first real token, counting real tokens only."""
  return jnp.maximum(jnp.cumsum(valid.astype(jnp.int32), axis=1) - 1, 0)


EXPERT_ACTIVITY = ("dense", "routed")


def moe_segments(cfg: ModelConfig, segments) -> list[int | None]:
  """Per segment: the MoE-layer index of its first layer, or None for a dense segment.

  A segment's layers must be all MoE layers or all dense (ValueError naming it otherwise)."""
  moe = set(cfg.moe.moe_layers) if cfg.moe is not None else set()
  out = []
  for seg in segments:
    kinds = {i in moe for i in range(seg.start, seg.stop)}
    if len(kinds) > 1:
      raise ValueError(f"family {cfg.family!r}: segment {seg.key!r} (layers {seg.start}.."
                       f"{seg.stop - 1}) mixes MoE and dense layers")
    out.append(cfg.moe.moe_index(seg.start) if kinds == {True} else None)
  return out


def split_layers(model) -> list:
  """Per-layer parameter states for run(layers=...): for each segment of the family
  (Family.segments_of), (graphdef, [state of layer seg.start, ..., state of layer seg.stop-1]).

  Slicing is done here once (inside a jitted caller: once per call, before its token loop), so
  that an unrolled decoding step reads every layer's weights from their own buffers; XLA:CPU
  otherwise copies each layer's weight slices out of the stacked (L, ...) arrays at every step.
  Costs one extra copy of the layer weights while the caller runs."""
  cfg = model.config
  out = []
  for seg in FAMILIES[cfg.family].segments_of(cfg):
    graphdef, stacked = nnx.split(getattr(model, seg.key))
    out.append((graphdef, [jax.tree.map(lambda a, j=j: a[j], stacked)
                           for j in range(seg.num_layers)]))
  return out


def layer_weight_bytes(model) -> int:
  """Bytes of the stacked layer weights of every segment: the extra copy split_layers makes."""
  cfg = model.config
  return sum(int(x.size) * x.dtype.itemsize
             for seg in FAMILIES[cfg.family].segments_of(cfg)
             for x in jax.tree_util.tree_leaves(nnx.state(getattr(model, seg.key), nnx.Param)))


def run(model, ids, positions, valid, *, cache: Cache | None = None,
        slot=0, head_mask=None, head_means=None, capture: str | None = None,
        capture_outputs: bool = False, logits_at: str = "all", remat: bool = False,
        expert_mask=None, expert_activity: str = "dense", layers: list | None = None):
  """Runs the decoder `model` (a Model: config + nnx.Param weights) on ids (B, S).

  positions (B, S) int32; valid (B, S) bool (False = padding). With `cache`, the new keys/values
  are written at cache slots slot .. slot+S-1 and queries attend over the whole cache.
  head_mask (L, N) scales each head's output (0 = ablate); head_means (L, N, K) optional, replaces
  the removed fraction with the supplied mean output (mean ablation).
  capture: None, "all" (every query position) or "last" (the last one) -> norms (B, L, S', N)
  float32 and, if capture_outputs, heads (B, L, S', N, K).
  logits_at: "all" -> (B, S, V) float32, "last" -> (B, 1, V), "none" -> None.
  remat: recompute each layer's activations in the backward pass (jax.checkpoint; training).
  expert_mask (L_moe, U) (MoE models): scales each expert's contribution (0 removes it; routing
  unchanged); traced. expert_activity: "dense" (‖E_u(x)‖ of every expert at every token) or
  "routed" (‖g_u(x) E_u(x)‖, 0 where not selected); see moe/block.py.
  layers: split_layers(model) (computed by the caller, outside its token loop): the layers run
  unrolled, each from its own parameter buffers (and its own cache buffers when the cache is
  per-layer) instead of a lax.scan over the stacked state; same operations, same results.

  Returns (logits, new_cache, norms, heads, experts): experts (B, L_moe, S', U) float32 expert
  activity when capturing an MoE model, else None.
  """
  if expert_activity not in EXPERT_ACTIVITY:
    raise ValueError(f"expert_activity={expert_activity!r} is not known (known: "
                     f"{EXPERT_ACTIVITY})")
  cfg = model.config
  fam = FAMILIES[cfg.family]
  x = fam.embed(cfg, model, ids, positions)
  inv_freqs = (fam.rope_tables(cfg) if fam.rope_tables is not None
               else {"default": ops.rope_inv_freq(cfg)})
  tables = {name: ops.rope_angles(positions, f) for name, f in inv_freqs.items()}
  windows = jnp.asarray(cfg.layer_windows, jnp.int32)
  kv = None if cache is None else cache.entries
  outs = []
  segments = fam.segments_of(cfg)
  if layers is not None and len(layers) != len(segments):
    raise ValueError(f"family {cfg.family!r}: layers= has {len(layers)} segments, the model "
                     f"{len(segments)} (pass decoder.split_layers(model))")
  for k, (seg, moe_start) in enumerate(zip(segments, moe_segments(cfg, segments))):
    if layers is None:
      graphdef, stacked = nnx.split(getattr(model, seg.key))  # state leaves (layers, ...)
    else:
      graphdef, stacked = layers[k][0], None
    xs = {"p": stacked, "layer": jnp.arange(seg.start, seg.stop, dtype=jnp.int32),
          "window": windows[seg.start:seg.stop]}
    if head_mask is not None:
      xs["mask"] = jnp.asarray(head_mask)[seg.start:seg.stop]
      if head_means is not None:
        xs["mean"] = jnp.asarray(head_means)[seg.start:seg.stop]
    if expert_mask is not None and moe_start is not None:
      xs["expert_mask"] = jnp.asarray(expert_mask)[moe_start:moe_start + seg.num_layers]

    def body(carry, xl, graphdef=graphdef, moe_layer=moe_start is not None):
      x, kv = carry
      att = Attend(cfg, positions, valid, tables, xl["layer"], xl["window"], kv,
                   None if cache is None else (cache.pos, cache.valid), slot, xl.get("mask"),
                   xl.get("mean"))
      att.expert_mask = xl.get("expert_mask")
      x = nnx.merge(graphdef, xl["p"])(x, att)  # one layer's Block
      if att.heads is None:
        raise ValueError(f"family {cfg.family!r} block never called attend()")
      if moe_layer != (att.experts is not None):
        raise ValueError(f"family {cfg.family!r}: a block of segment {seg.key!r} "
                         + ("never called attend.record_experts() in an MoE layer" if moe_layer
                            else "recorded experts in a dense layer"))
      kv = att.new_kv if cache is not None else kv
      out = {}
      if capture is not None:
        h = att.heads if capture == "all" else att.heads[:, -1:]
        out["norms"] = ops.head_norm(h)
        if capture_outputs:
          out["heads"] = h
        if moe_layer:
          a = att.experts.activity(expert_activity)  # (B, S, U) float32
          out["experts"] = a if capture == "all" else a[:, -1:]
      return (x, kv), out

    if layers is None:
      (x, kv), ys = jax.lax.scan(jax.checkpoint(body) if remat else body, (x, kv), xs)
    else:  # unrolled: static layer indices, per-layer parameter (and cache) buffers
      per = []
      for j, state in enumerate(layers[k][1]):
        xl = {name: a[j] for name, a in xs.items() if name != "p"}
        xl["p"], xl["layer"] = state, seg.start + j
        (x, kv), y = body((x, kv), xl)
        per.append(y)
      ys = jax.tree.map(lambda *a: jnp.stack(a), *per)
    outs.append(ys)
  new_cache = None if cache is None else Cache(kv, cache.pos, cache.valid)
  if logits_at == "last":
    x = x[:, -1:]
  logits = None if logits_at == "none" else fam.unembed(cfg, model, x)
  norms = heads = experts = None
  if capture is not None:
    def cat(name):
      parts = [o[name] for o in outs if name in o]
      return parts[0] if len(parts) == 1 else jnp.concatenate(parts)
    norms = jnp.moveaxis(cat("norms"), 0, 1)  # (B, L, S', N)
    if capture_outputs:
      heads = jnp.moveaxis(cat("heads"), 0, 1)  # (B, L, S', N, K)
    if any("experts" in o for o in outs):
      experts = jnp.moveaxis(cat("experts"), 0, 1)  # (B, L_moe, S', U), MoE layers in order
  return logits, new_cache, norms, heads, experts
