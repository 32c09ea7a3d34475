"""The synergistic-core profile: activity → ΦID atoms → per-head ranks, layer profile,
diagnostics, surrogate null and graph metrics, for a model and its random-init baseline.

``profile_activity`` is the analysis of one model's activity (arrays in, a ProfileResult out);
``run_profile`` adds generation, caching and the run directory's files.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Callable, Sequence

import numpy as np

from synergy_jax import analysis, phiid, plots, results
from synergy_jax.analysis import report
from synergy_jax.pipeline import capture, specs

RANKINGS = ("rank_difference", "balance")


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
  """Everything the profile's numbers depend on besides the model and prompts.

  tau: ΦID lag; redundancy: "mmi" or "ccs"; pool: "mean" (per-prompt estimates averaged, as in
  the study) or "concat"; n_surrogates: circular-shift surrogates (0 disables the null);
  graph_fraction: fraction of strongest edges kept in the graph view; ranking: the per-head score
  that orders heads ("rank_difference" = rank(syn) − rank(red), or "balance"); seed: surrogates
  and sampling. max_new_tokens, batch_size, greedy: generation.
  """
  tau: int = 1
  redundancy: str = "mmi"
  pool: str = "mean"
  n_surrogates: int = 100
  graph_fraction: float = 0.1
  ranking: str = "rank_difference"
  seed: int = 0
  max_new_tokens: int = 100
  batch_size: int = 8
  greedy: bool = True
  shard: bool = False

  def __post_init__(self):
    if self.ranking not in RANKINGS:
      raise ValueError(f"ranking must be one of {RANKINGS}, got {self.ranking!r}")
    if self.n_surrogates < 0:
      raise ValueError(f"n_surrogates must be >= 0, got {self.n_surrogates}")

  def phiid_kwargs(self) -> dict:
    """What the atoms depend on (also their cache key)."""
    return {"tau": self.tau, "redundancy": self.redundancy, "pool": self.pool}

  def estimator_kwargs(self) -> dict:
    """phiid_kwargs plus how to compute them (device placement)."""
    return {**self.phiid_kwargs(), "mesh": "auto" if self.shard else None}


@dataclasses.dataclass(frozen=True)
class ProfileResult:
  """One model's profile. summary: JSON-able dict (analysis.report.profile_report's keys plus
  "score_name", "degenerate"); table: per-unit columns for head_scores.csv; scores: HeadScores;
  score: (N,) the ranking score (higher = more synergistic); atoms (N, N, 16) nats; acts
  (P, N, T); surrogates: SurrogateResult or None."""
  summary: dict
  table: dict
  scores: "analysis.HeadScores"
  score: np.ndarray
  atoms: np.ndarray
  acts: np.ndarray
  surrogates: object
  num_layers: int
  num_heads: int


def head_score(scores: "analysis.HeadScores", ranking: str) -> np.ndarray:
  """(N,) the per-head score named by ``ranking``; higher = more synergistic."""
  if ranking == "rank_difference":
    return scores.rank_score
  if ranking == "balance":
    return scores.balance
  raise ValueError(f"ranking must be one of {RANKINGS}, got {ranking!r}")


def compute_atoms(acts: np.ndarray, config: ProfileConfig) -> np.ndarray:
  """(N, N, 16) ΦID atoms of all pairs; degenerate units come back as NaN rows/columns."""
  return np.asarray(phiid.all_pairs(acts, on_degenerate="mask", **config.estimator_kwargs()),
                    np.float64)


def profile_activity(acts: np.ndarray, num_layers: int, num_heads: int, config: ProfileConfig,
                     *, atoms: np.ndarray | None = None,
                     progress: Callable | None = None) -> ProfileResult:
  """The whole profile analysis of (P, N, T) activity, N = num_layers * num_heads."""
  acts = np.asarray(acts)
  if acts.ndim != 3 or acts.shape[1] != num_layers * num_heads:
    raise ValueError(f"acts must be (prompts, {num_layers} layers × {num_heads} heads, time), "
                     f"got shape {acts.shape}")
  problems = phiid.check_units(acts, config.tau)
  if atoms is None:
    atoms = compute_atoms(acts, config)
  sur = None
  if config.n_surrogates:
    sur = analysis.surrogate_test(acts, atoms, n_surrogates=config.n_surrogates, seed=config.seed,
                                  progress=progress, on_degenerate="mask",
                                  **config.estimator_kwargs())
  summary, table, scores = report.profile_report(
      atoms, num_layers, num_heads, acts=acts, surrogate=sur,
      graph_fraction=config.graph_fraction, seed=config.seed)
  summary["score_name"] = config.ranking
  summary["degenerate"] = [{"unit": p.unit, "layer": p.unit // num_heads,
                            "head": p.unit % num_heads, "prompt": p.prompt, "reason": p.reason}
                           for p in problems]
  return ProfileResult(summary, table, scores, head_score(scores, config.ranking), atoms, acts,
                       sur, num_layers, num_heads)


def activity_cached(spec: "specs.ModelSpec", prompts: Sequence[str], config: ProfileConfig,
                    cache_dir: pathlib.Path, progress: Callable | None = None) -> dict:
  """{"acts": (P, N, T), "tokens": (P, T)} for ``prompts``, from the cache or generated and then
  cached (a repeated or interrupted run does not generate again)."""
  key = {"what": "activity", "model": specs.model_fingerprint(spec.model),
         "prompts": list(prompts), "max_new_tokens": config.max_new_tokens,
         "greedy": config.greedy, "seed": config.seed}

  def compute():
    act = capture.collect_activity(spec.model, spec.tokenizer, prompts,
                                   max_new_tokens=config.max_new_tokens,
                                   batch_size=config.batch_size, greedy=config.greedy,
                                   seed=config.seed, progress=progress)
    return {"acts": act.acts, "tokens": act.tokens}
  return results.cached(cache_dir, key, compute, "activity")


def atoms_cached(acts: np.ndarray, config: ProfileConfig, cache_dir: pathlib.Path) -> np.ndarray:
  """All-pairs atoms of ``acts`` from the cache, or computed and cached."""
  key = {"what": "atoms", "acts_sha": results.config_hash({"a": _array_digest(acts)}),
         **config.phiid_kwargs()}
  return np.asarray(results.cached(cache_dir, key, lambda: compute_atoms(acts, config), "atoms"))


def _array_digest(a: np.ndarray) -> str:
  import hashlib
  a = np.ascontiguousarray(a)
  return hashlib.sha256(a.tobytes() + str((a.shape, a.dtype)).encode()).hexdigest()


def profile_model(spec: "specs.ModelSpec", prompts: Sequence[str], config: ProfileConfig,
                  cache_dir: pathlib.Path, progress: Callable | None = None) -> ProfileResult:
  """Generate (cached) → atoms (cached) → profile, for one model."""
  act = activity_cached(spec, prompts, config, cache_dir, progress)
  acts = np.asarray(act["acts"])
  atoms = atoms_cached(acts, config, cache_dir)
  cfg = spec.model.config
  res = profile_activity(acts, cfg.num_layers, cfg.num_heads, config, atoms=atoms,
                         progress=progress)
  return dataclasses.replace(res, summary={**res.summary, "model": spec.label,
                                           "tokens": np.asarray(act["tokens"])})


def write_profile(run_dir: pathlib.Path, profiles: dict[str, ProfileResult],
                  tokenizer=None, meta: dict | None = None) -> dict:
  """Writes results.json, head_scores*.csv, layer_profile.csv, atoms*.npz, figures, summary.md.

  ``profiles`` maps a label ("trained", "random") to its ProfileResult; the first is the main one.
  Returns the results dict written.
  """
  run_dir = pathlib.Path(run_dir)
  main_name = next(iter(profiles))
  main = profiles[main_name]
  out = {"config": meta or {}}
  for name, res in profiles.items():
    summ = dict(res.summary)
    tokens = summ.pop("tokens", None)
    suffix = "" if name == main_name else f"_{name}"
    results.write_csv(run_dir / f"head_scores{suffix}.csv", res.table)
    results.write_npz(run_dir / f"atoms{suffix}.npz", atoms=res.atoms, atom_names=np.array(phiid.ATOMS),
                      acts=res.acts, score=res.score)
    if tokens is not None and tokenizer is not None:
      texts = [tokenizer.decode(row, skip_special_tokens=True) for row in tokens]
      results.write_json(run_dir / f"generations{suffix}.json", texts)
    out[name] = summ
  # The required top-level keys describe the main model; the baseline sits under its label.
  for key in ("units", "layer_profile", "syn_red_spearman", "graph", "surrogates"):
    if key in out[main_name]:
      out[key] = out[main_name][key]
  depth = analysis.profile.depth(main.num_layers)
  results.write_csv(run_dir / "layer_profile.csv",
                    {"layer": np.arange(main.num_layers), "depth": depth,
                     **{f"{n}_mean": r.summary["layer_profile_detail"]["rank_score"]["mean"]
                        for n, r in profiles.items()},
                     **{f"{n}_sd": r.summary["layer_profile_detail"]["rank_score"]["sd"]
                        for n, r in profiles.items()}})
  results.write_json(run_dir / "results.json", out)
  _figures(run_dir, profiles)
  results.write_text(run_dir / "summary.md", summary_markdown(profiles, meta or {}))
  return out


def _figures(run_dir: pathlib.Path, profiles: dict[str, ProfileResult]) -> None:
  main_name = next(iter(profiles))
  main = profiles[main_name]
  s = analysis.ranking.atom_matrix(main.atoms, "sts")
  r = analysis.ranking.atom_matrix(main.atoms, "rtr")
  plots.pair_heatmaps({"synergy (sts, nats)": s, "redundancy (rtr, nats)": r}, main.num_heads,
                      save=run_dir / "heatmaps.png")
  plots.head_rank_heatmap(main.scores.rank_score, main.num_layers, main.num_heads,
                          save=run_dir / "head_ranks.png")
  plots.layer_profiles({n: p.summary["layer_profile_detail"]["rank_score"]
                        for n, p in profiles.items()},
                       title="synergy–redundancy rank by depth", save=run_dir / "layer_profile.png")
  diag = main.summary
  plots.diagnostics_scatter(main.scores.synergy, main.scores.redundancy,
                            main.table.get("autocorr_lag1"),
                            rho_syn_red=diag["syn_red_spearman"]["rho"],
                            rho_ac_syn=diag.get("autocorr_syn_spearman", {}).get("rho"),
                            save=run_dir / "diagnostics.png")
  plots.graph_metrics_bar({f"{n} {k}": v for n, p in profiles.items()
                           for k, v in p.summary["graph"].items()},
                          save=run_dir / "graph_metrics.png")


def _fmt(x, nd=3):
  try:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{nd}f}"
  except TypeError:
    return str(x)


def summary_markdown(profiles: dict[str, ProfileResult], meta: dict) -> str:
  """A short human summary of the key numbers and how to read them."""
  lines = ["# Synergistic-core profile", ""]
  if meta:
    lines += [f"- {k}: `{v}`" for k, v in meta.items()] + [""]
  lines += ["| model | units | layer profile (scaled rank score, input → output) | core contrast |"
            " Spearman(syn, red) | Spearman(autocorr, syn) | sts-significant heads |",
            "|---|---|---|---|---|---|---|"]
  for name, p in profiles.items():
    s = p.summary
    prof = " ".join(_fmt(v, 2) for v in s["layer_profile"])
    cc = s["core_contrast"].get("rank_score")
    sur = s.get("surrogates") or {}
    sig = sur.get("sts", {}).get("fraction_heads_significant") if sur else None
    lines.append(f"| {name} ({s.get('model', '')}) | {s['units']['n_units']} | {prof} | "
                 f"{_fmt(cc)} | {_fmt(s['syn_red_spearman']['rho'])} | "
                 f"{_fmt(s.get('autocorr_syn_spearman', {}).get('rho'))} | {_fmt(sig, 2)} |")
  lines += ["", "How to read this:",
            "- Layer profile: mean over a layer's heads of rank(synergy) − rank(redundancy), "
            "min–max scaled to 0..1 over all heads. The study's brain-like pattern is an "
            "inverted U: middle layers synergistic, first and last layers redundant.",
            "- Core contrast: middle third of depth minus the rest; > 0 means a synergistic core.",
            "- Spearman(syn, red) near +1 means per-head synergy and redundancy move together "
            "(a known Gaussian-MMI confound) and the rank difference then carries little signal.",
            "- Spearman(autocorr, syn): MMI turns autocorrelation into synergy; a strong value "
            "means the synergy ranking may partly reflect how smooth each head's series is.",
            "- sts-significant heads: fraction of heads whose mean sts exceeds its circular-shift "
            "null after Benjamini–Hochberg FDR control."]
  for name, p in profiles.items():
    deg = p.summary.get("degenerate") or []
    if deg:
      units = sorted({(d['layer'], d['head']) for d in deg})
      lines.append(f"- {name}: {len(units)} head(s) had degenerate series (constant or NaN) in "
                   f"some prompts and were masked: {units[:10]}{' …' if len(units) > 10 else ''}")
  return "\n".join(lines) + "\n"


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


def run_profile(model: str, prompts: Sequence[str], config: ProfileConfig, run_dir, *,
                cache_dir, baseline: bool = True, dtype: str = "float32",
                progress: Callable | None = None) -> dict:
  """The profile experiment: ``model`` (a --model string) and, if ``baseline``, its random-init
  counterpart, on ``prompts``; writes everything into ``run_dir``; returns results.json's dict."""
  cache_dir = pathlib.Path(cache_dir)
  spec = specs.resolve_model(model, dtype=dtype, seed=config.seed)
  profiles = {"trained" if not spec.random_init else "random":
              profile_model(spec, prompts, config, cache_dir, progress)}
  if baseline and not spec.random_init:
    rnd = specs.resolve_model(specs.random_counterpart(model), dtype=dtype, seed=config.seed)
    profiles["random"] = profile_model(rnd, prompts, config, cache_dir, progress)
  meta = {"model": spec.label, "prompts": len(prompts), **dataclasses.asdict(config)}
  return write_profile(run_dir, profiles, spec.tokenizer, meta)
