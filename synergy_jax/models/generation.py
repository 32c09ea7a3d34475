"""Decoding with a preallocated key/value cache and per-head capture; teacher-forced scoring.

Head activity (the study's time series): head_norms[b, l, h, t] = ‖softmax(q Kᵀ/√d) V‖₂ of query
head h in layer l at the position whose logits produced new token t — the last prompt token for
t = 0, new token t-1 otherwise — measured on the head's output as it enters the output projection
(after any head_mask), in float32.

Token layout shared by `generate` and `score` ("left-padded block + continuation"):
  sequences (B, P + T): row b is [P - n_b padding ids | its n_b prompt tokens | T new tokens],
  where n_b = prompt_lengths[b] and P = max(prompt_lengths). `score(model, result.sequences,
  result.prompt_lengths)` therefore scores exactly what `generate` produced, and a tokenizer's
  left-padded batch (padding_side="left") plus its attention_mask.sum(1) has the same layout.

Expert activity (mixture-of-experts models): expert_norms[b, m, u, t] for MoE layer m
(config.moe.moe_layers[m]) and unit u (the E routed experts in router order, then the S shared
experts) at the same positions, float32: expert_activity="dense" (default) is ‖E_u(x)‖₂ of
every expert whether or not the router chose it; "routed" is ‖g_u(x) E_u(x)‖₂, 0 where u was
not chosen (shared experts: their gate c_u(x), 1 without one). Both after expert_mask (an
ablated expert reads 0). None for dense models. See docs/moe.md.

Compilation: prompts are left-padded internally to a bucket width (next power of two >= 8), the
cache grows in phases up to bucket + max_new_tokens slots (``cache_phase_stops``: one compiled
decoding loop per phase), and temperature, top_p, rng, head and expert masks are traced — so new
prompts of lengths within a bucket and new interventions reuse the compiled program.

Axis letters: B batch, P prompt block, T new tokens, L layers, H (= N) query heads, K head dim,
V vocabulary, C cache slots, L_moe MoE layers, U experts per MoE layer (routed + shared).
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.models import decoder, ops
from synergy_jax.models.module import Model, check_expert_mask, check_head_mask


@dataclasses.dataclass(frozen=True)
class GenerateResult:
  """tokens (B, T) int32 new tokens (after an EOS with stop_at_eos: the pad id);
  head_norms (B, L, H, T) float32 (NaN after a row's EOS with stop_at_eos);
  head_outputs (B, L, H, T, K) or None; sequences (B, P + T) and prompt_lengths (B,) in the layout
  of the module docstring; lengths (B,) new tokens per row up to and including its EOS (T if none);
  expert_norms (B, L_moe, U, T) float32 for MoE models (NaN after a row's EOS with stop_at_eos),
  None for dense ones.
  """
  tokens: Any
  head_norms: Any
  sequences: Any
  prompt_lengths: Any
  lengths: Any
  head_outputs: Any = None
  expert_norms: Any = None


@dataclasses.dataclass(frozen=True)
class ScoreResult:
  """logprobs (B, T, V) float32 log-probabilities (nats) of the next token at the positions that
  produced continuation tokens 0..T-1; token_logprobs (B, T) those of the given tokens;
  head_norms (B, L, H, T) as in generate; head_outputs (B, L, H, T, K) or None;
  expert_norms (B, L_moe, U, T) as in generate (None for dense models)."""
  logprobs: Any
  token_logprobs: Any
  head_norms: Any
  head_outputs: Any = None
  expert_norms: Any = None


def bucket(n: int, minimum: int = 8) -> int:
  """Buffer width for a prompt block of n tokens: the next power of two, at least `minimum`."""
  return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def right_align(input_ids, attention_mask=None, pad_id: int = 0, width: int | None = None):
  """Right-aligns each row's real tokens (any padding side in) into (B, width) numpy arrays.

  Returns ids (B, width) int32, valid (B, width) bool, lengths (B,) int32. Raises naming the
  prompt index of an empty prompt.
  """
  if (attention_mask is None and isinstance(input_ids, (list, tuple)) and input_ids
      and all(np.ndim(row) == 1 for row in input_ids)):
    # a ragged list of prompts: pad on the left here
    rows = [np.asarray(row) for row in input_ids]
    longest = max(len(r) for r in rows)
    ids = np.full((len(rows), longest), pad_id, np.int64)
    attention_mask = np.zeros((len(rows), longest), bool)
    for b, r in enumerate(rows):
      if len(r):
        ids[b, longest - len(r):] = r
        attention_mask[b, longest - len(r):] = True
  else:
    ids = np.asarray(input_ids)
  if ids.ndim == 1:
    ids = ids[None]
    if attention_mask is not None:
      attention_mask = np.asarray(attention_mask)[None]
  if ids.ndim != 2:
    raise ValueError(f"input_ids must be (batch, seq), got shape {ids.shape}")
  mask = np.ones(ids.shape, bool) if attention_mask is None else np.asarray(attention_mask) != 0
  if mask.shape != ids.shape:
    raise ValueError(f"attention_mask shape {mask.shape} != input_ids shape {ids.shape}")
  lengths = mask.sum(1).astype(np.int32)
  for b, n in enumerate(lengths):
    if n == 0:
      raise ValueError(f"prompt {b} is empty (its attention_mask is all zeros)")
  width = int(lengths.max()) if width is None else width
  out = np.full((ids.shape[0], width), pad_id, np.int32)
  valid = np.zeros((ids.shape[0], width), bool)
  for b in range(ids.shape[0]):
    row = ids[b][mask[b]]
    out[b, width - len(row):] = row
    valid[b, width - len(row):] = True
  return out, valid, lengths


def pad_id_of(cfg) -> int:
  if cfg.pad_token_id is not None:
    return int(cfg.pad_token_id)
  return int(cfg.eos_token_ids[0]) if cfg.eos_token_ids else 0


def _at(*index):
  """Start indices for dynamic_update_slice, all int32 (also under jax_enable_x64)."""
  return tuple(jnp.asarray(i, jnp.int32) for i in index)


def first_argmax(logits):
  """jnp.argmax(logits, axis=-1) as int32 (the first maximum; the first NaN where a row has one),
  as two plain reductions: XLA:CPU's variadic (value, index) reduce behind argmax took 0.6 ms
  per decoding step for (64, 4096) float32 logits, this 0.15 ms (docs/perf_capture.md)."""
  top = jnp.max(logits, axis=-1, keepdims=True)  # NaN where the row has a NaN
  hit = (logits == top) | jnp.isnan(logits)
  v = logits.shape[-1]
  return jnp.min(jnp.where(hit, jnp.arange(v, dtype=jnp.int32), v), axis=-1).astype(jnp.int32)


def select_token(logits, key, greedy: bool, temperature, top_p):
  """Next token (B,) from logits (B, V) float32: argmax, or a sample from the temperature-scaled
  distribution restricted to the smallest set of tokens whose probability reaches top_p."""
  if greedy:
    return first_argmax(logits)
  logits = logits / temperature
  order = jnp.argsort(-logits, axis=-1)  # (B, V) most likely first
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  sorted_logits = jnp.where(mass_before < top_p, sorted_logits, ops.MASK_VALUE)
  choice = jax.random.categorical(key, sorted_logits, axis=-1)  # index into `order`
  return jnp.take_along_axis(order, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)


# generate grows its cache in phases (cache_phase_stops): by default one phase per
# CACHE_PHASE_TOKENS new tokens, at most MAX_CACHE_PHASES (each phase compiles its own copy of
# the decoding loop).
CACHE_PHASE_TOKENS = 32
MAX_CACHE_PHASES = 4


def cache_phase_stops(max_new_tokens: int, phases: int | None = None) -> tuple[int, ...]:
  """The new-token counts at which generate's cache phases end (the last is max_new_tokens).

  A decoding step attends over every slot of the cache it is given, filled or not; a cache
  sized once for the whole call (prompt block + max_new_tokens slots) makes every step read
  all of them. Phase j instead holds prompt block + stops[j] slots and is grown
  (decoder.grow_cache) between phases, so on average a step reads fewer unfilled slots (21 M
  Llama, batch 64, 100 tokens: +9-14 % tok/s on a 2-core CPU with 4 phases;
  docs/perf_capture.md). Tokens and captured values are those of a single phase: the extra slots
  are masked out either way. phases None: ceil(max_new_tokens / CACHE_PHASE_TOKENS), at most
  MAX_CACHE_PHASES; an int from 1 to max_new_tokens sets it (1: one cache for the whole call,
  one compiled loop). Stops are floor(max_new_tokens * (j + 1) / phases)."""
  t_new = int(max_new_tokens)
  if phases is None:
    phases = min(MAX_CACHE_PHASES, -(-t_new // CACHE_PHASE_TOKENS))
  if isinstance(phases, bool) or not isinstance(phases, (int, np.integer)) or not (
      1 <= phases <= t_new):
    raise ValueError(f"cache_phases must be an int from 1 to max_new_tokens={t_new}, "
                     f"got {phases!r}")
  return tuple(t_new * (j + 1) // int(phases) for j in range(int(phases)))


# per_layer=None copies the layer weights once per generate call; that copy may take at most this
# share of the machine's physical memory (``per_layer_default``).
PER_LAYER_MEMORY_SHARE = 0.25


def physical_memory_bytes() -> int | None:
  """The machine's physical memory (None where the OS does not say)."""
  try:
    return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
  except (ValueError, OSError, AttributeError):
    return None


def per_layer_default(layer_bytes: int) -> bool:
  """What generate(per_layer=None) uses: per-layer buffers on JAX's CPU backend, where a scanned
  decoding step copies every layer's weight and cache slices (docs/perf_capture.md), as long as
  the one extra copy of the layer weights (``layer_bytes``) fits in PER_LAYER_MEMORY_SHARE of
  the physical memory; the scanned stack elsewhere and for larger models."""
  if jax.default_backend() != "cpu":
    return False
  total = physical_memory_bytes()
  return total is None or layer_bytes <= PER_LAYER_MEMORY_SHARE * total


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "greedy", "stop_at_eos",
                                             "capture_outputs", "pad_id", "expert_activity",
                                             "per_layer", "phase_stops"))
def _generate(params, ids, valid, key, temperature, top_p, head_mask, head_means,
              expert_mask=None, *, cfg, max_new_tokens, greedy, stop_at_eos, capture_outputs,
              pad_id, expert_activity="dense", per_layer=False, phase_stops=None):
  b, p = ids.shape
  t_new = max_new_tokens
  L, N, K = cfg.num_layers, cfg.num_heads, cfg.head_dim
  dtype = params["embed"].dtype
  model = Model(cfg, params)  # the module around the traced parameter state
  positions = decoder.positions_from_mask(valid)  # (B, P)
  lens = valid.sum(1).astype(jnp.int32)  # (B,)
  phase_stops = phase_stops or (t_new,)
  cache = decoder.empty_cache(cfg, positions, valid, phase_stops[0],
                              decoder.cache_dtype(cfg, dtype), per_layer=per_layer)
  eos = jnp.asarray(cfg.eos_token_ids or (-1,), jnp.int32)

  moe_run = dict(expert_mask=expert_mask, expert_activity=expert_activity,
                 # per-layer buffers, sliced once here, before the token loop (decoder.split_layers)
                 layers=decoder.split_layers(model) if per_layer else None)
  logits, cache, norms, heads, experts = decoder.run(
      model, ids, positions, valid, cache=cache, slot=0, head_mask=head_mask,
      head_means=head_means, capture="last", capture_outputs=capture_outputs, logits_at="last",
      **moe_run)
  tok = select_token(logits[:, 0], jax.random.fold_in(key, 0), greedy, temperature, top_p)
  tokens = jnp.full((b, t_new), pad_id, jnp.int32).at[:, 0].set(tok)
  norm_buf = jnp.full((b, L, N, t_new), jnp.nan, jnp.float32).at[..., 0].set(norms[:, :, 0])
  head_buf = None
  if capture_outputs:
    head_buf = jnp.full((b, L, N, t_new, K), jnp.nan, heads.dtype).at[:, :, :, 0].set(
        heads[:, :, 0])
  expert_buf = None  # (B, L_moe, U, T) for MoE models
  if experts is not None:
    expert_buf = jnp.full(experts.shape[:2] + experts.shape[3:] + (t_new,), jnp.nan,
                          jnp.float32).at[..., 0].set(experts[:, :, 0])
  done = jnp.isin(tok, eos) if stop_at_eos else jnp.zeros((b,), bool)
  length = jnp.ones((b,), jnp.int32)

  def cond(state):
    t, done = state[0], state[-1]
    more = t < t_new
    return (more & ~jnp.all(done)) if stop_at_eos else more

  def body(state):
    t, cache, prev, tokens, norm_buf, head_buf, expert_buf, length, done = state
    logits, cache, norms, heads, experts = decoder.run(
        model, prev[:, None], (lens + t - 1)[:, None], jnp.ones((b, 1), bool), cache=cache,
        slot=p + t - 1, head_mask=head_mask, head_means=head_means, capture="all",
        capture_outputs=capture_outputs, logits_at="all", **moe_run)
    tok = select_token(logits[:, 0], jax.random.fold_in(key, t), greedy, temperature, top_p)
    n = norms[:, :, 0]  # (B, L, N)
    if stop_at_eos:
      tok = jnp.where(done, pad_id, tok)
      n = jnp.where(done[:, None, None], jnp.nan, n)
      length = length + (~done).astype(jnp.int32)
    tokens = jax.lax.dynamic_update_slice(tokens, tok[:, None], _at(0, t))
    norm_buf = jax.lax.dynamic_update_slice(norm_buf, n[..., None], _at(0, 0, 0, t))
    if capture_outputs:
      h = heads[:, :, 0]
      if stop_at_eos:
        h = jnp.where(done[:, None, None, None], jnp.nan, h)
      head_buf = jax.lax.dynamic_update_slice(head_buf, h[:, :, :, None], _at(0, 0, 0, t, 0))
    if expert_buf is not None:
      e = experts[:, :, 0]  # (B, L_moe, U)
      if stop_at_eos:
        e = jnp.where(done[:, None, None], jnp.nan, e)
      expert_buf = jax.lax.dynamic_update_slice(expert_buf, e[..., None], _at(0, 0, 0, t))
    if stop_at_eos:
      done = done | jnp.isin(tok, eos)
    return (t + 1, cache, tok, tokens, norm_buf, head_buf, expert_buf, length, done)

  state = (jnp.int32(1), cache, tok, tokens, norm_buf, head_buf, expert_buf, length, done)
  for j, stop in enumerate(phase_stops):  # token t writes slot p + t - 1 < p + stop
    if j:
      state = (state[0], decoder.grow_cache(cfg, state[1], stop - phase_stops[j - 1]),
               *state[2:])
    state = jax.lax.while_loop(lambda st, stop=stop: cond(st) & (st[0] < stop), body, state)
  _, _, _, tokens, norm_buf, head_buf, expert_buf, length, _ = state
  if not stop_at_eos:
    length = jnp.full((b,), t_new, jnp.int32)
  return tokens, norm_buf, head_buf, length, expert_buf


def _place(x, mesh, axis):
  if mesh is None:
    return jnp.asarray(x)
  from jax.sharding import NamedSharding, PartitionSpec as P
  return jax.device_put(x, NamedSharding(mesh, P(axis, *([None] * (np.ndim(x) - 1)))))


def generate(model: Model, input_ids, attention_mask=None, *, max_new_tokens: int,
             greedy: bool = True, temperature: float = 1.0, top_p: float = 1.0, rng=None,
             head_mask=None, head_means=None, stop_at_eos: bool = False,
             capture_outputs: bool = False, mesh=None, data_axis: str = "data",
             expert_mask=None, expert_activity: str = "dense",
             per_layer: bool | None = None,
             cache_phases: int | None = None) -> GenerateResult:
  """Generates max_new_tokens tokens per prompt with per-head capture.

  input_ids (B, S) int with attention_mask (B, S) (either padding side; each row's real tokens
  are used in order), or (S,) for one prompt, or a list of 1-D prompts of any lengths. greedy=True takes the argmax (temperature, top_p,
  rng unused); otherwise samples with `temperature` and nucleus `top_p` using `rng` (a PRNG key
  or an int seed; required). head_mask (L, H) scales each head's output (traced; 0 ablates);
  head_means (L, H, K) turns the removed part into mean ablation. capture_outputs also returns
  per-head output vectors. mesh: place the batch sharded over mesh axis `data_axis` (params
  are used as placed, see sharding.shard_model). MoE models: expert_mask (L_moe, U) scales each
  expert's contribution (traced; 0 ablates, routing unchanged) and expert_activity ("dense" or
  "routed", module docstring) picks what expert_norms measures. per_layer: run the layers
  unrolled, each from its own weight and cache buffers (decoder.split_layers; one extra copy of
  the layer weights during the call), instead of a scan over the stacked layers; the same
  operations and tokens. None (default): on when JAX's default backend is the CPU, where a
  scanned step copies every layer's weight and cache slices (docs/perf_capture.md), and the
  extra copy fits in a quarter of the physical memory (``per_layer_default``). cache_phases:
  the number of phases the cache grows in (``cache_phase_stops``; None: one per 32 new tokens,
  at most 4; 1: one cache of prompt block + max_new_tokens slots throughout).
  Returns a GenerateResult.
  """
  cfg = model.config
  if int(max_new_tokens) < 1:
    raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
  if not greedy:
    if rng is None:
      raise ValueError("sampling (greedy=False) needs rng (a jax PRNG key or an int seed)")
    if not temperature > 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0 < top_p <= 1:
      raise ValueError(f"top_p must be in (0, 1], got {top_p}")
  key = jax.random.PRNGKey(rng) if isinstance(rng, (int, np.integer)) else (
      rng if rng is not None else jax.random.PRNGKey(0))
  check_head_mask(cfg, head_mask, head_means)
  _check_experts(cfg, expert_mask, expert_activity)
  phase_stops = cache_phase_stops(max_new_tokens, cache_phases)
  if per_layer is None:
    per_layer = per_layer_default(decoder.layer_weight_bytes(model))
  pad = pad_id_of(cfg)
  _, _, lengths = right_align(input_ids, attention_mask, pad)
  longest = int(lengths.max())
  width = bucket(longest)
  ids, valid, lengths = right_align(input_ids, attention_mask, pad, width)
  for b, n in enumerate(lengths):
    if n + max_new_tokens > cfg.max_position_embeddings:
      raise ValueError(f"prompt {b}: {n} prompt tokens + max_new_tokens={max_new_tokens} exceed "
                       f"max_position_embeddings={cfg.max_position_embeddings}")
  tokens, norms, heads, length, experts = _generate(
      model.params, _place(ids, mesh, data_axis), _place(valid, mesh, data_axis), key,
      jnp.float32(temperature), jnp.float32(top_p), head_mask, head_means, expert_mask, cfg=cfg,
      max_new_tokens=int(max_new_tokens), greedy=bool(greedy), stop_at_eos=bool(stop_at_eos),
      capture_outputs=bool(capture_outputs), pad_id=pad, expert_activity=expert_activity,
      per_layer=bool(per_layer), phase_stops=phase_stops)
  sequences = jnp.concatenate([jnp.asarray(ids[:, width - longest:]), tokens], axis=1)
  return GenerateResult(tokens=tokens, head_norms=norms, sequences=sequences,
                        prompt_lengths=lengths, lengths=length, head_outputs=heads,
                        expert_norms=experts)


def _check_experts(cfg, expert_mask, expert_activity):
  check_expert_mask(cfg, expert_mask)
  if expert_activity not in decoder.EXPERT_ACTIVITY:
    raise ValueError(f"expert_activity={expert_activity!r} is not known (known: "
                     f"{decoder.EXPERT_ACTIVITY})")


@functools.partial(jax.jit, static_argnames=("cfg", "t_new", "capture_outputs",
                                             "expert_activity"))
def _score(params, ids, valid, head_mask, head_means, expert_mask=None, *, cfg, t_new,
           capture_outputs, expert_activity="dense"):
  s = ids.shape[1]
  positions = decoder.positions_from_mask(valid)
  model = Model(cfg, params)  # the module around the traced parameter state
  logits, _, norms, heads, experts = decoder.run(
      model, ids, positions, valid, head_mask=head_mask, head_means=head_means,
      capture="all", capture_outputs=capture_outputs, expert_mask=expert_mask,
      expert_activity=expert_activity)
  first = s - t_new - 1  # the position whose logits produce continuation token 0
  logprobs = jax.nn.log_softmax(logits[:, first:s - 1], axis=-1)  # (B, T, V)
  targets = ids[:, s - t_new:]
  token_lp = jnp.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]
  norms = jnp.moveaxis(norms[:, :, first:s - 1], 2, 3)  # (B, L, N, T)
  if capture_outputs:
    heads = jnp.moveaxis(heads[:, :, first:s - 1], 2, 3)  # (B, L, N, T, K)
  if experts is not None:
    experts = jnp.moveaxis(experts[:, :, first:s - 1], 2, 3)  # (B, L_moe, U, T)
  return logprobs, token_lp, norms, heads, experts


def score(model: Model, tokens, prompt_lengths, *, head_mask=None, head_means=None,
          capture_outputs: bool = False, continuation_length: int | None = None, mesh=None,
          data_axis: str = "data", expert_mask=None,
          expert_activity: str = "dense") -> ScoreResult:
  """Teacher-forced next-token log-probabilities and head activity for a given continuation.

  tokens (B, P + T) int and prompt_lengths (B,) int in the layout of the module docstring
  (P = max(prompt_lengths); row b's first P - prompt_lengths[b] entries are ignored padding).
  Returns a ScoreResult: logprobs (B, T, V), token_logprobs (B, T), head_norms (B, L, H, T),
  expert_norms (B, L_moe, U, T) for MoE models (expert_mask, expert_activity as in generate).
  For output of generate(..., stop_at_eos=True), entries past a row's `lengths` score the pad
  tokens; mask them with that row's length.

  continuation_length=T (static int) makes score traceable (tokens, prompt_lengths, head_mask and
  params may be jax tracers, e.g. inside jit/vmap over masks): the prompt block is then the first
  S - T columns (any prompt_lengths <= S - T) and no host-side bucketing or checks happen.
  """
  cfg = model.config
  if continuation_length is not None:
    t_new = int(continuation_length)
    ids = jnp.asarray(tokens).astype(jnp.int32)
    if not 1 <= t_new < ids.shape[1]:
      raise ValueError(f"continuation_length={t_new} must be in [1, {ids.shape[1] - 1}] for "
                       f"tokens with {ids.shape[1]} columns")
    check_head_mask(cfg, head_mask, head_means)
    _check_experts(cfg, expert_mask, expert_activity)
    width = ids.shape[1] - t_new
    lens = jnp.asarray(prompt_lengths).astype(jnp.int32).reshape(-1)
    valid = jnp.arange(ids.shape[1])[None, :] >= (width - lens)[:, None]
    out = _score(model.params, ids, valid, head_mask, head_means, expert_mask, cfg=cfg,
                 t_new=t_new, capture_outputs=bool(capture_outputs),
                 expert_activity=expert_activity)
    return ScoreResult(*out)
  ids = np.asarray(tokens)
  lens = np.asarray(prompt_lengths).astype(np.int64).reshape(-1)
  if ids.ndim != 2 or lens.shape[0] != ids.shape[0]:
    raise ValueError(f"tokens must be (batch, P + T) and prompt_lengths (batch,); got "
                     f"{ids.shape} and {lens.shape}")
  for b, n in enumerate(lens):
    if n < 1:
      raise ValueError(f"prompt {b} has prompt_length {n}; each prompt needs >= 1 token")
  p = int(lens.max())
  t_new = ids.shape[1] - p
  if t_new < 1:
    raise ValueError(f"tokens has {ids.shape[1]} columns but the longest prompt has {p} tokens: "
                     "no continuation to score")
  check_head_mask(cfg, head_mask, head_means)
  _check_experts(cfg, expert_mask, expert_activity)
  width = bucket(p)
  padded = np.full((ids.shape[0], width + t_new), pad_id_of(cfg), np.int32)
  padded[:, width - p:] = ids
  valid = np.zeros(padded.shape, bool)
  for b, n in enumerate(lens):
    valid[b, width - n:] = True
  logprobs, token_lp, norms, heads, experts = _score(
      model.params, _place(padded, mesh, data_axis), _place(valid, mesh, data_axis), head_mask,
      head_means, expert_mask, cfg=cfg, t_new=t_new, capture_outputs=bool(capture_outputs),
      expert_activity=expert_activity)
  return ScoreResult(logprobs=logprobs, token_logprobs=token_lp, head_norms=norms,
                     head_outputs=heads, expert_norms=experts)
