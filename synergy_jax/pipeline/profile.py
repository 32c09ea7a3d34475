"""The synergistic-core profile: activity → ΦID atoms → per-unit ranks, layer profile with
prompt-bootstrap intervals, depth-trend test, calibrated surrogate null and excess atoms,
reliability, diagnostics and graph metrics, for a model and its random-init baseline. Units are
heads, MoE experts or both (``analysis.units.Units``; ``ProfileConfig.units``).

``profile_activity`` is the analysis of one model's activity (arrays in, a ProfileResult out);
``profile_model`` adds generation and caching; ``run_profile`` / ``run_profile_acts`` add the
run directory's files (``profile_write``). Configuration: ``profile_config``; markdown:
``profile_report``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Callable, Sequence

import numpy as np

from synergy_jax import analysis, phiid, results
from synergy_jax.analysis import nulls, report, stats, surrogates, uncertainty
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import capture, profile_local, specs
from synergy_jax.pipeline.profile_config import BASELINE_INPUTS, RANKINGS, ProfileConfig
from synergy_jax.pipeline.profile_report import summary_markdown, verdict
from synergy_jax.pipeline.profile_write import write_profile

__all__ = ["BASELINE_INPUTS", "RANKINGS", "ProfileConfig", "ProfileResult", "activity_cached",
           "atoms_cached", "compute_atoms", "head_score", "profile_activity", "profile_model",
           "profile_prompts", "run_profile", "run_profile_acts", "summary_markdown", "verdict",
           "write_profile"]


@dataclasses.dataclass(frozen=True)
class ProfileResult:
  """One model's profile. summary: JSON-able dict (analysis.report.profile_report's keys plus
  "score_name", "null", "excess", "depth_trend", "layer_profile_ci", "reliability", "degenerate",
  "verdict"); table: per-unit columns for head_scores.csv; scores: HeadScores; score: (U,) the
  ranking score (higher = more synergistic); all_scores: {ranking: (U,)}; atoms (U, U, 16) nats;
  acts (P, U, T); surrogates: SurrogateResult or None; per_prompt: (P, U, U, 2) per-prompt pair
  sts/rtr or None; ci: {score: analysis.uncertainty.ProfileCI}; local: per-token sts/rtr of the
  top units (``profile_local.LocalAtoms``) or None; units: what each of the U units is."""
  summary: dict
  table: dict
  scores: "analysis.HeadScores"
  score: np.ndarray
  atoms: np.ndarray
  acts: np.ndarray
  surrogates: object
  units: Units
  all_scores: dict = dataclasses.field(default_factory=dict)
  per_prompt: np.ndarray | None = None
  ci: dict = dataclasses.field(default_factory=dict)
  local: "profile_local.LocalAtoms | None" = None

  @property
  def num_layers(self) -> int:
    """The model's decoder depth L (layers without units included)."""
    return self.units.num_layers

  @property
  def num_heads(self) -> int:
    """Heads per layer, for a profile of the full head grid (ValueError otherwise)."""
    return self.units.heads_per_layer("this profile (use ProfileResult.units)")


def head_score(scores: "analysis.HeadScores", ranking: str) -> np.ndarray:
  """(U,) the per-head score named by ``ranking`` from atoms alone; higher = more synergistic.
  ("excess" needs the surrogate null: take it from ``ProfileResult.all_scores``.)"""
  if ranking == "rank_difference":
    return scores.rank_score
  if ranking == "balance":
    return scores.balance
  if ranking == "excess":
    raise ValueError("ranking='excess' needs the surrogate null; use profile_activity(...)"
                     ".all_scores['excess']")
  raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")


compute_dtype = specs.compute_dtype  # the estimator's compute dtype name


def compute_atoms(acts: np.ndarray, config: ProfileConfig) -> np.ndarray:
  """(U, U, 16) ΦID atoms of all pairs; degenerate units come back as NaN rows/columns."""
  return np.asarray(phiid.all_pairs(acts, on_degenerate="mask", **config.estimator_kwargs()),
                    np.float64)


def _check_acts(acts, units: Units):
  if not isinstance(units, Units):
    raise ValueError(f"units must be an analysis.units.Units table, got {type(units).__name__} "
                     f"(the head grid is Units.grid(num_layers, num_heads))")
  acts = np.asarray(acts)
  if acts.ndim != 3 or acts.shape[1] != units.size:
    raise ValueError(f"acts must be (prompts, {units.layout()} = {units.size} units, time), "
                     f"got shape {acts.shape}")
  return acts


def _depth_trends(all_scores: dict, units: Units, config) -> dict:
  layers = len(np.unique(units.layer))
  why = ("needs at least 3 layers" if units.num_layers < 3 else
         f"needs units in at least 3 layers (the units sit in {layers})" if layers < 3 else
         "n_perm = 0" if not config.n_perm else None)
  if why is not None:
    return {k: {"unavailable": why} for k in all_scores}
  return {k: stats.depth_trend(analysis.minmax_scale(v), units,
                               n_perm=config.n_perm, n_boot=max(config.n_boot, 1),
                               seed=config.seed).to_dict()
          for k, v in all_scores.items()}


def profile_activity(acts: np.ndarray, units: Units, config: ProfileConfig,
                     *, atoms: np.ndarray | None = None, per_prompt: np.ndarray | None = None,
                     moments: "nulls.NullMoments | None" = None,
                     progress: Callable | None = None) -> ProfileResult:
  """The whole profile analysis of (P, U, T) activity of the U units in ``units``.

  atoms, per_prompt, moments: precomputed (cached) all-pairs atoms, per-prompt pair values and
  surrogate moments; computed here when None.
  """
  acts = _check_acts(acts, units)
  pc = config.phiid
  problems = phiid.degenerate(acts, pc, specs.compute_dtype())
  if atoms is None:
    atoms = compute_atoms(acts, config)
  pairs = surrogates.observed_pairs(atoms)
  sur = None
  if config.n_surrogates:
    design = nulls.draw_design(config.null, config.n_surrogates, acts.shape[0], acts.shape[2],
                               tau=pc.tau, seed=config.seed)
    if moments is None:
      moments = nulls.null_moments(acts, pairs, design, pc,
                                   progress=specs.staged(progress, "surrogates", "surrogate"),
                                   mesh=config.estimator_kwargs()["mesh"])
    sur = surrogates.surrogate_statistics(pairs, design, moments)
  summary, table, scores = report.profile_report(
      atoms, units, acts=acts, surrogate=sur,
      graph_fraction=config.graph_fraction, seed=config.seed)
  null_mean = None if sur is None else sur.null_pair_mean
  all_scores = uncertainty.scores_from_pairs(pairs, null_mean)
  trends = _depth_trends(all_scores, units, config)
  summary["depth_trend"] = trends
  if sur is not None:
    table["sts_excess"], table["rtr_excess"] = sur.head_excess[:, 0], sur.head_excess[:, 1]
    summary["null"] = sur.method
    summary["excess"] = {
        "layer_profile": analysis.layer_profile(all_scores["excess"], units).mean,
        "depth_trend": trends["excess"],
        "mean_sts_excess": float(np.nanmean(sur.head_excess[:, 0])),
        "mean_rtr_excess": float(np.nanmean(sur.head_excess[:, 1])),
        "definition": "excess atom = observed − surrogate mean per pair (nats); the excess score "
                      "is rank(partner-mean sts excess) − rank(partner-mean rtr excess)"}
  ci = {}
  if config.n_boot:
    if per_prompt is None:
      per_prompt = uncertainty.prompt_pairs(acts, pc)
    ci = uncertainty.layer_profile_ci(per_prompt, units, null_mean=null_mean,
                                      n_boot=config.n_boot, seed=config.seed,
                                      pooled=pc.pool == "concat")
    summary["layer_profile_ci"] = {k: v.to_dict() for k, v in ci.items()}
    summary["reliability"] = (
        uncertainty.reliability(per_prompt, null_mean=null_mean,
                                n_splits=max(config.n_splits, 1), seed=config.seed)
        if acts.shape[0] >= 4 else {k: {"unavailable": "split halves need >= 4 prompts"}
                                    for k in all_scores})
  summary["score_name"] = config.ranking
  summary["degenerate"] = specs.degenerate_records(problems, units)
  summary["degenerate_units"] = specs.degenerate_summary(summary["degenerate"])
  local = (profile_local.local_atoms(acts, all_scores[config.ranking], pc, k=config.local_heads)
           if config.local_heads else None)
  summary["verdict"] = verdict(summary)
  return ProfileResult(summary, table, scores, all_scores[config.ranking], atoms, acts, sur,
                       units, all_scores, per_prompt, ci, local)


# ------------------------------------------------------------------------------------------------
# Caches
# ------------------------------------------------------------------------------------------------


def _array_digest(a: np.ndarray) -> str:
  a = np.ascontiguousarray(a)
  return hashlib.sha256(a.tobytes() + str((a.shape, a.dtype)).encode()).hexdigest()


def _estimate_key(acts: np.ndarray, config: ProfileConfig, what: str) -> dict:
  return {"what": what, "acts_sha": _array_digest(acts), **config.phiid.cache_key(compute_dtype())}


def units_key(config: ProfileConfig) -> dict:
  """The activity cache key's unit choice (absent for heads, so older head caches still hit)."""
  if config.units == "heads":
    return {}
  return {"units": config.units, "expert_activity": config.expert_activity}


def model_units(spec: "specs.ModelSpec", config: ProfileConfig) -> Units:
  """The unit table of ``spec``'s model for ``config.units`` (ValueError naming the model type
  when a dense model is asked for experts)."""
  return Units.of_config(spec.model.config, config.units)


def activity_cached(spec: "specs.ModelSpec", prompts: Sequence[str], config: ProfileConfig,
                    cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """{"acts": (P, U, T), "tokens": (P, T)} for ``prompts``, from the cache or generated and then
  cached (a repeated or interrupted run does not generate again)."""
  key = {"what": "activity", "model": specs.model_fingerprint(spec.model),
         "prompts": list(prompts), "max_new_tokens": config.max_new_tokens,
         "greedy": config.greedy, "seed": config.seed, **units_key(config)}

  def compute():
    act = capture.collect_activity(spec.model, spec.tokenizer, prompts,
                                   max_new_tokens=config.max_new_tokens,
                                   batch_size=config.batch_size, greedy=config.greedy,
                                   seed=config.seed, units=config.units,
                                   expert_activity=config.expert_activity, progress=progress)
    return {"acts": act.acts, "tokens": act.tokens}
  return results.cached(cache_dir, key, compute, "activity")


def matched_activity_cached(spec: "specs.ModelSpec", prompts: Sequence[str], tokens: np.ndarray,
                            config: ProfileConfig, cache_dir: pathlib.Path) -> dict:
  """{"acts", "tokens"} of ``spec``'s model teacher-forced on ``prompts`` + ``tokens`` (P, T)
  (another model's continuations), cached."""
  tokens = np.asarray(tokens)
  key = {"what": "matched_activity", "model": specs.model_fingerprint(spec.model),
         "prompts": list(prompts), "tokens_sha": _array_digest(tokens), **units_key(config)}

  def compute():
    act = capture.score_activity(spec.model, spec.tokenizer, prompts, tokens,
                                 batch_size=config.batch_size, units=config.units,
                                 expert_activity=config.expert_activity)
    return {"acts": act.acts, "tokens": act.tokens}
  return results.cached(cache_dir, key, compute, "activity")


def atoms_cached(acts: np.ndarray, config: ProfileConfig, cache_dir: pathlib.Path) -> np.ndarray:
  """All-pairs atoms of ``acts`` from the cache, or computed and cached."""
  return np.asarray(results.cached(cache_dir, _estimate_key(acts, config, "atoms"),
                                   lambda: compute_atoms(acts, config), "atoms"))


def prompt_pairs_cached(acts: np.ndarray, config: ProfileConfig,
                        cache_dir: pathlib.Path) -> np.ndarray:
  """(P, U, U, 2) per-prompt pair sts/rtr (``analysis.uncertainty.prompt_pairs``), cached."""
  return np.asarray(results.cached(cache_dir, _estimate_key(acts, config, "prompt_pairs"),
                                   lambda: uncertainty.prompt_pairs(acts, config.phiid),
                                   "prompt_pairs"))


def moments_cached(acts: np.ndarray, atoms: np.ndarray, config: ProfileConfig,
                   cache_dir: pathlib.Path, progress: Callable | None = None):
  """Surrogate moments (``analysis.nulls.null_moments``) for the profile's null, cached."""
  key = {**_estimate_key(acts, config, "null_moments"), "null": config.null,
         "n_surrogates": config.n_surrogates, "seed": config.seed}
  design = nulls.draw_design(config.null, config.n_surrogates, acts.shape[0], acts.shape[2],
                             tau=config.phiid.tau, seed=config.seed)

  def compute():
    m = nulls.null_moments(acts, surrogates.observed_pairs(atoms), design, config.phiid,
                           progress=specs.staged(progress, "surrogates", "surrogate"),
                           mesh=config.estimator_kwargs()["mesh"])
    return dataclasses.asdict(m)
  return nulls.NullMoments(**results.cached(cache_dir, key, compute, "null_moments"))


def profile_cached(acts: np.ndarray, units: Units, config: ProfileConfig,
                   cache_dir: pathlib.Path, progress: Callable | None = None) -> ProfileResult:
  """``profile_activity`` with the atoms, per-prompt values and surrogate moments cached."""
  acts = _check_acts(acts, units)
  atoms = atoms_cached(acts, config, cache_dir)
  moments = moments_cached(acts, atoms, config, cache_dir, progress) if config.n_surrogates \
      else None
  per_prompt = prompt_pairs_cached(acts, config, cache_dir) if config.n_boot else None
  return profile_activity(acts, units, config, atoms=atoms,
                          per_prompt=per_prompt, moments=moments, progress=progress)


def profile_model(spec: "specs.ModelSpec", prompts: Sequence[str], config: ProfileConfig,
                  cache_dir: pathlib.Path, progress: Callable | None = None, *,
                  tokens: np.ndarray | None = None) -> ProfileResult:
  """Generate (cached) → atoms (cached) → profile, for one model; with ``tokens`` (P, T) the
  model is teacher-forced on them instead of generating."""
  if tokens is None:
    act = activity_cached(spec, prompts, config, cache_dir, progress)
  else:
    act = matched_activity_cached(spec, prompts, tokens, config, cache_dir)
  res = profile_cached(np.asarray(act["acts"]), model_units(spec, config), config, cache_dir,
                       progress)
  units = dict(res.summary["units"])
  if units["counts"]["expert"]:
    units["expert_activity"] = config.expert_activity
  return dataclasses.replace(res, summary={**res.summary, "units": units, "model": spec.label,
                                           "tokens": np.asarray(act["tokens"])})


def profile_prompts(path: str | None = None, *, per_category: int | None = None) -> list[str]:
  """Prompt texts for the profile: a user's JSONL file, or the built-in six-category suite.

  per_category: keep only the first k prompts of each category (quick runs); None keeps all.
  """
  from synergy_jax import tasks
  items = tasks.load_prompts(path) if path else tasks.prompt_suite()
  if per_category is not None:
    seen: dict = {}
    kept = []
    for p in items:
      seen[p.category] = seen.get(p.category, 0) + 1
      if seen[p.category] <= per_category:
        kept.append(p)
    items = kept
  return [p.text for p in items]


def profile_pair(model: str, prompts: Sequence[str], config: ProfileConfig, *, cache_dir,
                 baseline: bool = True, dtype: str = "float32",
                 progress: Callable | None = None):
  """({label: ProfileResult}, ModelSpec): ``model`` and, if ``baseline``, its random-init
  counterpart, teacher-forced on the trained tokens (config.baseline_inputs="matched") or
  generating its own ("own")."""
  cache_dir = pathlib.Path(cache_dir)
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  model_units(spec, config)  # a dense model asked for experts fails here, naming its type
  role = "trained" if not spec.random_init else "random"
  main = profile_model(spec, prompts, config, cache_dir,
                       specs.labelled(progress, f"{role} {spec.label}"))
  profiles = {role: main}
  if baseline and not spec.random_init:
    rnd = specs.resolve_model(specs.random_counterpart(model), dtype=dtype, seed=config.seed)
    tokens = main.summary["tokens"] if config.baseline_inputs == "matched" else None
    res = profile_model(rnd, prompts, config, cache_dir,
                        specs.labelled(progress, f"random {rnd.label}"), tokens=tokens)
    profiles["random"] = dataclasses.replace(
        res, summary={**res.summary, "baseline_inputs": config.baseline_inputs})
  return profiles, spec


def run_profile(model: str, prompts: Sequence[str], config: ProfileConfig, run_dir, *,
                cache_dir, baseline: bool = True, dtype: str = "float32",
                progress: Callable | None = None) -> dict:
  """The profile experiment: ``model`` (a --model string) and, if ``baseline``, its random-init
  counterpart, on ``prompts``; writes everything into ``run_dir``; returns results.json's dict."""
  profiles, spec = profile_pair(model, prompts, config, cache_dir=cache_dir, baseline=baseline,
                                dtype=dtype, progress=progress)
  meta = {"model": spec.label, "prompts": len(prompts), "compute_dtype": compute_dtype(),
          **config.as_dict()}
  return write_profile(run_dir, profiles, spec.tokenizer, meta)


def run_profile_acts(path, config: ProfileConfig, run_dir, *, cache_dir,
                     progress: Callable | None = None) -> dict:
  """The profile of recorded activity (``acts_file.load_acts``), without a model or baseline."""
  from synergy_jax.pipeline import acts_file
  rec = acts_file.load_acts(path)
  res = profile_cached(rec.acts, rec.units, config, pathlib.Path(cache_dir), progress)
  res = dataclasses.replace(res, summary={**res.summary, "model": f"acts:{rec.path}"})
  meta = {"acts": str(rec.path), "prompts": rec.acts.shape[0], "compute_dtype": compute_dtype(),
          **config.as_dict()}
  return write_profile(run_dir, {"recorded": res}, None, meta)
