"""Ablation, behaviour divergence: the unit ranking, zero-ablation curves of most-synergistic-first,
most-redundant-first and random orders of the chosen units (heads, experts or both), and their
summary (DivergenceSummary; AUC ratios with CIs).

D = mean over prompts of the mean over continuation tokens of KL(p_original ‖ p_ablated), in nats;
the ablated model scores the original model's own continuation (teacher forcing). A prompt whose
divergence is not finite is left out of the mean of that order and fraction by an explicit mask,
and listed (``DivergenceSummary.nonfinite``), never dropped silently.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Sequence

import jax
import numpy as np

from synergy_jax import analysis, interventions, models
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import profile, specs, typed
from synergy_jax.pipeline.ablation.config import AblationConfig


def head_ranking(spec: "specs.ModelSpec", prompts: Sequence[str], config: AblationConfig,
                 cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """Profile of the chosen units (``config.units``) on ``prompts``: {"units": the Units table,
  "scores": HeadScores, "score": (U,) higher = more synergistic, "tokens": (P, T) the original
  model's continuations, "acts": (P, U, T)}, U in the table's order.

  Raises ValueError naming the model type when experts are asked of a dense model."""
  table = Units.of_config(spec.model.config, config.units)
  pc = config.profile_config()
  act = profile.activity_cached(spec, prompts, pc, cache_dir, progress)
  acts = np.asarray(act["acts"])
  if acts.ndim != 3 or acts.shape[1] != table.size:
    raise ValueError(f"ablation: the activity has shape {acts.shape}, expected (prompts, "
                     f"{table.size} units = {table.describe()}, time)")
  atoms = profile.atoms_cached(acts, pc, cache_dir)
  scores = analysis.head_scores(atoms)
  return {"units": table, "scores": scores, "score": profile.head_score(scores, config.ranking),
          "tokens": np.asarray(act["tokens"]), "acts": acts}


_BACKEND_COMPILES = {"n": 0, "listening": False}


def _count_compiles(event: str, duration: float, **kwargs) -> None:
  del duration, kwargs
  if event == "/jax/core/compile/backend_compile_duration":
    _BACKEND_COMPILES["n"] += 1


def backend_compiles() -> int:
  """XLA compilations in this process since the first call (``jax.monitoring`` events)."""
  if not _BACKEND_COMPILES["listening"]:
    jax.monitoring.register_event_duration_secs_listener(_count_compiles)
    _BACKEND_COMPILES["listening"] = True
  return _BACKEND_COMPILES["n"]


def divergence(model: "models.Model", tokens: np.ndarray, prompt_lengths: np.ndarray,
               orders: dict, fractions: Sequence[float], *, divergence_batch: int = 0,
               mask_chunk: int | None = 8, progress: Callable | None = None,
               units: Units | None = None) -> dict:
  """Divergence curves of every order, prompt batch by prompt batch.

  Args:
    tokens, prompt_lengths: ``tasks.batching.with_continuations`` output (B prompts).
    orders: {"synergistic": (U,), "redundant": (U,), "random": (R, U)} orders of the units of
      ``units`` (None: the model's head grid).
    divergence_batch: prompts per batch (0: all in one batch, one compilation).
  Returns:
    {"fractions", name: per_prompt (O, F, B) for each order group, "batches", "compilations"}:
    the XLA compilations that happened during the call (one per prompt batch is expected: all
    fractions and orders of a batch share one compiled function).
  """
  b = tokens.shape[0]
  step = b if divergence_batch in (0, None) else int(divergence_batch)
  compiles0 = backend_compiles()
  fn = interventions.make_divergence_fn(model, batch_size=mask_chunk)
  parts = {k: [] for k in orders}
  starts = list(range(0, b, step))
  p_all = int(np.max(prompt_lengths))
  bar = (progress(starts, desc="divergence (all orders × fractions)", unit="prompt batch")
         if progress else starts)
  for s in bar:
    lens = np.asarray(prompt_lengths[s:s + step])
    # models.score's layout: the prompt block is exactly as wide as this batch's longest prompt.
    toks = np.asarray(tokens[s:s + step, p_all - int(lens.max()):])
    curves = interventions.divergence_curves(model, toks, lens, orders, fractions,
                                             divergence_fn=fn, units=units)
    for k, c in curves.items():
      parts[k].append(c.per_prompt)
  out = {k: np.concatenate(v, axis=-1).astype(np.float64) for k, v in parts.items()}
  out["fractions"] = np.asarray(fractions, np.float64)
  out["compilations"] = backend_compiles() - compiles0
  out["batches"] = len(starts)
  return out


@dataclasses.dataclass(frozen=True)
class DivergenceSummary:
  """results.json → divergence (field names are its keys): D in nats against the ablated
  fraction, for F fractions, R random orders and B prompts.

  fractions (F,); synergistic, redundant (F,) mean D over the prompts with a finite value;
  random {"mean", "sd" (F,) over orders, "curves" (R, F)}; prompt_sd {"synergistic",
  "redundant": (F,) SD over prompts}; auc {"synergistic", "redundant": nats × fraction,
  "random": (R,)}; n_prompts B; n_prompts_used {order group: (O, F) prompts with a finite D};
  nonfinite [{"order", "order_index", "fraction", "prompt"}]; compilations and batches of the
  divergence call; orders {group: unit orders}.
  """
  fractions: np.ndarray
  synergistic: np.ndarray
  redundant: np.ndarray
  random: dict
  prompt_sd: dict
  auc: dict
  n_prompts: int
  n_prompts_used: dict
  nonfinite: list
  units: str
  compilations: int
  batches: int
  orders: dict

  @classmethod
  def from_dict(cls, data, where: str) -> "DivergenceSummary":
    return cls(**typed.field_values(cls, data, where))


def summarise_divergence(div: dict, orders: dict) -> DivergenceSummary:
  """results.json's ``divergence`` entry from per-prompt curves.

  Means and prompt SDs use the prompts whose divergence is finite, by an explicit mask; the
  others are listed in ``nonfinite`` and counted in ``n_prompts_used``.

  Raises:
    ValueError: no prompt has a finite divergence for some order and fraction (named).
  """
  fr = div["fractions"]
  mean, used, prompt_sd, nonfinite = {}, {}, {}, []
  for k in orders:
    v = np.asarray(div[k], np.float64)  # (O, F, B)
    mean[k], used[k] = interventions.finite_mean(v, -1)
    ok = np.isfinite(v)
    if not used[k].all():
      o, f = np.argwhere(used[k] == 0)[0]
      raise ValueError(f"ablation: no prompt has a finite divergence for the {k} order {o} at "
                       f"ablated fraction {fr[f]:g}")
    sq = np.where(ok, (v - mean[k][..., None]) ** 2, 0.0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
      prompt_sd[k] = np.where(used[k] > 1, np.sqrt(sq / np.maximum(used[k] - 1, 1)), np.nan)
    nonfinite += [{"order": k, "order_index": int(o), "fraction": float(fr[f]), "prompt": int(b)}
                  for o, f, b in np.argwhere(~ok)]
  aucs = {k: np.array([interventions.auc(fr, m) for m in mean[k]]) for k in orders}
  rnd = mean["random"]
  return DivergenceSummary(
      fractions=fr,
      synergistic=mean["synergistic"][0],
      redundant=mean["redundant"][0],
      random={"mean": rnd.mean(0), "sd": rnd.std(0, ddof=1), "curves": rnd},
      prompt_sd={"synergistic": prompt_sd["synergistic"][0],
                 "redundant": prompt_sd["redundant"][0]},
      auc={"synergistic": float(aucs["synergistic"][0]),
           "redundant": float(aucs["redundant"][0]), "random": aucs["random"]},
      n_prompts=int(div["synergistic"].shape[-1]),
      n_prompts_used={k: used[k] for k in orders},
      nonfinite=nonfinite,
      units="nats (mean over prompts of the mean over continuation tokens of KL)",
      compilations=int(div["compilations"]),
      batches=int(div["batches"]),
      orders={k: np.asarray(v) for k, v in orders.items()},
  )


def auc_ratios(d: DivergenceSummary, *, n_boot: int, ci_level: float, seed: int) -> dict:
  """{"synergistic", "redundant": ``interventions.auc_ratio`` record}: each order's AUC over the
  random orders' mean AUC, with a bootstrap CI over random orders."""
  return {k: interventions.auc_ratio(d.auc[k], d.auc["random"], n_boot=n_boot, level=ci_level,
                                     seed=seed)
          for k in ("synergistic", "redundant")}
