"""Interventions on units (attention heads, and the experts of mixture-of-experts models):
ablation masks, behaviour divergence, unit sets for noise.

Behaviour divergence (Urbina-Rodriguez, Mediano et al. 2026): units are zero-ablated in a given
order (most synergistic first, most redundant first, random), and for each ablated fraction the
ablated model scores the original model's own generated continuation (``models.score``, teacher
forcing, so differences do not compound). The divergence is

  D(f) = mean over prompts of [ mean over valid continuation tokens of KL(p_orig ‖ p_ablated) ]

in nats, with KL(p ‖ q) = Σ_v p_v (log p_v − log q_v). Every prompt weighs the same regardless
of its number of valid tokens.

Axis letters: B prompts (batch), T continuation positions, V vocabulary, L layers, H heads per
layer, L_moe MoE layers, E + S routed + shared experts per MoE layer, F ablation fractions,
M masks (orders × fractions), O orders, U units of a unit table, N = L·H heads.

Units are the rows of an ``analysis.units.Units`` table (heads: unit = layer · H + head;
experts: unit = m · (E + S) + e; heads+experts: the heads, then the experts). The model takes
them as two traced inputs, ``head_mask`` (L, H) and ``expert_mask`` (L_moe, E + S) (1 = keep,
0 = ablate; zeroing an expert removes its contribution and leaves routing unchanged); a
``MaskLayout`` says where each unit sits in them and ``UnitGrids`` holds such a pair (both in
``synergy_jax.unit_masks``, re-exported here). The heads-only functions (``head_masks``, ``units_mask``, ``perturbation_head_sets``, bare (M, L, H)
masks) are the head-grid case of the unit functions.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.analysis.ranking import n_selected, random_orders, redundant_order, \
    synergistic_order
from synergy_jax.analysis.stats import percentile_interval
from synergy_jax.analysis.units import Units
from synergy_jax.unit_masks import (MaskLayout, UnitGrids, check_order, concat_grids,  # noqa: F401
                                    head_masks, model_layout, unit_masks, unit_selection,
                                    units_mask)


# --------------------------------------------------------------------------------------------------
# KL divergence
# --------------------------------------------------------------------------------------------------


def kl_per_position(logp: jax.Array, logq: jax.Array) -> jax.Array:
  """KL(p ‖ q) in nats at each position, from log-probabilities.

  Args:
    logp: (B, T, V) log-probs of the original model; logq: (B, T, V) of the ablated model.
  Returns:
    (B, T) KL. Terms with p_v = 0 contribute exactly 0 (also when log q_v = −inf); identical
    inputs give exactly 0.
  """
  if logp.shape != logq.shape:
    raise ValueError(f"log-prob shapes differ: original {logp.shape} vs ablated {logq.shape}")
  # bf16 models: exp and the sum over V lose too much precision below float32.
  logp = logp.astype(jnp.promote_types(logp.dtype, jnp.float32))
  logq = logq.astype(logp.dtype)
  p = jnp.exp(logp)
  diff = jnp.where(p > 0, logp - logq, 0.0)  # avoids 0 · (−inf − −inf) = NaN
  return jnp.sum(jnp.where(p > 0, p * diff, 0.0), axis=-1)


def kl_per_prompt(logp: jax.Array, logq: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """(B,) mean over valid positions of KL(p ‖ q); NaN for a prompt with no valid position.

  Args:
    valid: (B, T) bool/0-1 mask of real (non-padding) continuation tokens; None = all valid.
  """
  kl = kl_per_position(logp, logq)  # (B, T)
  if valid is None:
    valid = jnp.ones(kl.shape, bool)
  valid = jnp.asarray(valid).astype(bool)
  if valid.shape != kl.shape:
    raise ValueError(f"valid mask has shape {valid.shape}, expected (B, T) = {kl.shape}")
  n = valid.sum(-1)
  tot = jnp.where(valid, kl, 0.0).sum(-1)
  return jnp.where(n > 0, tot / jnp.maximum(n, 1), jnp.nan)


def mean_kl(logp: jax.Array, logq: jax.Array, valid: jax.Array | None = None) -> jax.Array:
  """Scalar: mean of :func:`kl_per_prompt` over the prompts with >= 1 valid token (NaN if there
  are none). Prompts are selected by that mask, not by dropping NaN: a prompt whose KL is NaN
  for another reason (non-finite log-probs) makes the mean NaN."""
  per = kl_per_prompt(logp, logq, valid)
  has = jnp.ones(per.shape, bool) if valid is None else jnp.asarray(valid).astype(bool).any(-1)
  n = has.sum()
  return jnp.where(n > 0, jnp.where(has, per, 0.0).sum() / jnp.maximum(n, 1), jnp.nan)


def finite_mean(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
  """(mean over the finite entries along ``axis``, their count): the explicit-mask replacement of
  ``nanmean``, whose count the caller reports. The mean is NaN where the count is 0."""
  v = np.asarray(values, np.float64)
  ok = np.isfinite(v)
  n = ok.sum(axis)
  total = np.where(ok, v, 0.0).sum(axis)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(n > 0, total / np.maximum(n, 1), np.nan), n


# --------------------------------------------------------------------------------------------------
# Behaviour divergence
# --------------------------------------------------------------------------------------------------


def _default_score_fn():
  from synergy_jax import models  # lazy: keeps this module importable without the model stack
  return models.score


def _split_model(model):
  """(params, rebuild): trace the params pytree instead of baking it into the compiled function."""
  if hasattr(model, "params") and hasattr(model, "replace"):  # models.Model (an nnx.Module)
    return model.params, lambda p: model.replace(params=p)
  if dataclasses.is_dataclass(model) and hasattr(model, "params"):
    return model.params, lambda p: dataclasses.replace(model, params=p)
  return None, lambda p: model


_TRACE_ERRORS = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                 jax.errors.TracerIntegerConversionError, jax.errors.TracerBoolConversionError)


def _as_grids(masks) -> UnitGrids:
  """UnitGrids of float32 masks (M, ...) from UnitGrids or a bare (M, L, H) head-mask array."""
  g = masks if isinstance(masks, UnitGrids) else UnitGrids(np.asarray(masks))
  heads = jnp.asarray(g.heads, jnp.float32)
  if heads.ndim != 3:
    raise ValueError(f"masks must be (M, L, H), got shape {heads.shape}")
  experts = None if g.experts is None else jnp.asarray(g.experts, jnp.float32)
  if experts is not None and (experts.ndim != 3 or experts.shape[0] != heads.shape[0]):
    raise ValueError(f"expert masks must be (M={heads.shape[0]}, L_moe, E + S), got shape "
                     f"{experts.shape}")
  return UnitGrids(heads, experts)


def _mask_kwargs(head, expert) -> dict:
  """The scorer's mask arguments: expert_mask only where the mask set has expert grids (so
  scorers of dense models need not accept it)."""
  return {"head_mask": head} if expert is None else {"head_mask": head, "expert_mask": expert}


def make_divergence_fn(model, *, score_fn: Callable | None = None,
                       batch_size: int | None = None) -> Callable:
  """Builds ``f(tokens, prompt_lengths, masks, valid=None) -> (M, B)`` per-prompt divergences.

  All M masks of a call are evaluated in one compiled function: the masks are traced and mapped
  with ``vmap`` (``batch_size=None``) or ``lax.map`` in chunks of ``batch_size`` masks (bounds
  memory: each chunk holds (chunk, B, T, V) log-probs). New masks, orders or seeds of the same
  count never recompile.

  Tokens: the default scorer, ``models.score`` with ``continuation_length=T`` (T = S − longest
  prompt), traces tokens and lengths, so new batches of the same shape and T reuse the
  compilation. A custom ``score_fn`` that can trace its token inputs is traced likewise; one that
  needs concrete tokens is detected on the first call, and then each *batch* compiles once
  (fractions and orders still share that one compilation).

  Args:
    model: passed to ``score_fn``; if it is a dataclass with ``params``, the params are traced
      rather than baked into the compiled function as constants.
    score_fn: ``score(model, tokens, prompt_lengths, *, head_mask[, expert_mask]) -> obj with
      .logprobs (B, T, V)``; default ``synergy_jax.models.score``. ``expert_mask`` is passed only
      for masks with expert grids.
  Returned function's args: tokens (B, S) int, prompt_lengths (B,) int, masks: UnitGrids of M
    masks (heads (M, L, H), experts (M, L_moe, E + S) or None; ``unit_masks``) or a bare
    (M, L, H) head-mask array, valid (B, T) bool or None. Masks with nothing ablated (all ones)
    give exactly 0: the ablated model is then the original model by definition, so any computed
    value would only be floating-point non-determinism.
  """
  if score_fn is None:
    # models.score is traceable when told the continuation length T (static): then tokens and
    # lengths are traced and every batch of one shape and T shares a single compilation.
    default_score = _default_score_fn()
    jitted_by_t = {}
    traces = {"n": 0}  # Python runs the body only while tracing: one trace per compilation

    def traced_for(tokens, prompt_lengths):
      t = int(np.shape(tokens)[1]) - int(np.max(np.asarray(prompt_lengths)))
      if t not in jitted_by_t:
        scorer = functools.partial(default_score, continuation_length=t)

        def counted(*args, scorer=scorer):
          traces["n"] += 1
          return _run(scorer, *args)
        jitted_by_t[t] = jax.jit(counted)
      return jitted_by_t[t]
  params, rebuild = _split_model(model)

  def _run(scorer, params, tokens, prompt_lengths, heads, experts, valid):
    mdl = rebuild(params)
    ones = lambda m: None if m is None else jnp.ones(m.shape[1:], m.dtype)
    base = scorer(mdl, tokens, prompt_lengths,
                  **_mask_kwargs(ones(heads), ones(experts))).logprobs  # (B, T, V)

    def one(mask):  # ((L, H), (L_moe, E + S) or None) -> (B,)
      head, expert = mask
      lq = scorer(mdl, tokens, prompt_lengths, **_mask_kwargs(head, expert)).logprobs
      kl = kl_per_prompt(base, lq, valid)
      kept = jnp.all(head == 1) if expert is None else jnp.all(head == 1) & jnp.all(expert == 1)
      return jnp.where(kept, jnp.zeros_like(kl), kl)

    if batch_size is None:
      return jax.vmap(one)((heads, experts))
    return jax.lax.map(one, (heads, experts), batch_size=batch_size)

  def run(params, tokens, prompt_lengths, heads, experts, valid):
    return _run(score_fn, params, tokens, prompt_lengths, heads, experts, valid)

  traced = jax.jit(run)
  state = {"traceable": True}

  def f(tokens, prompt_lengths, masks, valid=None):
    g = _as_grids(masks)
    valid = None if valid is None else jnp.asarray(valid, bool)
    if score_fn is None:
      fn = traced_for(tokens, prompt_lengths)
      return fn(params, jnp.asarray(tokens), jnp.asarray(prompt_lengths), g.heads, g.experts,
                valid)
    if state["traceable"]:
      try:
        return traced(params, jnp.asarray(tokens), jnp.asarray(prompt_lengths), g.heads,
                      g.experts, valid)
      except _TRACE_ERRORS:
        state["traceable"] = False  # scorer needs concrete tokens: close over this batch
    tok, lens = np.asarray(tokens), np.asarray(prompt_lengths)
    closed = jax.jit(lambda prm, h, e, v: run(prm, tok, lens, h, e, v))
    return closed(params, g.heads, g.experts, valid)

  def compilations() -> int:
    """Number of compiled variants so far (default scorer; for tests and profiling)."""
    return traces["n"] if score_fn is None else -1

  f.compilations = compilations
  return f


@dataclasses.dataclass(frozen=True)
class DivergenceCurve:
  """fractions (F,); mean (F,) divergence in nats; per_prompt (F, B)."""
  fractions: np.ndarray
  mean: np.ndarray
  per_prompt: np.ndarray

  @property
  def auc(self) -> float:
    return auc(self.fractions, self.mean)


def behaviour_divergence(model, tokens, prompt_lengths, order, fractions, *,
                         score_fn: Callable | None = None, valid=None,
                         num_layers: int | None = None, num_heads: int | None = None,
                         batch_size: int | None = None,
                         units: Units | None = None) -> DivergenceCurve:
  """Divergence curve for one unit order over all ``fractions`` in one compiled call.

  Args:
    tokens: (B, S) prompt + generated continuation of the original model.
    prompt_lengths: (B,) prompt lengths.
    order: (U,) permutation of units, ablated first to last.
    fractions: (F,) fractions of units ablated, in [0, 1].
    valid: (B, T) mask of real continuation tokens (T = ``score``'s logprobs length).
    units: the unit table the order permutes (``divergence_curves``); None: the head grid.
  """
  curves = divergence_curves(model, tokens, prompt_lengths, {"order": np.asarray(order)[None]},
                             fractions, score_fn=score_fn, valid=valid, num_layers=num_layers,
                             num_heads=num_heads, batch_size=batch_size, units=units)
  c = curves["order"]
  return DivergenceCurve(c.fractions, c.mean[0], c.per_prompt[0])


@dataclasses.dataclass(frozen=True)
class OrderCurves:
  """Curves for O orders: fractions (F,), mean (O, F) over the prompts with a finite divergence,
  per_prompt (O, F, B), n_finite (O, F) prompts in each mean (B unless some are non-finite)."""
  fractions: np.ndarray
  mean: np.ndarray
  per_prompt: np.ndarray
  n_finite: np.ndarray | None = None

  @property
  def auc(self) -> np.ndarray:
    """(O,) area under each curve."""
    return np.array([auc(self.fractions, m) for m in self.mean])


def divergence_curves(model, tokens, prompt_lengths, orders: Mapping[str, np.ndarray], fractions,
                      *, score_fn: Callable | None = None, valid=None,
                      num_layers: int | None = None, num_heads: int | None = None,
                      batch_size: int | None = None,
                      divergence_fn: Callable | None = None, units: Units | None = None,
                      layout: MaskLayout | None = None) -> dict[str, OrderCurves]:
  """Divergence curves of several named groups of orders, all masks in one compiled call.

  Args:
    orders: {name: (O, U) or (U,) unit orders}, e.g. {"synergistic": o1, "redundant": o2,
      "random": (5, U)}: permutations of the rows of ``units``.
    divergence_fn: a function from :func:`make_divergence_fn` to reuse across batches.
    units: the unit table (``analysis.units.Units``: heads, experts or both of the model);
      None: the model's head grid (unit = layer · H + head). Units of the model outside the
      table are never ablated.
    layout: where the units sit in the model's masks; None: ``model_layout(model)`` (from
      model.config, or num_layers / num_heads).
  Returns:
    {name: OrderCurves}.
  """
  layout = model_layout(model, num_layers, num_heads) if layout is None else layout
  units = Units.grid(layout.num_layers, layout.num_heads) if units is None else units
  fr = np.asarray(fractions, dtype=np.float64)
  if fr.ndim != 1 or fr.size == 0:
    raise ValueError(f"fractions must be a non-empty 1-D sequence, got shape {fr.shape}")
  names, blocks, sizes = [], [], []
  for name, o in orders.items():
    o = np.atleast_2d(np.asarray(o))
    blocks.extend(unit_masks(row, fr, units, layout) for row in o)
    names.append(name)
    sizes.append(o.shape[0])
  masks = concat_grids(blocks)  # heads (sum O · F, L, H), experts (sum O · F, L_moe, E + S)
  fn = divergence_fn or make_divergence_fn(model, score_fn=score_fn, batch_size=batch_size)
  per = np.asarray(fn(tokens, prompt_lengths, masks, valid))  # (M, B)
  out, start = {}, 0
  for name, n_o in zip(names, sizes):
    block = per[start:start + n_o * fr.size].reshape(n_o, fr.size, -1)
    start += n_o * fr.size
    mean, n_finite = finite_mean(block, -1)
    out[name] = OrderCurves(fr, mean, block, n_finite)
  return out


# --------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------


def auc(fractions, curve) -> float:
  """Area under a curve over ablated fraction (trapezoid rule); fractions strictly increasing."""
  x = np.asarray(fractions, dtype=np.float64)
  y = np.asarray(curve, dtype=np.float64)
  if x.shape != y.shape or x.ndim != 1:
    raise ValueError(f"fractions and curve must be 1-D of equal length, got {x.shape}, {y.shape}")
  if np.any(np.diff(x) <= 0):
    raise ValueError("fractions must be strictly increasing for an AUC")
  return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def auc_ratio(target_auc: float, random_aucs, *, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict:
  """Ratio AUC(target) / mean AUC(random orders), with a percentile CI over random orders.

  The CI resamples the random orders with replacement (their mean AUC is the only random
  quantity); with few random orders (e.g. 5) the interval is coarse, and the report says so via
  ``n_random``.
  """
  r = np.asarray(random_aucs, dtype=np.float64).ravel()
  if r.size < 2:
    raise ValueError(f"auc_ratio needs >= 2 random orders, got {r.size}")
  if r.mean() <= 0:
    raise ValueError(f"mean random-order AUC is {r.mean()}; the ratio is undefined")
  idx = np.random.default_rng(seed).integers(0, r.size, size=(n_boot, r.size))
  boot = target_auc / r[idx].mean(1)
  lo, hi = percentile_interval(boot, level)
  return {"ratio": float(target_auc / r.mean()), "ci_low": float(lo), "ci_high": float(hi),
          "ci_level": level, "target_auc": float(target_auc), "random_auc_mean": float(r.mean()),
          "random_auc_sd": float(r.std(ddof=1)), "n_random": int(r.size)}


def ablation_orders(score, *, n_random: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
  """{"synergistic": (N,), "redundant": (N,), "random": (n_random, N)} unit orders from a score
  where higher = more synergistic (rank score or balance)."""
  s = np.asarray(score)
  return {"synergistic": synergistic_order(s), "redundant": redundant_order(s),
          "random": random_orders(s.size, n_random, seed)}


def perturbation_unit_sets(score, *, fraction: float = 0.25, n_random: int = 5,
                           seed: int = 0) -> dict:
  """Unit sets for Gaussian perturbation from a (U,) score (higher = more synergistic).

  Returns:
    {"synergistic": (k,), "redundant": (k,), "random": [n_random × (k,)]} sorted unit indices,
    k = round(fraction · U): the top-k of each order and the first k of each random order
    (``unit_selection`` turns a set into the grids ``models.perturb_selected`` takes).
  """
  s = np.asarray(score)
  if s.ndim != 1 or s.size == 0:
    raise ValueError(f"score must be a non-empty (U,) array, got shape {s.shape}")
  k = n_selected(fraction, s.size)
  return {"synergistic": np.sort(synergistic_order(s)[:k]),
          "redundant": np.sort(redundant_order(s)[:k]),
          "random": [np.sort(o[:k]) for o in random_orders(s.size, n_random, seed)]}


def perturbation_head_sets(score, num_layers: int, num_heads: int, *, fraction: float = 0.25,
                           n_random: int = 5, seed: int = 0) -> dict:
  """``perturbation_unit_sets`` of the head grid, also as (layer, head) rows
  (``models.perturb_heads``).

  Returns:
    {"synergistic": (k, 2), "redundant": (k, 2), "random": [n_random × (k, 2)]} arrays of
    (layer, head) rows, k = round(fraction · N), plus "*_units" entries with unit indices.
  """
  n = num_layers * num_heads
  if np.shape(score) != (n,):
    raise ValueError(f"score must be ({n},) for {num_layers} layers × {num_heads} heads, got "
                     f"{np.shape(score)}")
  sets = perturbation_unit_sets(score, fraction=fraction, n_random=n_random, seed=seed)
  lh = lambda u: np.stack(np.divmod(u, num_heads), -1)
  return {"synergistic": lh(sets["synergistic"]), "redundant": lh(sets["redundant"]),
          "random": [lh(u) for u in sets["random"]],
          "synergistic_units": sets["synergistic"], "redundant_units": sets["redundant"],
          "random_units": sets["random"]}
