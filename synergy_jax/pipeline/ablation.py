"""Ablation evaluation: do synergistic heads matter more for behaviour and accuracy than redundant
or random ones?

1. Ranking: the synergy–redundancy profile on the built-in prompt suite (activity → all-pairs ΦID
   → ``analysis.head_scores``), heads ordered by rank difference or balance.
2. Behaviour divergence: for ablated fractions 0 … 1, heads zero-ablated most synergistic first,
   most redundant first, and in random orders; the ablated model scores the original model's own
   generated continuation (teacher forcing), D = mean over prompts of the mean over tokens of
   KL(p_original ‖ p_ablated) in nats (``interventions.divergence_curves``: every mask of a prompt
   batch in one compiled call; the number of compilations is counted and reported).
3. Perturbation: Gaussian noise (``models.perturb_heads``) into the top 25 % synergistic, top 25 %
   redundant and random 25 % of heads, over a range of σ, each with several seeds (noise draws;
   for "random" also a new head set per seed); greedy exact-match accuracy per task family ×
   level. CIs: percentile bootstrap resampling seeds and examples independently (two-way).

σ is given relative to the RMS of all heads' query- and output-projection weights by default
(``sigma_scale="relative"``), so the same σ values mean the same damage across models; the
absolute values used are reported.
"""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Callable, Sequence

import jax
import numpy as np

from synergy_jax import analysis, interventions, models, plots, results, tasks
from synergy_jax.analysis.stats import percentile_interval
from synergy_jax.pipeline import profile, specs

CONDITIONS = ("synergistic", "redundant", "random")


@dataclasses.dataclass(frozen=True)
class AblationConfig:
  """Settings of the ablation experiment.

  Ranking: ranking ("rank_difference" | "balance"), per_category (built-in suite prompts per
  category; None = all), max_new_tokens / batch_size (generation), tau, redundancy (ΦID).
  Divergence: fractions (strictly increasing in [0, 1]), n_random orders, divergence_batch
  (prompts per scoring batch, 0 = all at once; each batch compiles once), mask_chunk (masks per
  ``lax.map`` step; bounds memory to mask_chunk × B × T × V log-probs).
  Perturbation: sigmas (noise std; relative to the q/o weight RMS if sigma_scale="relative"),
  perturb_fraction of heads, n_seeds, families, levels (difficulty ranks, 1 = each family's
  easiest level in ``tasks.levels``; None: all of each family's levels), n_examples per family ×
  level, eval_seed (task sampling).
  Statistics: n_boot, ci_level; seed: random orders, random head sets, noise.
  """
  ranking: str = "rank_difference"
  per_category: int | None = None
  max_new_tokens: int = 100
  batch_size: int = 8
  tau: int = 1
  redundancy: str = "mmi"
  fractions: tuple = tuple(np.round(np.linspace(0.0, 1.0, 11), 6).tolist())
  n_random: int = 5
  divergence_batch: int = 0
  mask_chunk: int = 8
  sigmas: tuple = (0.0, 0.25, 0.5, 1.0, 2.0)
  sigma_scale: str = "relative"
  perturb_fraction: float = 0.25
  n_seeds: int = 5
  families: tuple = tasks.FAMILIES
  levels: tuple | None = None
  n_examples: int = 32
  eval_seed: int = 2025
  n_boot: int = 1000
  ci_level: float = 0.95
  seed: int = 0

  def __post_init__(self):
    if self.ranking not in profile.RANKINGS:
      raise ValueError(f"ranking must be one of {profile.RANKINGS}, got {self.ranking!r}")
    fr = np.asarray(self.fractions, np.float64)
    if fr.ndim != 1 or fr.size < 2 or np.any(np.diff(fr) <= 0) or fr[0] < 0 or fr[-1] > 1:
      raise ValueError(f"fractions must be >= 2 strictly increasing values in [0, 1], "
                       f"got {list(self.fractions)}")
    if self.n_random < 2:
      raise ValueError(f"n_random must be >= 2 (the AUC ratio's CI needs them), got "
                       f"{self.n_random}")
    if self.n_seeds < 1:
      raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
    if self.sigma_scale not in ("relative", "absolute"):
      raise ValueError(f"sigma_scale must be 'relative' or 'absolute', got {self.sigma_scale!r}")
    if any(s < 0 for s in self.sigmas) or not self.sigmas:
      raise ValueError(f"sigmas must be non-negative and non-empty, got {list(self.sigmas)}")
    if not 0 < self.perturb_fraction <= 1:
      raise ValueError(f"perturb_fraction must be in (0, 1], got {self.perturb_fraction}")
    for f in self.families:
      tasks.levels(f)  # raises naming an unknown family
    if self.n_examples < 1:
      raise ValueError(f"n_examples must be >= 1, got {self.n_examples}")

  def profile_config(self) -> "profile.ProfileConfig":
    return profile.ProfileConfig(tau=self.tau, redundancy=self.redundancy, n_surrogates=0,
                                 ranking=self.ranking, seed=self.seed,
                                 max_new_tokens=self.max_new_tokens, batch_size=self.batch_size,
                                 greedy=True)


# --------------------------------------------------------------------------------------------------
# 1. Ranking
# --------------------------------------------------------------------------------------------------


def head_ranking(spec: "specs.ModelSpec", prompts: Sequence[str], config: AblationConfig,
                 cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """Profile on ``prompts``: {"scores": HeadScores, "score": (N,) higher = more synergistic,
  "tokens": (P, T) the original model's continuations, "acts": (P, N, T)}."""
  pc = config.profile_config()
  act = profile.activity_cached(spec, prompts, pc, cache_dir, progress)
  acts = np.asarray(act["acts"])
  atoms = profile.atoms_cached(acts, pc, cache_dir)
  scores = analysis.head_scores(atoms)
  return {"scores": scores, "score": profile.head_score(scores, config.ranking),
          "tokens": np.asarray(act["tokens"]), "acts": acts}


# --------------------------------------------------------------------------------------------------
# 2. Behaviour divergence
# --------------------------------------------------------------------------------------------------


def continuation_batch(tokenizer, prompts: Sequence[str], continuations: np.ndarray,
                       pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """(B, P + T) tokens and (B,) prompt lengths in ``models.score``'s layout: each row is
  [left padding | its prompt's ids | its T generated ids]."""
  from synergy_jax.pipeline import capture
  ids = capture.encode_prompts(tokenizer, prompts)
  cont = np.asarray(continuations)
  if cont.ndim != 2 or cont.shape[0] != len(ids):
    raise ValueError(f"continuations must be ({len(ids)} prompts, T), got {cont.shape}")
  width = max(len(t) for t in ids)
  out = np.full((len(ids), width + cont.shape[1]), pad_id, np.int32)
  for b, t in enumerate(ids):
    out[b, width - len(t):width] = t
  out[:, width:] = cont
  return out, np.array([len(t) for t in ids], np.int32)


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
               mask_chunk: int | None = 8, progress: Callable | None = None) -> dict:
  """Divergence curves of every order, prompt batch by prompt batch.

  Args:
    tokens, prompt_lengths: ``continuation_batch`` output (B prompts).
    orders: {"synergistic": (N,), "redundant": (N,), "random": (R, N)} unit orders.
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
  for s in (progress(starts, desc="divergence batches") if progress else starts):
    lens = np.asarray(prompt_lengths[s:s + step])
    # models.score's layout: the prompt block is exactly as wide as this batch's longest prompt.
    toks = np.asarray(tokens[s:s + step, p_all - int(lens.max()):])
    curves = interventions.divergence_curves(model, toks, lens, orders, fractions,
                                             divergence_fn=fn)
    for k, c in curves.items():
      parts[k].append(c.per_prompt)
  out = {k: np.concatenate(v, axis=-1).astype(np.float64) for k, v in parts.items()}
  out["fractions"] = np.asarray(fractions, np.float64)
  out["compilations"] = backend_compiles() - compiles0
  out["batches"] = len(starts)
  return out


def summarise_divergence(div: dict, orders: dict, *, n_boot: int, ci_level: float,
                         seed: int) -> dict:
  """results.json's ``divergence`` and ``auc_ratio`` entries from per-prompt curves."""
  fr = div["fractions"]
  mean = {k: np.nanmean(div[k], axis=-1) for k in orders}  # (O, F) each
  prompt_sd = {k: np.nanstd(div[k], axis=-1, ddof=1) if div[k].shape[-1] > 1
               else np.zeros(div[k].shape[:-1]) for k in orders}
  aucs = {k: np.array([interventions.auc(fr, m) for m in mean[k]]) for k in orders}
  rnd = mean["random"]
  out = {
      "fractions": fr,
      "synergistic": mean["synergistic"][0],
      "redundant": mean["redundant"][0],
      "random": {"mean": rnd.mean(0), "sd": rnd.std(0, ddof=1), "curves": rnd},
      "prompt_sd": {"synergistic": prompt_sd["synergistic"][0],
                    "redundant": prompt_sd["redundant"][0]},
      "auc": {"synergistic": float(aucs["synergistic"][0]),
              "redundant": float(aucs["redundant"][0]), "random": aucs["random"]},
      "n_prompts": int(div["synergistic"].shape[-1]),
      "units": "nats (mean over prompts of the mean over continuation tokens of KL)",
      "compilations": int(div["compilations"]),
      "batches": int(div["batches"]),
      "orders": {k: np.asarray(v) for k, v in orders.items()},
  }
  ratio = {k: interventions.auc_ratio(out["auc"][k], aucs["random"], n_boot=n_boot,
                                      level=ci_level, seed=seed)
           for k in ("synergistic", "redundant")}
  return {"divergence": out, "auc_ratio": ratio["synergistic"],
          "auc_ratio_redundant": ratio["redundant"]}


# --------------------------------------------------------------------------------------------------
# 3. Perturbation
# --------------------------------------------------------------------------------------------------


def weight_rms(params) -> float:
  """RMS of all heads' query- and output-projection weights (the scale of relative σ)."""
  return models.unit_weight_rms(params)


def perturbation_examples(config: AblationConfig) -> list:
  """n_examples per family × level: all of each family's levels, or those at the difficulty ranks
  ``config.levels`` (1 = easiest; a rank a family lacks raises ValueError naming it)."""
  out = []
  for f in config.families:
    have = tasks.levels(f)
    ranks = range(1, len(have) + 1) if config.levels is None else config.levels
    bad = [r for r in ranks if not (float(r) == int(r) and 1 <= int(r) <= len(have))]
    if bad:
      raise ValueError(f"task family {f!r} has no difficulty rank(s) {bad}: it has {len(have)} "
                       f"levels {list(have)}, ranks 1..{len(have)}")
    for k in (have[int(r) - 1] for r in ranks):
      out += tasks.sample(f, k, config.n_examples, config.eval_seed)
  return out


def _correct(model, tokenizer, examples) -> np.ndarray:
  texts = tasks.generate_answers(model, tokenizer, examples)
  return np.array([tasks.check(e, t) for e, t in zip(examples, texts)])


def perturbation_accuracy(model: "models.Model", tokenizer, examples: list, head_sets: dict,
                          sigmas_abs: Sequence[float], *, n_seeds: int, seed: int = 0,
                          progress: Callable | None = None) -> np.ndarray:
  """(C, S, R, E) bool exact matches: condition (``CONDITIONS``) × σ × seed × example.

  head_sets: ``interventions.perturbation_head_sets`` output (needs >= n_seeds random sets).
  Noise of seed r at σ index s uses the same PRNG key in every condition (common random numbers).
  σ = 0 leaves the parameters unchanged and is evaluated once.
  """
  sig = np.asarray(sigmas_abs, np.float64)
  if len(head_sets["random"]) < n_seeds:
    raise ValueError(f"head_sets has {len(head_sets['random'])} random sets for {n_seeds} seeds")
  out = np.zeros((len(CONDITIONS), sig.size, n_seeds, len(examples)), bool)
  base = None
  jobs = [(s, r) for s in range(sig.size) for r in range(n_seeds)]
  for s, r in (progress(jobs, desc="perturbation") if progress else jobs):
    if sig[s] == 0:
      if base is None:
        base = _correct(model, tokenizer, examples)
      out[:, s, r] = base
      continue
    key = jax.random.fold_in(jax.random.PRNGKey(seed), s * 100_003 + r)
    for c, cond in enumerate(CONDITIONS):
      heads = head_sets[cond] if cond != "random" else head_sets["random"][r]
      params = models.perturb_heads(model.params, heads, float(sig[s]), key)
      out[c, s, r] = _correct(model.replace(params=params), tokenizer, examples)
  return out


def two_way_bootstrap(c: np.ndarray, *, n_boot: int, level: float, seed: int):
  """(mean, low, high) of the mean of c (R seeds, E examples), resampling seeds and examples
  independently with replacement (percentile interval)."""
  c = np.asarray(c, np.float64)
  rng = np.random.default_rng(seed)
  si = rng.integers(0, c.shape[0], size=(n_boot, c.shape[0]))
  ei = rng.integers(0, c.shape[1], size=(n_boot, c.shape[1]))
  boot = c[si[:, :, None], ei[:, None, :]].mean(axis=(1, 2))  # (n_boot,)
  lo, hi = percentile_interval(boot, level)
  return float(c.mean()), float(lo), float(hi)


def summarise_perturbation(correct: np.ndarray, examples: list, sigmas: Sequence[float],
                           sigmas_abs: Sequence[float], config: AblationConfig) -> dict:
  """results.json's ``perturbation``: accuracy per condition × σ × difficulty rank (families
  pooled at each rank; ``levels`` holds the ranks) and per family × level k (``by_family``), each
  with a two-way bootstrap CI."""
  fam = np.array([e.family for e in examples])
  lev = np.array([e.level for e in examples])
  rank = np.array([tasks.levels(e.family).index(e.level) + 1 for e in examples])
  levels = sorted(set(rank.tolist()))
  families = list(dict.fromkeys(fam.tolist()))
  seed_ctr = [config.seed + 17]

  def stats(sel):
    out = {"mean": [], "ci_low": [], "ci_high": []}
    for c in range(len(CONDITIONS)):
      rows = {"mean": [], "ci_low": [], "ci_high": []}
      for s in range(len(sigmas)):
        per_k = [two_way_bootstrap(correct[c, s][:, m], n_boot=config.n_boot,
                                   level=config.ci_level, seed=seed_ctr[0] + 31 * s + c)
                 for m in sel]
        for i, key in enumerate(("mean", "ci_low", "ci_high")):
          rows[key].append([p[i] for p in per_k])
      for key in rows:
        out[key].append(rows[key])
    return {cond: {key: out[key][c] for key in out} for c, cond in enumerate(CONDITIONS)}

  pooled = stats([rank == r for r in levels])
  by_family = {}
  for f in families:
    fl = sorted(set(lev[fam == f].tolist()))
    by_family[f] = {"levels": fl, **stats([(fam == f) & (lev == k) for k in fl])}
  per_seed = correct.reshape(correct.shape[:3] + (-1,)).astype(np.float64)
  return {
      "sigmas": list(map(float, sigmas)), "sigmas_abs": list(map(float, sigmas_abs)),
      "sigma_scale": config.sigma_scale, "conditions": list(CONDITIONS),
      "levels": levels, "level_kind": "difficulty rank (1 = each family's easiest level)",
      "families": families, "n_seeds": int(correct.shape[2]),
      "n_examples_per_family_level": config.n_examples,
      "ci": (f"{config.ci_level:.0%} percentile bootstrap resampling noise seeds (and, for "
             "'random', head sets) and examples independently"),
      "accuracy": pooled,
      "by_family": by_family,
      "seed_accuracy": {cond: per_seed[c].mean(-1) for c, cond in enumerate(CONDITIONS)},
  }


# --------------------------------------------------------------------------------------------------
# The experiment
# --------------------------------------------------------------------------------------------------


def analyse_ablation(spec: "specs.ModelSpec", prompts: Sequence[str], config: AblationConfig,
                     cache_dir, *, progress: Callable | None = None) -> dict:
  """Ranking → divergence → perturbation; returns results.json's dict."""
  cache_dir = pathlib.Path(cache_dir)
  cfg = spec.model.config
  L, H = cfg.num_layers, cfg.num_heads
  t0 = time.time()
  rk = head_ranking(spec, prompts, config, cache_dir, progress)
  t_rank = time.time() - t0
  score = rk["score"]
  orders = interventions.ablation_orders(score, n_random=config.n_random, seed=config.seed)
  pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
  tokens, plen = continuation_batch(spec.tokenizer, prompts, rk["tokens"], pad)
  t0 = time.time()
  div = divergence(spec.model, tokens, plen, orders, config.fractions,
                   divergence_batch=config.divergence_batch, mask_chunk=config.mask_chunk,
                   progress=progress)
  t_div = time.time() - t0
  d = summarise_divergence(div, orders, n_boot=config.n_boot, ci_level=config.ci_level,
                           seed=config.seed)

  t0 = time.time()
  n_random_sets = max(config.n_seeds, 1)
  sets = interventions.perturbation_head_sets(score, L, H, fraction=config.perturb_fraction,
                                              n_random=n_random_sets, seed=config.seed + 1)
  scale = weight_rms(spec.model.params) if config.sigma_scale == "relative" else 1.0
  sig_abs = [s * scale for s in config.sigmas]
  examples = perturbation_examples(config)
  compiles0 = backend_compiles()
  correct = perturbation_accuracy(spec.model, spec.tokenizer, examples, sets, sig_abs,
                                  n_seeds=config.n_seeds, seed=config.seed, progress=progress)
  pert = summarise_perturbation(correct, examples, config.sigmas, sig_abs, config)
  pert["weight_rms"] = scale if config.sigma_scale == "relative" else None
  # Noisy parameters are traced arguments of generate: σ, seeds and conditions reuse one program.
  pert["compilations"] = backend_compiles() - compiles0
  pert["generate_calls"] = 1 + len(CONDITIONS) * config.n_seeds * sum(
      1 for s in config.sigmas if s > 0)
  pert["head_sets"] = {"synergistic": sets["synergistic_units"],
                       "redundant": sets["redundant_units"], "random": sets["random_units"]}
  t_pert = time.time() - t0
  s = rk["scores"]
  return {
      "experiment": "ablation", "model": spec.label,
      "fingerprint": specs.model_fingerprint(spec.model),
      "num_layers": L, "num_heads": H, "ranking": config.ranking,
      "n_profile_prompts": len(prompts),
      "head_scores": {"score": score, "synergy": s.synergy, "redundancy": s.redundancy,
                      "rank_score": s.rank_score, "balance": s.balance,
                      "excluded": list(s.excluded)},
      **d,
      "perturbation": pert,
      "timing_s": {"ranking": t_rank, "divergence": t_div, "perturbation": t_pert},
      "config": dataclasses.asdict(config),
      "_correct": correct,
  }


def _fmt(v, nd=3) -> str:
  return "n/a" if v is None or not np.isfinite(v) else f"{v:.{nd}g}"


def _ratio_sentence(r: dict, what: str) -> str:
  lo, hi = r["ci_low"], r["ci_high"]
  if lo > 1:
    verdict = "more than random orders"
  elif hi < 1:
    verdict = "less than random orders"
  else:
    verdict = "no differently from random orders (the CI includes 1)"
  return (f"Ablating the most {what} heads first changed behaviour {verdict}: AUC ratio "
          f"{what}/random = {_fmt(r['ratio'])} ({int(r['ci_level'] * 100)}% CI {_fmt(lo)}–"
          f"{_fmt(hi)} over {r['n_random']} random orders).")


def summary_markdown(res: dict) -> str:
  """Plain-language summary.md of the ablation experiment."""
  d = res["divergence"]
  p = res["perturbation"]
  lines = [f"# Ablation evaluation — {res['model']}", "",
           f"Heads ranked by **{res['ranking']}** from the ΦID profile on "
           f"{res['n_profile_prompts']} prompts of the built-in suite.", "",
           "## Behaviour divergence (zero ablation, teacher-forced on the model's own text)", "",
           _ratio_sentence(res["auc_ratio"], "synergistic"),
           _ratio_sentence(res["auc_ratio_redundant"], "redundant"), "",
           f"AUC (nats × fraction): synergistic {_fmt(d['auc']['synergistic'])}, redundant "
           f"{_fmt(d['auc']['redundant'])}, random {_fmt(float(np.mean(d['auc']['random'])))} ± "
           f"{_fmt(float(np.std(d['auc']['random'], ddof=1)))} (sd over orders). "
           f"{d['n_prompts']} prompts; all {len(d['fractions'])} fractions × "
           f"{2 + len(d['auc']['random'])} orders ran in {d['compilations']} compilation(s) for "
           f"{d['batches']} prompt batch(es).", "",
           "## Perturbation (Gaussian noise into 25 % of heads)", "",
           f"σ = {p['sigmas']} ({p['sigma_scale']}; absolute {[_fmt(s) for s in p['sigmas_abs']]})"
           f", {p['n_seeds']} seeds; CIs: {p['ci']}.", "",
           "| condition | rank | " + " | ".join(f"σ={s:g}" for s in p["sigmas"]) + " |",
           "|---|---|" + "---|" * len(p["sigmas"])]
  for cond in p["conditions"]:
    a = p["accuracy"][cond]
    for i, k in enumerate(p["levels"]):
      cells = [f"{_fmt(a['mean'][s][i], 2)} [{_fmt(a['ci_low'][s][i], 2)}, "
               f"{_fmt(a['ci_high'][s][i], 2)}]" for s in range(len(p["sigmas"]))]
      lines.append(f"| {cond} | {k} | " + " | ".join(cells) + " |")
  s0, s1 = int(np.argmin(p["sigmas"])), int(np.argmax(p["sigmas"]))
  lines += ["", f"Rows pool the families {p['families']} at each difficulty rank (1 = each "
            f"family's easiest level); within families, accuracy lost from σ={p['sigmas'][s0]:g} to σ={p['sigmas'][s1]:g} at the "
            "easiest / hardest level:", ""]
  mean_drop = {c: [] for c in p["conditions"]}
  for fam, fd in p["by_family"].items():
    cells = []
    for cond in p["conditions"]:
      a = np.asarray(fd[cond]["mean"], float)  # (S, K)
      drop = a[s0] - a[s1]
      mean_drop[cond].append(float(np.mean(drop)))
      cells.append(f"{cond} {_fmt(drop[0], 2)} / {_fmt(drop[-1], 2)}")
    lines.append(f"- {fam} (levels {fd['levels'][0]}–{fd['levels'][-1]}): " + "; ".join(cells))
  avg = {c: float(np.mean(v)) for c, v in mean_drop.items()}
  ranked = sorted(avg, key=avg.get, reverse=True)
  lines.append("")
  if avg[ranked[0]] > avg[ranked[1]]:
    lines.append(f"Largest accuracy loss at the largest σ (mean over families and levels): "
                 f"**{ranked[0]}** heads ({_fmt(avg[ranked[0]])} vs {_fmt(avg[ranked[1]])} for "
                 f"{ranked[1]}, {_fmt(avg[ranked[2]])} for {ranked[2]}).")
  else:
    lines.append("No condition lost more accuracy than the others at the largest σ.")
  lines.append("Differences whose CIs overlap should not be read as effects.")
  return "\n".join(lines) + "\n"


def write_ablation(run_dir, res: dict) -> dict:
  """Writes results.json, divergence.csv, perturbation.csv, head_scores.csv, divergence.png,
  perturbation.png, perturbation_<family>.png, perturbation.npz and summary.md."""
  run_dir = pathlib.Path(run_dir)
  public = {k: v for k, v in res.items() if not k.startswith("_")}
  results.write_json(run_dir / "results.json", public)
  d, p = res["divergence"], res["perturbation"]
  rows = []
  for i, f in enumerate(d["fractions"]):
    row = {"fraction": f, "synergistic": d["synergistic"][i], "redundant": d["redundant"][i],
           "random_mean": d["random"]["mean"][i], "random_sd": d["random"]["sd"][i]}
    for r, c in enumerate(d["random"]["curves"]):
      row[f"random_{r}"] = c[i]
    rows.append(row)
  results.write_csv(run_dir / "divergence.csv", rows)
  prow = []
  for fam, fd in p["by_family"].items():
    for cond in p["conditions"]:
      for s, sg in enumerate(p["sigmas"]):
        for i, k in enumerate(fd["levels"]):
          prow.append({"family": fam, "level": k, "condition": cond, "sigma": sg,
                       "sigma_abs": p["sigmas_abs"][s], "accuracy": fd[cond]["mean"][s][i],
                       "ci_low": fd[cond]["ci_low"][s][i], "ci_high": fd[cond]["ci_high"][s][i]})
  results.write_csv(run_dir / "perturbation.csv", prow)
  hs = res["head_scores"]
  n_heads = res["num_heads"]
  results.write_csv(run_dir / "head_scores.csv", [
      {"unit": u, "layer": u // n_heads, "head": u % n_heads, "score": hs["score"][u],
       "synergy": hs["synergy"][u], "redundancy": hs["redundancy"][u],
       "rank_score": hs["rank_score"][u], "balance": hs["balance"][u]}
      for u in range(len(hs["score"]))])
  results.write_npz(run_dir / "perturbation.npz", correct=res["_correct"],
                    sigmas=np.asarray(p["sigmas"]), conditions=np.asarray(p["conditions"]))
  plots.divergence_curves(d["fractions"], d["synergistic"], d["redundant"],
                          d["random"]["curves"], save=run_dir / "divergence.png")
  plots.perturbation_accuracy(p["sigmas"], p["levels"],
                              {c: np.asarray(p["accuracy"][c]["mean"]) for c in p["conditions"]},
                              ci={c: (np.asarray(p["accuracy"][c]["ci_low"]),
                                      np.asarray(p["accuracy"][c]["ci_high"]))
                                  for c in p["conditions"]},
                              save=run_dir / "perturbation.png")
  for fam, fd in p["by_family"].items():
    plots.perturbation_accuracy(p["sigmas"], fd["levels"],
                                {c: np.asarray(fd[c]["mean"]) for c in p["conditions"]},
                                ci={c: (np.asarray(fd[c]["ci_low"]), np.asarray(fd[c]["ci_high"]))
                                    for c in p["conditions"]},
                                save=run_dir / f"perturbation_{fam}.png")
  results.write_text(run_dir / "summary.md", summary_markdown(public))
  return public


def run_ablation(model: str, prompts: Sequence[str], config: AblationConfig, run_dir, *,
                 cache_dir, dtype: str = "float32", progress: Callable | None = None) -> dict:
  """The ablation experiment for a --model string on ranking ``prompts``; writes everything into
  ``run_dir`` and returns results.json's dict (with "wall_s")."""
  t0 = time.time()
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  res = analyse_ablation(spec, prompts, config, cache_dir, progress=progress)
  res["wall_s"] = time.time() - t0
  return write_ablation(run_dir, res)
