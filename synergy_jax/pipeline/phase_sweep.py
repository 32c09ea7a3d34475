"""The difficulty phase sweep: order parameters of the synergy–redundancy organisation against
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
per-prompt arrays are (P, N, N, 2) float32, axis 3 = (sts, rtr).
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from synergy_jax import analysis, phiid, plots, results, tasks
from synergy_jax.analysis import order as order_lib
from synergy_jax.analysis import ranking
from synergy_jax.analysis.stats import percentile_interval, stratified_bootstrap_indices
from synergy_jax.pipeline import profile, specs

ORDER_PARAMETERS = order_lib.NAMES  # ("balance", "core_contrast", "syn_gt_red")
_STS, _RTR = ranking.ATOM_INDEX["sts"], ranking.ATOM_INDEX["rtr"]


@dataclasses.dataclass(frozen=True)
class PhaseSweepConfig:
  """Everything the sweep's numbers depend on besides the model and the prompts.

  families: task families pooled at every level; levels: difficulty ranks r (1 = each family's
  easiest level; None: every rank all ``families`` have); n_per_family: prompts per family per level; seed: task sampling,
  bootstraps, permutations. order_parameter: the one whose transition decides the verdict (all
  three are analysed and reported). n_boot: bootstrap replicates of the level order parameters
  and accuracies; n_transition_boot / n_perm: replicates of the threshold CI / shuffled-label
  null. max_new_tokens, batch_size: generation; tau, redundancy: ΦID.
  """
  families: tuple = tasks.FAMILIES
  levels: tuple | None = None
  n_per_family: int = 32
  max_new_tokens: int = 100
  batch_size: int = 32
  tau: int = 1
  redundancy: str = "mmi"
  order_parameter: str = "balance"
  n_boot: int = 500
  n_transition_boot: int = 1000
  n_perm: int = 1000
  ci_level: float = 0.95
  seed: int = 0

  def __post_init__(self):
    if self.order_parameter not in ORDER_PARAMETERS:
      raise ValueError(f"order_parameter must be one of {ORDER_PARAMETERS}, "
                       f"got {self.order_parameter!r}")
    for f in self.families:
      tasks.levels(f)  # raises naming an unknown family
    if not self.families:
      raise ValueError("families must name at least one task family")
    for name in ("n_per_family", "max_new_tokens", "batch_size", "n_boot"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.max_new_tokens < self.tau + 3:
      raise ValueError(f"max_new_tokens={self.max_new_tokens} is too short for ΦID with "
                       f"tau={self.tau} (needs >= tau + 3 samples)")

  def profile_config(self) -> "profile.ProfileConfig":
    """The generation settings in the form the shared activity cache keys on."""
    return profile.ProfileConfig(tau=self.tau, redundancy=self.redundancy, n_surrogates=0,
                                 seed=self.seed, max_new_tokens=self.max_new_tokens,
                                 batch_size=self.batch_size, greedy=True)


@dataclasses.dataclass(frozen=True)
class SweepItem:
  """One prompt of the sweep: its text, difficulty, group (family or JSONL category) and, for the
  task families, the Example whose answer ``tasks.check`` compares (None for JSONL prompts)."""
  text: str
  level: float
  group: str
  example: "tasks.Example | None" = None


# --------------------------------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------------------------------


def sweep_levels(families: Sequence[str], levels: Sequence[int] | None = None) -> tuple:
  """The difficulty ranks to sweep: ``levels`` or 1 … (fewest levels among ``families``).

  Raises ValueError for a non-integer rank or one that some family lacks (naming the family and
  its number of levels).
  """
  n_levels = {f: len(tasks.levels(f)) for f in families}
  if levels is None:
    return tuple(range(1, min(n_levels.values()) + 1))
  bad = [k for k in levels if float(k) != int(float(k))]
  if bad:
    raise ValueError(f"difficulty ranks are integers, got {bad}")
  chosen = sorted({int(float(k)) for k in levels})
  for f, n in n_levels.items():
    missing = [r for r in chosen if not 1 <= r <= n]
    if missing:
      raise ValueError(f"task family {f!r} has no difficulty rank(s) {missing}: it has {n} levels "
                       f"{list(tasks.levels(f))}, ranks 1..{n}")
  return tuple(chosen)


def level_values(families: Sequence[str], ranks: Sequence[int]) -> dict:
  """{family: [its level k at each rank]}."""
  return {f: [tasks.levels(f)[r - 1] for r in ranks] for f in families}


def task_items(config: PhaseSweepConfig) -> list[SweepItem]:
  """``n_per_family`` examples of every family at every rank, rank by rank."""
  out = []
  for r in sweep_levels(config.families, config.levels):
    for f in config.families:
      k = tasks.levels(f)[r - 1]
      out += [SweepItem(e.prompt, float(r), f, e)
              for e in tasks.sample(f, k, config.n_per_family, config.seed)]
  return out


def jsonl_items(path) -> list[SweepItem]:
  """The prompts of a JSONL file (``tasks.load_prompts``); every one needs a ``difficulty``.

  Raises ValueError naming the file and the (0-based) prompt index without a difficulty.
  """
  prompts = tasks.load_prompts(path)
  items = []
  for i, p in enumerate(prompts):
    if p.difficulty is None:
      raise ValueError(f"{path}: prompt {i} ({p.text[:40]!r}) has no 'difficulty'; the phase "
                       "sweep needs a difficulty label on every prompt")
    items.append(SweepItem(p.text, float(p.difficulty), p.category or "all"))
  return sorted(items, key=lambda it: it.level)


# --------------------------------------------------------------------------------------------------
# ΦID per prompt and order parameters
# --------------------------------------------------------------------------------------------------


def per_prompt_sts_rtr(acts: np.ndarray, *, tau: int = 1, redundancy: str = "mmi",
                       progress: Callable | None = None) -> np.ndarray:
  """(P, N, N, 2) float32 sts and rtr atoms (nats) of every pair, estimated on each prompt alone.

  Units degenerate in a prompt (constant or non-finite series) are NaN rows/columns of that
  prompt (``phiid.check_units`` lists them; the caller reports them). All prompts share one
  compiled ``all_pairs`` (same (1, N, T) shape).
  """
  a = np.asarray(acts)
  if a.ndim != 3:
    raise ValueError(f"acts must be (prompts, units, time), got shape {a.shape}")
  out = np.empty(a.shape[:1] + (a.shape[1], a.shape[1], 2), np.float32)
  it = range(a.shape[0])
  for p in (progress(it, desc="ΦID per prompt") if progress else it):
    with warnings.catch_warnings():
      # Degenerate units are collected once with check_units and reported in results.json.
      warnings.filterwarnings("ignore", message="all_pairs: masking units")
      atoms = np.asarray(phiid.all_pairs(a[p:p + 1], tau=tau, redundancy=redundancy,
                                         pool="mean", on_degenerate="mask"))
    out[p, ..., 0] = atoms[..., _STS]
    out[p, ..., 1] = atoms[..., _RTR]
  return out


def _as_atoms(sts_rtr: np.ndarray) -> np.ndarray:
  """(N, N, 2) sts/rtr → an (N, N, 16) atoms array for ``analysis.order_parameters``; the other
  14 atoms are NaN (order parameters never read them, and NaN would show if one did)."""
  n = sts_rtr.shape[0]
  atoms = np.full((n, n, len(ranking.ATOMS)), np.nan)
  atoms[..., _STS] = sts_rtr[..., 0]
  atoms[..., _RTR] = sts_rtr[..., 1]
  return atoms


def order_values(sts_rtr: np.ndarray, num_layers: int, num_heads: int) -> np.ndarray:
  """(3,) order parameters (``ORDER_PARAMETERS`` order) of one (N, N, 2) sts/rtr array."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices → NaN, reported as NaN
    o = analysis.order_parameters(_as_atoms(sts_rtr), num_layers, num_heads)
  return np.array([o[k] for k in ORDER_PARAMETERS])


def pooled_mean(sts_rtr: np.ndarray) -> np.ndarray:
  """(N, N, 2) mean over prompts; a pair NaN in any prompt stays NaN, as in ``all_pairs``."""
  return np.mean(np.asarray(sts_rtr, np.float64), axis=0)


def bootstrap_mean_ci(values: np.ndarray, groups: np.ndarray, n_boot: int, level: float,
                      seed: int) -> tuple[float, float, float]:
  """(mean, low, high): percentile bootstrap of the mean of (P,) values, stratified by group;
  non-finite values are dropped first. (NaN, NaN, NaN) if none is finite."""
  v = np.asarray(values, np.float64)
  ok = np.isfinite(v)
  if not ok.any():
    return float("nan"), float("nan"), float("nan")
  v, g = v[ok], np.asarray(groups)[ok]
  idx = stratified_bootstrap_indices(g, n_boot, seed)
  lo, hi = percentile_interval(v[idx].mean(1), level)
  return float(v.mean()), float(lo), float(hi)


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
                  num_layers: int, num_heads: int, level: float, *, n_boot: int = 500,
                  ci_level: float = 0.95, seed: int = 0) -> LevelResult:
  """Order parameters (pooled, with bootstrap CIs over prompts) and accuracy of one level.

  Args:
    sts_rtr: (P, N, N, 2) per-prompt sts/rtr atoms; groups: (P,) family of each prompt (the
      bootstrap resamples within family); correct: (P,) bool exact matches or None.
  """
  g = np.asarray(groups)
  est = order_values(pooled_mean(sts_rtr), num_layers, num_heads)
  idx = stratified_bootstrap_indices(g, n_boot, seed)
  boot = np.stack([order_values(pooled_mean(sts_rtr[i]), num_layers, num_heads) for i in idx])
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    lo, hi = percentile_interval(boot, ci_level)
  per = np.stack([order_values(s, num_layers, num_heads) for s in sts_rtr])  # (P, 3)
  order = {}
  for j, name in enumerate(ORDER_PARAMETERS):
    m, plo, phi = bootstrap_mean_ci(per[:, j], g, n_boot, ci_level, seed + 1)
    order[name] = {"estimate": float(est[j]), "ci_low": float(lo[j]), "ci_high": float(hi[j]),
                   "per_prompt_mean": m, "per_prompt_ci_low": plo, "per_prompt_ci_high": phi,
                   "n_finite_prompts": int(np.isfinite(per[:, j]).sum())}
  acc = None
  if correct is not None:
    c = np.asarray(correct, np.float64)
    m, alo, ahi = bootstrap_mean_ci(c, g, n_boot, ci_level, seed + 2)
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


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------


def _decode(tokenizer, tokens: np.ndarray) -> list[str]:
  return [tokenizer.decode(np.asarray(row).tolist(), skip_special_tokens=True) for row in tokens]


def level_data(spec: "specs.ModelSpec", items: Sequence[SweepItem], config: PhaseSweepConfig,
               cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """Activity (cached, shared with the profile's cache) and per-prompt sts/rtr (cached) of one
  level's prompts, plus the continuations' exact-match results.

  Returns {"sts_rtr" (P, N, N, 2), "tokens" (P, T), "correct" (P,) bool or None,
  "degenerate": [{"unit", "layer", "head", "prompt", "reason"}]}.
  """
  prompts = [it.text for it in items]
  pc = config.profile_config()
  act = profile.activity_cached(spec, prompts, pc, cache_dir, progress)
  acts = np.asarray(act["acts"])
  key = {"what": "per_prompt_sts_rtr", "model": specs.model_fingerprint(spec.model),
         "prompts": prompts, "max_new_tokens": config.max_new_tokens, "tau": config.tau,
         "redundancy": config.redundancy}
  sts_rtr = np.asarray(results.cached(
      cache_dir, key, lambda: per_prompt_sts_rtr(acts, tau=config.tau,
                                                 redundancy=config.redundancy), "sts_rtr"))
  nh = spec.model.config.num_heads
  deg = [{"unit": p.unit, "layer": p.unit // nh, "head": p.unit % nh, "prompt": p.prompt,
          "reason": p.reason} for p in phiid.check_units(acts, config.tau)]
  correct = None
  if all(it.example is not None for it in items):
    texts = _decode(spec.tokenizer, np.asarray(act["tokens"]))
    correct = np.array([tasks.check(it.example, t) for it, t in zip(items, texts)])
  return {"sts_rtr": sts_rtr, "tokens": np.asarray(act["tokens"]), "correct": correct,
          "degenerate": deg}


def analyse_sweep(spec: "specs.ModelSpec", items: Sequence[SweepItem], config: PhaseSweepConfig,
                  cache_dir, *, progress: Callable | None = None) -> dict:
  """Runs the sweep on ``items`` (any order; grouped by level) and returns results.json's dict
  plus "_per_prompt" arrays (keys starting with "_" are not written to JSON)."""
  cache_dir = pathlib.Path(cache_dir)
  cfg = spec.model.config
  L, H = cfg.num_layers, cfg.num_heads
  levels = sorted({it.level for it in items})
  if not levels:
    raise ValueError("the phase sweep got no prompts")
  per_level, xs, pers, groups, corrects, degenerate = [], [], [], [], [], []
  for li, k in enumerate(progress(levels, desc="levels") if progress else levels):
    lv_items = [it for it in items if it.level == k]
    data = level_data(spec, lv_items, config, cache_dir, progress)
    g = [it.group for it in lv_items]
    res = analyse_level(data["sts_rtr"], g, data["correct"], L, H, k, n_boot=config.n_boot,
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
    order_parameter[name] = {
        "values": [r["estimate"] for r in rows], "ci_low": [r["ci_low"] for r in rows],
        "ci_high": [r["ci_high"] for r in rows], "ci_level": config.ci_level,
        "n_boot": config.n_boot,
        "per_prompt_mean": [r["per_prompt_mean"] for r in rows],
        "per_prompt_ci_low": [r["per_prompt_ci_low"] for r in rows],
        "per_prompt_ci_high": [r["per_prompt_ci_high"] for r in rows],
    }
  accuracy = None
  if has_acc:
    accuracy = {"values": [r.accuracy["mean"] for r in per_level],
                "ci_low": [r.accuracy["ci_low"] for r in per_level],
                "ci_high": [r.accuracy["ci_high"] for r in per_level],
                "per_family": {f: [r.accuracy["per_group"].get(f, float("nan")) for r in per_level]
                               for f in dict.fromkeys(groups)},
                "ci_level": config.ci_level}
  return {
      "experiment": "phase_sweep",
      "model": spec.label,
      "fingerprint": specs.model_fingerprint(spec.model),
      "num_layers": L, "num_heads": H,
      "control": ("task difficulty rank (1 = each family's easiest level; families pooled at "
                  "every rank)" if has_acc else "difficulty label of the JSONL prompts"),
      "level_values": (level_values(sorted(set(groups), key=groups.index),
                                    [int(k) for k in levels]) if has_acc else None),
      "families": sorted(set(groups), key=groups.index),
      "levels": levels,
      "n_prompts": [r.n_prompts for r in per_level],
      "order_parameter_name": config.order_parameter,
      "order_parameter": order_parameter,
      "accuracy": accuracy,
      "susceptibility": {n: t.get("susceptibility") for n, t in trans.items()},
      "susceptibility_peak": {n: t.get("susceptibility_peak") for n, t in trans.items()},
      "threshold": primary.get("threshold"),
      "supported": bool(primary.get("supported", False)),
      # The claim under test: an abrupt rise toward synergy (higher order parameter).
      "claim_supported": bool(primary.get("supported", False)
                              and primary["fits"]["logistic"]["jump"] > 0),
      "transition": trans,
      "degenerate": degenerate,
      "config": dataclasses.asdict(config),
      "_x": x, "_per_prompt": per, "_groups": np.asarray(groups),
      "_correct": None if not has_acc else np.concatenate(corrects),
  }


def _fmt(v, nd=3) -> str:
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}g}"


def _pooled_trend(values, levels, per_prompt_slope: float, name: str) -> str:
  """A sentence on the pooled (level-atoms) values' linear trend, flagging a sign disagreement
  with the per-prompt trend (mean of ratios vs ratio of means)."""
  v = np.asarray(values, np.float64)
  x = np.asarray(levels, np.float64)
  ok = np.isfinite(v)
  if ok.sum() < 2:
    return "- Pooled level values: too few finite values for a trend."
  slope = float(np.polyfit(x[ok], v[ok], 1)[0])
  text = (f"- Pooled level values (ΦID atoms averaged over a level's prompts, then {name}): "
          f"linear slope {_fmt(slope)} per level.")
  if np.sign(slope) != np.sign(per_prompt_slope):
    text += (" Its sign differs from the per-prompt trend: the two summaries weigh prompts "
             "differently (ratio of means vs mean of ratios), so neither direction is robust.")
  return text


def _flat_note(t: dict, levels) -> str:
  """A warning when every prompt of some level has the same value (a floor or ceiling)."""
  sus = t.get("susceptibility")
  flat = [levels[i] for i, v in enumerate([] if sus is None else list(sus))
          if v is not None and v == 0]
  if not flat:
    return ""
  return (f" Every prompt has the same value at level(s) {flat}: at a floor or ceiling a tiny "
          "step can pass the tests — judge it by the size of the jump.")


def summary_markdown(res: dict) -> str:
  """Plain-language summary.md of a phase sweep."""
  name = res["order_parameter_name"]
  op = res["order_parameter"][name]
  lv = res["levels"]
  tr = res["transition"][name]
  lines = [f"# Difficulty phase sweep — {res['model']}", "",
           f"Control parameter: {res['control']}; levels {lv}; prompts per level "
           f"{res['n_prompts']}; families/groups {res['families']}.",
           *(["Task level k of each family at these ranks: "
              + "; ".join(f"{f} {v}" for f, v in res["level_values"].items()) + "."]
             if res.get("level_values") else []),
           f"Order parameter deciding the verdict: **{name}** (pooled ΦID atoms per level, "
           f"{int(op['ci_level'] * 100)}% bootstrap CI over prompts).", "",
           "| level | " + " | ".join(ORDER_PARAMETERS) + " | accuracy |",
           "|---|" + "---|" * (len(ORDER_PARAMETERS) + 1)]
  for i, k in enumerate(lv):
    cells = []
    for n in ORDER_PARAMETERS:
      o = res["order_parameter"][n]
      cells.append(f"{_fmt(o['values'][i])} [{_fmt(o['ci_low'][i])}, {_fmt(o['ci_high'][i])}]")
    acc = res["accuracy"]
    a = ("—" if acc is None else
         f"{_fmt(acc['values'][i], 2)} [{_fmt(acc['ci_low'][i], 2)}, {_fmt(acc['ci_high'][i], 2)}]")
    lines.append(f"| {k:g} | " + " | ".join(cells) + f" | {a} |")
  lines += ["", "## Is there a phase transition?", ""]
  if "skipped" in tr:
    lines.append(f"Not analysed: {tr['skipped']}.")
  else:
    verdict = "**Yes — a transition is supported.**" if tr["supported"] else \
        "**No — a transition is not supported by these data.**"
    slope = tr["fits"]["linear"]["slope"]
    direction = ("rises (toward synergy, the direction the claim predicts)" if slope > 0 else
                 "falls (toward redundancy, against the claim's direction)" if slope < 0 else
                 "does not change")
    jump = tr["fits"]["logistic"]["jump"]
    mean_level = float(np.mean(tr["level_means"]))
    if tr["supported"]:
      size = (f"The step is {_fmt(jump)} ({_fmt(100 * abs(jump) / abs(mean_level), 2)}% of the "
              f"mean value {_fmt(mean_level)})" if mean_level else f"The step is {_fmt(jump)}")
      if jump > 0:
        claim = (f"{size}, upward: toward synergy, as the claim under test predicts — judge "
                 "whether a step this size matters.")
      else:
        claim = (f"{size}, downward: toward redundancy, **opposite** to the claim under test "
                 "(redundancy → synergy with difficulty), which is therefore not supported.")
      verdict += " " + claim
    lines += [verdict, "", tr["explanation"], "",
              f"- Trend: the per-prompt {name} {direction}: linear slope {_fmt(slope)} per level "
              f"(level means {', '.join(_fmt(m) for m in tr['level_means'])}).",
              _pooled_trend(op["values"], lv, slope, name),
              f"- Per-prompt {name} against difficulty: logistic threshold "
              f"{_fmt(tr['logistic_threshold_unconfirmed'])} (bootstrap CI "
              f"{_fmt(tr['threshold_ci'][0])}–{_fmt(tr['threshold_ci'][1])}), jump CI "
              f"{_fmt(tr['jump_ci'][0])}–{_fmt(tr['jump_ci'][1])}, shuffled-label p = "
              f"{_fmt(tr['p_value'])}.",
              "- AIC constant / linear / logistic: "
              + " / ".join(_fmt(tr["fits"][m]["aic"], 5) for m in ("constant", "linear",
                                                                   "logistic")) + ".",
              f"- Susceptibility (variance of the per-prompt value) peaks at level "
              f"{_fmt(tr['susceptibility_peak'])}.{_flat_note(tr, lv)}"]
    for other in ORDER_PARAMETERS:
      t = res["transition"][other]
      if other == name or "skipped" in t:
        continue
      lg = t["fits"]["logistic"]
      line = (f"- {other}: transition {'supported' if t['supported'] else 'not supported'} "
              f"(logistic d* = {_fmt(lg['threshold'])}, jump {_fmt(lg['jump'])}, "
              f"p = {_fmt(t['p_value'])}).")
      lines.append(line + _flat_note(t, lv))
  if res["accuracy"] is not None:
    acc = res["accuracy"]["values"]
    lines += ["", f"Task accuracy goes from {_fmt(acc[0], 2)} at level {lv[0]:g} to "
              f"{_fmt(acc[-1], 2)} at level {lv[-1]:g}."]
  if res["degenerate"]:
    units = sorted({(d["layer"], d["head"]) for d in res["degenerate"]})
    lines += ["", f"{len(units)} head(s) had constant or non-finite series in some prompts and "
              f"were left out of those prompts' pairs: {units[:10]}"]
  lines += ["", "Per-prompt values come from 1-prompt ΦID estimates (noisier than the pooled level "
            "values); the transition criteria are listed in results.json → transition."]
  return "\n".join(lines) + "\n"


def write_sweep(run_dir, res: dict) -> dict:
  """Writes results.json, order_parameters.csv, accuracy.csv, per_prompt.csv, transition.csv,
  per_prompt.npz, phase_sweep_<order parameter>.png and summary.md; returns the JSON dict."""
  run_dir = pathlib.Path(run_dir)
  public = {k: v for k, v in res.items() if not k.startswith("_")}
  results.write_json(run_dir / "results.json", public)
  lv = res["levels"]
  rows = []
  for name in ORDER_PARAMETERS:
    o = res["order_parameter"][name]
    for i, k in enumerate(lv):
      rows.append({"order_parameter": name, "level": k, "n_prompts": res["n_prompts"][i],
                   "value": o["values"][i], "ci_low": o["ci_low"][i], "ci_high": o["ci_high"][i],
                   "per_prompt_mean": o["per_prompt_mean"][i],
                   "per_prompt_ci_low": o["per_prompt_ci_low"][i],
                   "per_prompt_ci_high": o["per_prompt_ci_high"][i],
                   "susceptibility": (res["susceptibility"][name][i]
                                      if res["susceptibility"][name] is not None
                                      and len(res["susceptibility"][name]) == len(lv)
                                      else float("nan"))})
  results.write_csv(run_dir / "order_parameters.csv", rows)
  if res["accuracy"] is not None:
    acc = res["accuracy"]
    results.write_csv(run_dir / "accuracy.csv", [
        {"level": k, "family": f, "accuracy": acc["per_family"][f][i]}
        for i, k in enumerate(lv) for f in acc["per_family"]] + [
        {"level": k, "family": "all", "accuracy": acc["values"][i]} for i, k in enumerate(lv)])
  per = res["_per_prompt"]
  pp = {"prompt": np.arange(per.shape[0]), "level": res["_x"], "group": res["_groups"]}
  if res["_correct"] is not None:
    pp["correct"] = res["_correct"].astype(int)
  for j, name in enumerate(ORDER_PARAMETERS):
    pp[name] = per[:, j]
  results.write_csv(run_dir / "per_prompt.csv", {k: list(v) for k, v in pp.items()})
  results.write_npz(run_dir / "per_prompt.npz", level=res["_x"], order_parameters=per,
                    names=np.asarray(ORDER_PARAMETERS))
  trows = []
  for name, t in res["transition"].items():
    if "skipped" in t:
      continue
    for m, f in t["fits"].items():
      trows.append({"order_parameter": name, "model": m, "aic": f["aic"], "sse": f["sse"],
                    "held_out_loglik": t["held_out_loglik"][m], "supported": t["supported"]})
  if trows:
    results.write_csv(run_dir / "transition.csv", trows)
  for name in ORDER_PARAMETERS:
    t = res["transition"][name]
    o = res["order_parameter"][name]
    sus = t.get("susceptibility")
    fig = plots.phase_sweep(
        lv, {"mean": np.asarray(o["per_prompt_mean"], float),
             "ci_low": np.asarray(o["per_prompt_ci_low"], float),
             "ci_high": np.asarray(o["per_prompt_ci_high"], float)},
        np.asarray(sus if sus is not None and len(sus) == len(lv) else [np.nan] * len(lv),
                   float),
        None if res["accuracy"] is None else {
            "mean": np.asarray(res["accuracy"]["values"], float),
            "ci_low": np.asarray(res["accuracy"]["ci_low"], float),
            "ci_high": np.asarray(res["accuracy"]["ci_high"], float)},
        order_name=f"{name} (mean over prompts)",
        fit_curve=None if "fit_curve" not in t else (t["fit_curve"]["x"], t["fit_curve"]["y"]),
        threshold=None if t.get("threshold") is None else t["threshold"]["estimate"],
        threshold_ci=None if t.get("threshold") is None else t["threshold"]["ci"],
        save=run_dir / f"phase_sweep_{name}.png")
    del fig
  results.write_text(run_dir / "summary.md", summary_markdown(public))
  return public


def run_phase_sweep(model: str, config: PhaseSweepConfig, run_dir, *, cache_dir,
                    prompts_path: str | None = None, dtype: str = "float32",
                    progress: Callable | None = None) -> dict:
  """The phase-sweep experiment for a --model string; writes everything into ``run_dir``.

  prompts_path: a JSONL file with a ``difficulty`` on every prompt (then no accuracy), instead of
  the task families; ``config.levels``, if given, selects difficulty labels from it.
  Returns results.json's dict (with "wall_s").
  """
  t0 = time.time()
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  if prompts_path:
    items = jsonl_items(prompts_path)
    if config.levels is not None:  # keep only the requested difficulty labels
      have = {it.level for it in items}
      missing = [k for k in config.levels if float(k) not in have]
      if missing:
        raise ValueError(f"{prompts_path}: no prompt has difficulty {missing} (labels present: "
                         f"{sorted(have)})")
      items = [it for it in items if it.level in {float(k) for k in config.levels}]
  else:
    items = task_items(config)
  res = analyse_sweep(spec, items, config, cache_dir, progress=progress)
  res["wall_s"] = time.time() - t0
  return write_sweep(run_dir, res)
