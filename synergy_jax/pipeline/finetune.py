"""Fine-tuning the synergistic core: does training only the most synergistic heads help more than
training the most redundant or random heads? (Urbina-Rodriguez, Mediano et al., arXiv 2601.06851,
Fig. 5: with GRPO yes, with SFT no difference.)

1. Profile (``pipeline.profile``, cached): per-head score, higher = more synergistic.
2. Head sets (``interventions.perturbation_head_sets``): the top ``fraction`` synergistic, the top
   ``fraction`` redundant, and ``seeds`` random sets of the same size.
3. For each condition and seed k (training seed = seed + k; "random" also takes random set k), the
   chosen heads are fine-tuned from the same base (``training.finetune``: SFT or GRPO, resumable),
   with held-out greedy accuracy every ``eval_every`` steps.
4. Per run: the best accuracy among evaluations in the window (steps ≥ window_start · steps, step 0
   excluded) and the final one. Comparisons of synergistic vs random and vs redundant over seeds:
   difference of medians, Hedges' g with a bootstrap CI, exact permutation p (two-sided).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from typing import Callable, Sequence

import numpy as np

from synergy_jax import interventions, models
from synergy_jax.analysis import ranking, stats
from synergy_jax.phiid.config import PhiidConfig
from synergy_jax.pipeline import profile, specs
from synergy_jax.training import finetune, logs, tuning

CONDITIONS = ("synergistic", "redundant", "random")
COMPARISONS = (("synergistic", "random"), ("synergistic", "redundant"))


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
  """The experiment's settings: tune (one run's TuneConfig; its seed is the base seed), fraction
  of heads per condition, seeds (runs per condition), window_start (best-in-window: evaluations at
  steps ≥ window_start · steps), ranking and the profile's generation (per_category prompts,
  max_new_tokens, batch_size) and estimator (phiid, a ``phiid.PhiidConfig``), statistics (n_boot,
  ci_level), save_params."""
  tune: "tuning.TuneConfig" = tuning.TuneConfig()
  fraction: float = 0.5
  seeds: int = 5
  window_start: float = 0.0
  ranking: str = "rank_difference"
  per_category: int | None = None
  max_new_tokens: int = 100
  batch_size: int = 8
  phiid: "PhiidConfig" = PhiidConfig()
  n_boot: int = 2000
  ci_level: float = 0.95
  save_params: bool = False

  def __post_init__(self):
    if not 0 < self.fraction < 1:
      raise ValueError(f"fraction must lie in (0, 1), got {self.fraction}")
    if self.seeds < 2:
      raise ValueError(f"seeds must be >= 2 (Hedges' g and the permutation test need two runs "
                       f"per condition), got {self.seeds}")
    if not 0 <= self.window_start <= 1:
      raise ValueError(f"window_start must lie in [0, 1], got {self.window_start}")
    if self.ranking not in profile.RANKINGS:
      raise ValueError(f"ranking must be one of {profile.RANKINGS}, got {self.ranking!r}")

  def profile_config(self) -> "profile.ProfileConfig":
    return profile.ProfileConfig(phiid=self.phiid, n_surrogates=0, ranking=self.ranking,
                                 seed=self.tune.seed,
                                 max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)


@dataclasses.dataclass(frozen=True)
class RunSummary:
  """One fine-tuning run: its heads ((k, 2) layer, head), learning curve (eval steps, mean
  accuracy), best-in-window accuracy and its step, final accuracy, and the tuned module."""
  condition: str
  seed: int
  heads: np.ndarray
  steps: np.ndarray
  accuracy: np.ndarray
  best: float
  best_step: int
  final: float
  model: object


def head_sets(score: np.ndarray, num_layers: int, num_heads: int, config: FinetuneConfig
              ) -> dict[str, list[np.ndarray]]:
  """{condition: [seeds × (k, 2) (layer, head) arrays]} (synergistic/redundant repeated).

  The redundant set is taken from the most redundant heads *not* in the synergistic set (for
  fraction ≤ 0.5 the two are disjoint): with tied scores at the boundary (e.g. many heads with
  rank difference 0 on short series) the stable orders alone could put a tied head in both.
  """
  sets = interventions.perturbation_head_sets(score, num_layers, num_heads,
                                              fraction=config.fraction, n_random=config.seeds,
                                              seed=config.tune.seed + 7)
  k = len(sets["synergistic_units"])
  syn = set(sets["synergistic_units"].tolist())
  red = [u for u in ranking.redundant_order(np.asarray(score)) if u not in syn][:k]
  if len(red) < k:  # fraction > 0.5: the sets must overlap
    red = ranking.redundant_order(np.asarray(score))[:k].tolist()
  lh = lambda units: np.stack(np.divmod(np.sort(np.asarray(units)), num_heads), -1)
  return {"synergistic": [sets["synergistic"]] * config.seeds,
          "redundant": [lh(red)] * config.seeds, "random": list(sets["random"])}


def boundary_ties(score: np.ndarray, k: int) -> int:
  """Heads whose score equals the k-th most synergistic one's (ties split by unit order)."""
  s = np.asarray(score, np.float64)
  kth = s[ranking.synergistic_order(s)[k - 1]]
  return int(np.sum(s == kth))


def curve(log_rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
  """(eval steps, mean accuracy) from a run's log rows."""
  rows = [r for r in log_rows if "acc" in r]
  return (np.array([int(r["step"]) for r in rows]), np.array([r["acc"] for r in rows]))


def best_and_final(steps: np.ndarray, acc: np.ndarray, total: int, window_start: float
                   ) -> tuple[float, int, float]:
  """(best accuracy in the window, its step, final accuracy). Raises if the log lacks the
  final step's evaluation or the window holds none."""
  if steps.size == 0 or steps[-1] != total:
    raise ValueError(f"the run's log has no evaluation at its final step {total} (evaluated at "
                     f"{steps.tolist()})")
  inside = (steps >= window_start * total) & (steps > 0)
  if not inside.any():
    raise ValueError(f"no evaluation step lies in the window [{window_start * total:g}, {total}]")
  i = np.flatnonzero(inside)[int(np.argmax(acc[inside]))]
  return float(acc[i]), int(steps[i]), float(acc[-1])


def run_condition(spec: "specs.ModelSpec", condition: str, k: int, heads: np.ndarray,
                  config: FinetuneConfig, run_root: pathlib.Path, evaluate: Callable, *,
                  stop_after: int | None = None, resume_from_last_good: bool = False,
                  log: Callable = print) -> RunSummary | None:
  """Fine-tunes one condition × seed in ``run_root/<condition>_seed<k>/`` (resumes there).
  Returns None when stopped early by ``stop_after``."""
  tune = dataclasses.replace(config.tune, seed=config.tune.seed + k)
  workdir = run_root / f"{condition}_seed{k}"
  res = finetune.finetune(spec.model, spec.tokenizer, heads, tune, workdir, evaluate=evaluate,
                          stop_after=stop_after, resume_from_last_good=resume_from_last_good,
                          log=log)
  if res.step < tune.steps:
    return None
  steps, acc = curve(logs.read(workdir / "log.csv"))
  best, best_step, final = best_and_final(steps, acc, tune.steps, config.window_start)
  return RunSummary(condition, k, np.asarray(heads), steps, acc, best, best_step, final,
                    res.model)


def compare(a: np.ndarray, b: np.ndarray, config: FinetuneConfig, seed: int) -> dict:
  """a vs b over seeds: medians, their difference, Hedges' g with CI, permutation p."""
  g = stats.hedges_g_ci(a, b, n_boot=config.n_boot, level=config.ci_level, seed=seed)
  perm = stats.permutation_test(a, b, statistic=np.median, seed=seed)
  return {"median_a": float(np.median(a)), "median_b": float(np.median(b)),
          "median_difference": perm.difference, "hedges_g": g.g, "g_ci_low": g.ci_low,
          "g_ci_high": g.ci_high, "g_undefined_replicates": g.n_undefined,
          "ci_level": config.ci_level, "permutation_p": perm.p,
          "n_permutations": perm.n_permutations, "exact": perm.exact,
          "n_a": int(np.size(a)), "n_b": int(np.size(b))}


def analyse_finetune(spec: "specs.ModelSpec", prompts: Sequence[str], config: FinetuneConfig,
                     run_dir: pathlib.Path, cache_dir: pathlib.Path, *,
                     stop_after: int | None = None, resume_from_last_good: bool = False,
                     progress: Callable | None = None, log: Callable = print) -> dict | None:
  """Profile → head sets → every condition × seed fine-tuned → comparisons; results.json's dict
  (with "_runs": the RunSummary list). None when ``stop_after`` stopped the runs early."""
  cfg = spec.model.config
  t0 = time.time()
  prof = profile.profile_model(spec, prompts, config.profile_config(), cache_dir, progress)
  t_profile = time.time() - t0
  sets = head_sets(prof.score, cfg.num_layers, cfg.num_heads, config)
  base_eval = tuning.make_evaluate(spec.model, spec.tokenizer, config.tune)
  base = base_eval(spec.model)

  def evaluate(model):  # step 0 of every fresh run is the base module itself: evaluated once
    return base if model is spec.model else base_eval(model)

  runs, stopped = [], False
  t0 = time.time()
  jobs = [(c, k) for c in CONDITIONS for k in range(config.seeds)]
  for c, k in (progress(jobs, desc="fine-tuning runs") if progress else jobs):
    r = run_condition(spec, c, k, sets[c][k], config, run_dir / "runs", evaluate,
                      stop_after=stop_after, resume_from_last_good=resume_from_last_good,
                      log=log)
    stopped |= r is None
    runs.append(r)
  if stopped:
    return None
  t_tune = time.time() - t0
  by = {c: [r for r in runs if r.condition == c] for c in CONDITIONS}
  conditions = {c: {
      "heads": [r.heads.tolist() for r in rs] if c == "random" else rs[0].heads.tolist(),
      "best": [r.best for r in rs], "best_step": [r.best_step for r in rs],
      "final": [r.final for r in rs],
      "curves": {"steps": rs[0].steps.tolist(), "accuracy": [r.accuracy.tolist() for r in rs]},
  } for c, rs in by.items()}
  comparisons = {}
  for i, (a, b) in enumerate(COMPARISONS):
    comparisons[f"{a}_vs_{b}"] = {
        m: compare(np.array(conditions[a][m]), np.array(conditions[b][m]), config,
                   config.tune.seed + 101 * i + j) for j, m in enumerate(("best", "final"))}
  return {
      "experiment": "finetune", "method": config.tune.method, "model": spec.label,
      "fingerprint": specs.model_fingerprint(spec.model),
      "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
      "n_heads_per_condition": len(sets["synergistic"][0]), "ranking": config.ranking,
      "heads_tied_at_boundary": boundary_ties(prof.score, len(sets["synergistic"][0])),
      "base_accuracy": base, "conditions": conditions, "comparisons": comparisons,
      "eval_cells": [f"{f}_{k}" for f, k in tuning.cells(config.tune)],
      "head_score": prof.score, "timing_s": {"profile": t_profile, "fine_tuning": t_tune},
      "config": dataclasses.asdict(config), "_runs": runs,
  }


def save_params(run_dir: pathlib.Path, spec: "specs.ModelSpec", runs: list) -> list[str]:
  """Writes each run's tuned module as ``params/<condition>_seed<k>/`` (HF layout with the
  tokenizer; ``models.load`` reads it). Each folder is written under a temporary name and renamed
  into place, so a kill never leaves a half-written model."""
  import shutil
  out = []
  for r in runs:
    final = run_dir / "params" / f"{r.condition}_seed{r.seed}"
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    models.save(r.model, tmp)
    spec.tokenizer.save_pretrained(os.fspath(tmp))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    out.append(os.fspath(final))
  return out


def run_finetune(model: str, prompts: Sequence[str], config: FinetuneConfig, run_dir, *,
                 cache_dir, dtype: str = "float32", stop_after: int | None = None,
                 resume_from_last_good: bool = False, progress: Callable | None = None,
                 log: Callable = print) -> dict | None:
  """The experiment for a --model string; writes everything into ``run_dir`` and returns
  results.json's dict (None when ``stop_after`` stopped it early; a re-run resumes)."""
  from synergy_jax.pipeline import finetune_report
  t0 = time.time()
  run_dir = pathlib.Path(run_dir)
  spec = specs.resolve_model(model, dtype=dtype, seed=config.tune.seed)
  res = analyse_finetune(spec, prompts, config, run_dir, pathlib.Path(cache_dir),
                         stop_after=stop_after, resume_from_last_good=resume_from_last_good,
                         progress=progress, log=log)
  if res is None:
    return None
  if config.save_params:
    res["saved_params"] = save_params(run_dir, spec, res["_runs"])
  res["wall_s"] = time.time() - t0
  return finetune_report.write_finetune(run_dir, res)
