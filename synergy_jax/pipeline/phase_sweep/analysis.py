"""Phase sweep, analysis: order parameters of the synergy–redundancy organisation against
task difficulty, with a transition analysis (is there an abrupt shift past a threshold?).

Control parameter: the difficulty rank r of the built-in task families — r = 1 is each family's
easiest level in ``tasks.levels(family)``, r = 2 the next, ...; every rank pools all chosen
families, so only difficulty changes between ranks (the families' own knobs k differ: digits,
operations, hops, list length; ``results.json["level_values"]`` maps ranks to them) — or the
``difficulty`` numbers of a user's JSONL prompts. Per prompt: generate ``max_new_tokens`` tokens with per-head
capture, ΦID over all pairs of heads *on that prompt alone*. Because ``phiid.all_pairs`` with
``pool="mean"`` averages per-prompt estimates, the mean of the per-prompt atoms over a level's
prompts is exactly the level's pooled estimate, so

  * level order parameters (``analysis.order``) come from the mean atoms, with percentile
    bootstrap CIs resampling prompts (stratified by family) — each replicate is a mean over
    resampled prompts, no ΦID recomputation;
  * per-prompt order parameters feed ``analysis.analyze_transition`` (logistic vs constant vs
    linear, threshold CI, shuffled-label p-value, susceptibility = variance across prompts).

Accuracy uses the same greedy generations: ``tasks.check`` cuts the continuation at its first
newline, which is exactly what ``tasks.evaluate`` compares.

Only the sts and rtr atoms are kept per prompt (the order parameters use nothing else):
per-prompt arrays are (P, U, U, 2) float32, axis 3 = (sts, rtr).
"""
from __future__ import annotations

import dataclasses
import pathlib
import warnings
from typing import Callable, Sequence

import numpy as np

from synergy_jax import analysis, phiid, results, tasks
from synergy_jax.analysis import ranking, uncertainty
from synergy_jax.analysis.units import Units
from synergy_jax.analysis.stats import (percentile_interval, stratified_bootstrap_indices,
                                        stratified_mean_ci)
from synergy_jax.pipeline import profile, specs, typed
from synergy_jax.pipeline.phase_sweep.config import (ORDER_PARAMETERS, PhaseSweepConfig,
                                                     SweepItem, level_values)

_STS, _RTR = ranking.ATOM_INDEX["sts"], ranking.ATOM_INDEX["rtr"]


def per_prompt_sts_rtr(acts: np.ndarray, *, config: "phiid.PhiidConfig | None" = None,
                       progress: Callable | None = None) -> np.ndarray:
  """(P, U, U, 2) float32 sts and rtr atoms (nats) of every pair, estimated on each prompt alone
  (``analysis.uncertainty.prompt_pairs``: one compiled kernel for Gaussian MMI, else one
  ``all_pairs`` per prompt).

  Units degenerate in a prompt are NaN rows/columns of that prompt (``phiid.degenerate`` lists
  them; the caller reports them). ``progress`` is accepted for the caller's interface; the
  estimate is a single call.
  """
  del progress
  a = np.asarray(acts)
  if a.ndim != 3:
    raise ValueError(f"acts must be (prompts, units, time), got shape {a.shape}")
  with warnings.catch_warnings():
    # Degenerate units are collected once with phiid.degenerate and reported in results.json.
    warnings.filterwarnings("ignore", message="all_pairs: masking units")
    return uncertainty.prompt_pairs(a, config or phiid.PhiidConfig())


def _as_atoms(sts_rtr: np.ndarray) -> np.ndarray:
  """(U, U, 2) sts/rtr → a (U, U, 16) atoms array for ``analysis.order_parameters``; the other
  14 atoms are NaN (order parameters never read them, and NaN would show if one did)."""
  n = sts_rtr.shape[0]
  atoms = np.full((n, n, len(ranking.ATOMS)), np.nan)
  atoms[..., _STS] = sts_rtr[..., 0]
  atoms[..., _RTR] = sts_rtr[..., 1]
  return atoms


def order_values(sts_rtr: np.ndarray, units: "Units") -> np.ndarray:
  """(3,) order parameters (``ORDER_PARAMETERS`` order) of one (U, U, 2) sts/rtr array of the
  units in ``units``."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, reported as NaN
    o = analysis.order_parameters(_as_atoms(sts_rtr), units)
  return np.array([o[k] for k in ORDER_PARAMETERS])


def pooled_mean(sts_rtr: np.ndarray) -> np.ndarray:
  """(U, U, 2) mean over prompts; a pair NaN in any prompt stays NaN, as in ``all_pairs``."""
  return np.mean(np.asarray(sts_rtr, np.float64), axis=0)


@dataclasses.dataclass(frozen=True)
class LevelResult:
  """One difficulty level. order: {name: {"estimate" (pooled atoms), "ci_low", "ci_high",
  "per_prompt_mean", "per_prompt_ci_low", "per_prompt_ci_high"}}; per_prompt (P, 3) order
  parameters of each prompt; accuracy: {"mean", "ci_low", "ci_high", "per_group"} or None."""
  level: float
  n_prompts: int
  order: dict
  per_prompt: np.ndarray
  accuracy: dict | None


def analyse_level(sts_rtr: np.ndarray, groups: Sequence[str], correct: np.ndarray | None,
                  units: "Units", level: float, *, n_boot: int = 500,
                  ci_level: float = 0.95, seed: int = 0) -> LevelResult:
  """Order parameters (pooled, with bootstrap CIs over prompts) and accuracy of one level.

  Args:
    sts_rtr: (P, U, U, 2) per-prompt sts/rtr atoms; groups: (P,) family of each prompt (the
      bootstrap resamples within family); correct: (P,) bool exact matches or None.
  """
  g = np.asarray(groups)
  est = order_values(pooled_mean(sts_rtr), units)
  idx = stratified_bootstrap_indices(g, n_boot, seed)
  boot = np.stack([order_values(pooled_mean(sts_rtr[i]), units) for i in idx])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = percentile_interval(boot, ci_level)
  per = np.stack([order_values(s, units) for s in sts_rtr])  # (P, 3)
  order = {}
  for j, name in enumerate(ORDER_PARAMETERS):
    m, plo, phi = stratified_mean_ci(per[:, j], g, n_boot, ci_level, seed + 1)
    order[name] = {"estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                   "per_prompt_mean": m, "per_prompt_ci_low": plo, "per_prompt_ci_high": phi,
                   "n_finite_prompts": int(np.isfinite(per[:, j]).sum())}
  acc = None
  if correct is not None:
    c = np.asarray(correct, np.float64)
    m, alo, ahi = stratified_mean_ci(c, g, n_boot, ci_level, seed + 2)
    acc = {"mean": m, "ci_low": alo, "ci_high": ahi,
           "per_group": {str(k): float(c[g == k].mean()) for k in dict.fromkeys(g.tolist())}}
  return LevelResult(float(level), int(sts_rtr.shape[0]), order, per, acc)


def transition_analyses(x: np.ndarray, per_prompt: np.ndarray, config: PhaseSweepConfig) -> dict:
  """{order parameter: TransitionAnalysis dict or {"skipped": reason}} from per-prompt values.

  x: (P,) difficulty per prompt; per_prompt: (P, 3). Prompts with a non-finite value of an order
  parameter are dropped for that parameter (their number is reported).
  """
  out = {}
  for j, name in enumerate(ORDER_PARAMETERS):
    y = per_prompt[:, j]
    ok = np.isfinite(y)
    levels = np.unique(x[ok])
    if levels.size < 3:
      out[name] = {"skipped": f"needs >= 3 levels with finite values, got {levels.size}",
                   "supported": False, "threshold": None}
      continue
    ta = analysis.analyze_transition(x[ok], y[ok], n_boot=config.n_transition_boot,
                                     n_perm=config.n_perm, seed=config.seed,
                                     ci_level=config.ci_level)
    d = ta.to_dict()
    d["n_dropped"] = int((~ok).sum())
    lg = ta.fits["logistic"]
    grid = np.linspace(levels[0], levels[-1], 200)
    d["fit_curve"] = {"x": grid, "y": lg.predict(grid)}
    out[name] = d
  return out


def _decode(tokenizer, tokens: np.ndarray) -> list[str]:
  return [tokenizer.decode(np.asarray(row).tolist(), skip_special_tokens=True) for row in tokens]


def level_data(spec: "specs.ModelSpec", items: Sequence[SweepItem], config: PhaseSweepConfig,
               cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """Activity (cached, shared with the profile's cache) and per-prompt sts/rtr (cached) of one
  level's prompts, plus the continuations' exact-match results.

  Returns {"sts_rtr" (P, U, U, 2), "tokens" (P, T), "correct" (P,) bool or None,
  "degenerate": [``specs.degenerate_records``: unit, name, kind, layer, index, ..., prompt,
  reason]}.
  """
  prompts = [it.text for it in items]
  pc = config.profile_config()
  act = profile.activity_cached(spec, prompts, pc, cache_dir, progress)
  acts = np.asarray(act["acts"])
  key = {"what": "per_prompt_sts_rtr", "model": specs.model_fingerprint(spec.model),
         "prompts": prompts, "max_new_tokens": config.max_new_tokens,
         "phiid": config.phiid.cache_key(specs.compute_dtype()), **profile.units_key(pc)}
  sts_rtr = np.asarray(results.cached(
      cache_dir, key, lambda: per_prompt_sts_rtr(acts, config=config.phiid), "sts_rtr"))
  units = profile.model_units(spec, pc)
  deg = specs.degenerate_records(phiid.degenerate(acts, config.phiid, specs.compute_dtype()),
                                 units)
  correct = None
  if all(it.example is not None for it in items):
    texts = _decode(spec.tokenizer, np.asarray(act["tokens"]))
    correct = np.array([tasks.check(it.example, t) for it, t in zip(items, texts)])
  return {"sts_rtr": sts_rtr, "tokens": np.asarray(act["tokens"]), "correct": correct,
          "degenerate": deg}


@dataclasses.dataclass(frozen=True)
class OrderParameterSeries:
  """One order parameter across the levels (results.json → order_parameter → <name>), each (K,)
  for K levels: values, ci_low, ci_high of the pooled level atoms with percentile bootstrap CIs
  (ci_level, n_boot replicates over prompts); per_prompt_mean, per_prompt_ci_low,
  per_prompt_ci_high: the mean of the prompts' own values and its CI (what the figures show)."""
  values: list
  ci_low: list
  ci_high: list
  ci_level: float
  n_boot: int
  per_prompt_mean: list
  per_prompt_ci_low: list
  per_prompt_ci_high: list


@dataclasses.dataclass(frozen=True)
class SweepAccuracy:
  """Exact-match accuracy per level (results.json → accuracy): values, ci_low, ci_high (K,) with
  bootstrap CIs at ci_level; per_family {family: (K,)} (NaN where a family has no prompt)."""
  values: list
  ci_low: list
  ci_high: list
  per_family: dict
  ci_level: float


@dataclasses.dataclass(frozen=True)
class SweepSummary:
  """results.json of a phase sweep (field names are its keys, in its order).

  levels (K,) difficulty ranks or labels and n_prompts (K,) per level; order_parameter {name:
  OrderParameterSeries} for every ``ORDER_PARAMETERS`` entry, order_parameter_name the one
  deciding the verdict; accuracy None for JSONL prompts; transition {name: the transition
  analysis dict or {"skipped": reason}} (``transition_analyses``), susceptibility(_peak) and
  threshold copied from it; supported: the primary parameter passes the transition tests;
  claim_supported: and its step goes up (toward synergy); degenerate: [{unit record (unit, name,
  kind, layer, index, shared, head for heads), "prompt", "reason", "level"}]; config: the
  PhaseSweepConfig as a dict; units: ``Units.summary`` of the units analysed (absent in files
  of earlier versions, which were heads); wall_s: the whole run's seconds (set by
  ``run_phase_sweep``; absent from the JSON while None).
  """
  experiment: str
  model: str
  fingerprint: str
  num_layers: int
  num_heads: int
  control: str
  level_values: dict | None
  families: list
  levels: list
  n_prompts: list
  order_parameter_name: str
  order_parameter: dict
  accuracy: SweepAccuracy | None
  susceptibility: dict
  susceptibility_peak: dict
  threshold: dict | None
  supported: bool
  claim_supported: bool
  transition: dict
  degenerate: list
  config: dict
  units: dict | None = None
  wall_s: float | None = None

  def to_dict(self) -> dict:
    return typed.to_dict_unset_absent(self, "wall_s")

  @classmethod
  def from_dict(cls, data, where: str = "phase sweep results") -> "SweepSummary":
    """The summary of a results.json dict (``read_sweep``); ValueError naming a missing key."""
    kw = typed.field_values(cls, data, where)
    kw["order_parameter"] = {
        name: OrderParameterSeries(**typed.field_values(
            OrderParameterSeries, o, f"{where} → order_parameter → {name}"))
        for name, o in kw["order_parameter"].items()}
    if kw["accuracy"] is not None:
      kw["accuracy"] = SweepAccuracy(**typed.field_values(SweepAccuracy, kw["accuracy"],
                                                          f"{where} → accuracy"))
    return cls(**kw)


def read_sweep(path) -> SweepSummary:
  """A phase sweep's results.json (a file or its run directory) as a SweepSummary (files of
  earlier versions have the same keys). FileNotFoundError / ValueError naming the file."""
  path, data = typed.read_results(path, "phase sweep")
  return SweepSummary.from_dict(data, str(path))


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """A finished sweep. summary: results.json's content; per prompt, in level order: x (P,)
  difficulty, per_prompt (P, 3) order parameters (``ORDER_PARAMETERS`` order), groups (P,) family
  or JSONL category, correct (P,) exact matches or None for JSONL prompts."""
  summary: SweepSummary
  x: np.ndarray
  per_prompt: np.ndarray
  groups: np.ndarray
  correct: np.ndarray | None


def analyse_sweep(spec: "specs.ModelSpec", items: Sequence[SweepItem], config: PhaseSweepConfig,
                  cache_dir, *, progress: Callable | None = None) -> "SweepResult":
  """Runs the sweep on ``items`` (any order; grouped by level): a SweepResult whose ``summary``
  is results.json's content."""
  cache_dir = pathlib.Path(cache_dir)
  cfg = spec.model.config
  units = profile.model_units(spec, config.profile_config())
  levels = sorted({it.level for it in items})
  if not levels:
    raise ValueError("the phase sweep got no prompts")
  per_level, xs, pers, groups, corrects, degenerate = [], [], [], [], [], []
  for li, k in enumerate(progress(levels, desc="difficulty levels", unit="level") if progress else levels):
    lv_items = [it for it in items if it.level == k]
    data = level_data(spec, lv_items, config, cache_dir, progress)
    g = [it.group for it in lv_items]
    res = analyse_level(data["sts_rtr"], g, data["correct"], units, k, n_boot=config.n_boot,
                        ci_level=config.ci_level, seed=config.seed + 7919 * li)
    per_level.append(res)
    xs.append(np.full(len(lv_items), k))
    pers.append(res.per_prompt)
    groups += g
    corrects.append(data["correct"])
    degenerate += [{**d, "level": k} for d in data["degenerate"]]
  x = np.concatenate(xs)
  per = np.concatenate(pers)
  trans = transition_analyses(x, per, config)
  primary = trans[config.order_parameter]
  has_acc = all(r.accuracy is not None for r in per_level)

  order_parameter = {}
  for name in ORDER_PARAMETERS:
    rows = [r.order[name] for r in per_level]
    order_parameter[name] = OrderParameterSeries(
        values=[r["estimate"] for r in rows], ci_low=[r["ci_low"] for r in rows],
        ci_high=[r["ci_high"] for r in rows], ci_level=config.ci_level, n_boot=config.n_boot,
        per_prompt_mean=[r["per_prompt_mean"] for r in rows],
        per_prompt_ci_low=[r["per_prompt_ci_low"] for r in rows],
        per_prompt_ci_high=[r["per_prompt_ci_high"] for r in rows])
  accuracy = None
  if has_acc:
    accuracy = SweepAccuracy(
        values=[r.accuracy["mean"] for r in per_level],
        ci_low=[r.accuracy["ci_low"] for r in per_level],
        ci_high=[r.accuracy["ci_high"] for r in per_level],
        per_family={f: [r.accuracy["per_group"].get(f, float("nan")) for r in per_level]
                    for f in dict.fromkeys(groups)},
        ci_level=config.ci_level)
  summary = SweepSummary(
      experiment="phase_sweep",
      model=spec.label,
      fingerprint=specs.model_fingerprint(spec.model),
      num_layers=cfg.num_layers, num_heads=cfg.num_heads,
      control=("task difficulty rank (1 = each family's easiest level; families pooled at "
               "every rank)" if has_acc else "difficulty label of the JSONL prompts"),
      level_values=(level_values(sorted(set(groups), key=groups.index),
                                 [int(k) for k in levels]) if has_acc else None),
      families=sorted(set(groups), key=groups.index),
      levels=levels,
      n_prompts=[r.n_prompts for r in per_level],
      order_parameter_name=config.order_parameter,
      order_parameter=order_parameter,
      accuracy=accuracy,
      susceptibility={n: t.get("susceptibility") for n, t in trans.items()},
      susceptibility_peak={n: t.get("susceptibility_peak") for n, t in trans.items()},
      threshold=primary.get("threshold"),
      supported=bool(primary.get("supported", False)),
      # The claim under test: an abrupt rise toward synergy (higher order parameter).
      claim_supported=bool(primary.get("supported", False)
                           and primary["fits"]["logistic"]["jump"] > 0),
      transition=trans,
      degenerate=degenerate,
      config=dataclasses.asdict(config),
      units={**units.summary(), **({"expert_activity": config.expert_activity}
                                   if units.counts()["expert"] else {})},
  )
  return SweepResult(summary, x, per, np.asarray(groups),
                     None if not has_acc else np.concatenate(corrects))
