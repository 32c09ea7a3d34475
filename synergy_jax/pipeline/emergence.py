"""Emergence: the synergistic-core profile at successive training checkpoints of one model.

The study reports that the middle-layer synergistic core is absent at initialisation and appears
during training. Checkpoints come from one of two places:

  * an exported training run of synergy_jax (``checkpoints/step_NNNNNN/``; the shipped default
    model has them): ``run_emergence``;
  * revisions of a hub model (Pythia publishes ``step0`` … ``step143000``): ``run_emergence_hub``,
    each revision resolved through the local Hugging Face cache (downloaded when online).

Both profile every checkpoint with the same prompts and settings and write results.json,
emergence.csv (step × layer), emergence.png (one layer-profile curve per step) and
emergence_trend.png (core contrast and Spearman(syn, red) against step, log axis).
"""
from __future__ import annotations

import dataclasses
import pathlib
import re
from typing import Callable, Iterable, Sequence

import numpy as np

from synergy_jax import models, plots, results
from synergy_jax.pipeline import profile as prof
from synergy_jax.pipeline import specs, typed
from synergy_jax.pipeline.text import fmt

# Pythia's published checkpoints (Biderman et al., ICML 2023): step 0, the powers of two up to
# 512, then every 1000 steps to 143000.
PYTHIA_STEPS = (0, *(2 ** k for k in range(10)), *range(1000, 143001, 1000))
PRESETS = {"pythia": tuple(f"step{s}" for s in PYTHIA_STEPS)}
_STEP = re.compile(r"^step(\d+)$")


def revision_list(names: Sequence[str]) -> tuple[str, ...]:
  """--revisions values with presets expanded ("pythia" → step0, step1, …, step143000).

  Raises ValueError for an empty list, an empty name or a revision given twice.
  """
  out = []
  for name in names:
    name = name.strip()
    if not name:
      raise ValueError(f"--revisions={','.join(names)!r} has an empty entry")
    out += PRESETS.get(name, (name,))
  if not out:
    raise ValueError("--revisions is empty; give revisions (step0,step1000) or a preset "
                     f"({', '.join(PRESETS)})")
  twice = sorted({r for r in out if out.count(r) > 1})
  if twice:
    raise ValueError(f"--revisions names {twice} more than once")
  return tuple(out)


def revision_step(revision: str) -> int | None:
  """The training step of a revision named "step<N>"; None for any other name."""
  m = _STEP.match(revision)
  return None if m is None else int(m.group(1))


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """One point of the emergence curve: a label (the step, "250", for exported checkpoints; the
  revision, "step1000", for hub revisions) that keys results.json's per-checkpoint entries, its
  training step (None when a revision's name carries none) and a function loading its ModelSpec
  (called once, in order)."""
  label: str
  step: int | None
  load: Callable[[], "specs.ModelSpec"]


@dataclasses.dataclass(frozen=True)
class CheckpointProfile:
  """One checkpoint's profile, results.json → per_step → <label> (field names are the JSON keys).

  layer_profile, layer_profile_balance: (L,) per-layer means of the min–max scaled rank score and
  of the balance; core_contrast: {"band", "rank_score", ...} middle minus periphery; the two
  Spearman records {"rho", ...}; mean_sts, mean_rtr: nats over the heads with a finite value;
  n_units_scored: those heads; degenerate: the excluded heads' records; surrogates: the null's
  summary or None.
  """
  layer_profile: list
  layer_profile_balance: list
  core_contrast: dict
  syn_red_spearman: dict
  autocorr_syn_spearman: dict | None
  mean_sts: float
  mean_rtr: float
  n_units_scored: int
  degenerate: list
  surrogates: dict | None

  @classmethod
  def from_profile(cls, res: "prof.ProfileResult") -> "CheckpointProfile":
    s = res.summary
    return cls(
        layer_profile=[float(v) for v in s["layer_profile"]],
        layer_profile_balance=[float(v) for v in s["layer_profile_detail"]["balance"]["mean"]],
        core_contrast=s["core_contrast"],
        syn_red_spearman=s["syn_red_spearman"],
        autocorr_syn_spearman=s.get("autocorr_syn_spearman"),
        mean_sts=_finite_mean(res.scores.synergy, "synergy"),
        mean_rtr=_finite_mean(res.scores.redundancy, "redundancy"),
        n_units_scored=int(np.isfinite(res.scores.synergy).sum()),
        degenerate=list(s.get("degenerate", [])),
        surrogates=s.get("surrogates"))


@dataclasses.dataclass(frozen=True)
class EmergenceResult:
  """An emergence run: config (settings), checkpoints (labels in order), steps (training step of
  each, None where a revision name carries none), depth (L,) normalised layer depth, per_step
  {label: CheckpointProfile}. ``to_dict`` is results.json's layout (plus "layer_profile":
  {label: (L,)}, a shortcut kept for existing readers)."""
  config: dict
  checkpoints: list
  steps: list
  depth: list
  per_step: dict

  def to_dict(self) -> dict:
    return {"config": self.config, "checkpoints": self.checkpoints, "steps": self.steps,
            "depth": self.depth, "per_step": self.per_step,
            "layer_profile": {k: self.per_step[k].layer_profile for k in self.checkpoints}}


def read_emergence(path) -> EmergenceResult:
  """An emergence run's results.json (this version's or an earlier one: the layout has not
  changed) as an EmergenceResult. Raises FileNotFoundError for a missing file and ValueError
  naming the file and the missing key for one that is not an emergence result."""
  path, data = typed.read_results(path, "emergence")
  fields = [f.name for f in dataclasses.fields(CheckpointProfile)]
  try:
    per = {k: CheckpointProfile(**{f: data["per_step"][k][f] for f in fields})
           for k in data["checkpoints"]}
    return EmergenceResult(data.get("config", {}), list(data["checkpoints"]),
                           list(data["steps"]), list(data["depth"]), per)
  except (KeyError, TypeError) as e:
    raise ValueError(f"{path} is not an emergence results.json: missing or malformed key {e}"
                     ) from e


def _finite_mean(values: np.ndarray, what: str) -> float:
  v = np.asarray(values, np.float64)
  ok = np.isfinite(v)
  if not ok.any():
    raise ValueError(f"emergence: no head has a finite {what}; every unit was degenerate")
  return float(v[ok].mean())  # excluded heads are listed in the entry's "degenerate"


def profile_checkpoints(checkpoints: Iterable[Checkpoint], prompts: Sequence[str],
                        config: "prof.ProfileConfig", cache_dir, *,
                        progress: Callable | None = None) -> tuple[list, np.ndarray]:
  """([(Checkpoint, CheckpointProfile)], depth (L,)) for every checkpoint, loading one model at a
  time."""
  out, depth = [], None
  for ck in checkpoints:
    bar = specs.labelled(progress, f"checkpoint {ck.label}")  # the stage comes from each bar
    res = prof.profile_model(ck.load(), prompts, config, pathlib.Path(cache_dir), bar)
    depth = np.asarray(res.summary["layer_profile_detail"]["rank_score"]["depth"])
    out.append((ck, CheckpointProfile.from_profile(res)))
  if not out:
    raise ValueError("emergence: no checkpoints to profile")
  return out, depth


def write_emergence(run_dir, points: list, depth: np.ndarray, meta: dict) -> dict:
  """Writes results.json, emergence.csv, emergence.png, emergence_trend.png, summary.md; returns
  results.json's dict."""
  run_dir = pathlib.Path(run_dir)
  res = EmergenceResult(meta, [ck.label for ck, _ in points], [ck.step for ck, _ in points],
                        [float(d) for d in depth], {ck.label: entry for ck, entry in points})
  rows = [{"checkpoint": ck.label, "step": "" if ck.step is None else ck.step, "layer": layer,
           "depth": res.depth[layer], "rank_score_mean": v,
           "balance_mean": entry.layer_profile_balance[layer]}
          for ck, entry in points for layer, v in enumerate(entry.layer_profile)]
  out = results.to_jsonable(res.to_dict())
  results.write_json(run_dir / "results.json", out)
  results.write_csv(run_dir / "emergence.csv", rows)
  labels, steps, per = res.checkpoints, res.steps, res.per_step
  x = steps if all(s is not None for s in steps) else list(range(len(labels)))
  title = meta.get("model", "")
  plots.emergence_profiles(x, [np.asarray(per[k].layer_profile) for k in labels], depth,
                           save=run_dir / "emergence.png", title=title)
  plots.emergence_trend(
      x, {"core contrast (rank score)": [per[k].core_contrast.get("rank_score") for k in labels],
          "Spearman(syn, red)": [per[k].syn_red_spearman["rho"] for k in labels]},
      labels=None if x is steps else labels, title=title, save=run_dir / "emergence_trend.png")
  results.write_text(run_dir / "summary.md", summary_markdown(res))
  return out


def run_emergence(prompts: Sequence[str], config: "prof.ProfileConfig", run_dir, *, cache_dir,
                  path: str = "default", steps: Sequence[int] | None = None,
                  dtype: str = "float32", progress: Callable | None = None) -> dict:
  """Profiles every exported checkpoint under ``path`` (``training.emergence_checkpoints``)."""
  from synergy_jax import training
  tokenizer = models.load_tokenizer(path)
  loaded = training.emergence_checkpoints(path, steps=None if steps is None else list(steps),
                                          dtype=dtype)
  checkpoints = [Checkpoint(str(s), s, lambda m=m, s=s: specs.ModelSpec(
      m, tokenizer, f"{path}@step{s}", str(path), False, config.seed)) for s, m in loaded]
  points, depth = profile_checkpoints(checkpoints, prompts, config, cache_dir, progress=progress)
  meta = {"model": str(path), "source": "exported checkpoints", "prompts": len(prompts),
          **dataclasses.asdict(config)}
  return write_emergence(run_dir, points, depth, meta)


def resolve_revisions(model: str, revisions: Sequence[str]) -> tuple[str, ...]:
  """``revision_list(revisions)`` after checking that each resolves to a local snapshot (from
  the cache, or downloaded when online). Raises FileNotFoundError naming the first missing one."""
  from synergy_jax.models import hub
  revisions = revision_list(revisions)
  if "@" in model:
    raise ValueError(f"--model={model!r} already names a revision; with --revisions give the "
                     "model without '@REVISION'")
  for rev in revisions:
    hub.resolve(f"{model}@{rev}")
  return revisions


def run_emergence_hub(model: str, revisions: Sequence[str], prompts: Sequence[str],
                      config: "prof.ProfileConfig", run_dir, *, cache_dir,
                      dtype: str = "float32", progress: Callable | None = None) -> dict:
  """Profiles hub ``model`` at each of ``revisions`` (``revision_list`` expands presets).

  Every revision is resolved first (local cache, else download), so a missing one fails with its
  name before any profile is computed.
  """
  revisions = resolve_revisions(model, revisions)
  checkpoints = [Checkpoint(rev, revision_step(rev), lambda rev=rev: specs.resolve_model(
      f"{model}@{rev}", dtype=dtype, seed=config.seed)) for rev in revisions]
  points, depth = profile_checkpoints(checkpoints, prompts, config, cache_dir, progress=progress)
  meta = {"model": model, "source": "hub revisions", "revisions": list(revisions),
          "prompts": len(prompts), "dtype": dtype, **dataclasses.asdict(config)}
  return write_emergence(run_dir, points, depth, meta)


def summary_markdown(res: EmergenceResult) -> str:
  """summary.md of an emergence run: one table row per checkpoint."""
  lines = [f"# Emergence of the synergistic core across training — {res.config.get('model')}",
           "", "| checkpoint | layer profile (scaled rank score, input → output) | core contrast | "
           "Spearman(syn, red) | mean sts | mean rtr | heads scored |",
           "|---|---|---|---|---|---|---|"]
  for k in res.checkpoints:
    d = res.per_step[k]
    lines.append(f"| {k} | {' '.join(fmt(v, 2, 'f') for v in d.layer_profile)} | "
                 f"{fmt(d.core_contrast.get('rank_score'), 3, 'f')} | "
                 f"{fmt(d.syn_red_spearman['rho'], 3, 'f')} | {fmt(d.mean_sts, 4, 'f')} | "
                 f"{fmt(d.mean_rtr, 4, 'f')} | {d.n_units_scored} |")
  lines += ["", "Step 0 is the random initialisation. The study's claim is that the inverted-U "
            "profile (core contrast > 0) is absent at step 0 and grows with training; read the "
            "core-contrast column against the surrogate and random baselines of the profile "
            "experiment before concluding anything from a small model. Heads whose series were "
            "degenerate at a checkpoint are left out of its means and listed in results.json "
            "(per_step → degenerate)."]
  return "\n".join(lines) + "\n"
