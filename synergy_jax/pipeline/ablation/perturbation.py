"""Ablation, perturbation: greedy exact-match accuracy with Gaussian noise in the top synergistic,
top redundant and random units (heads, experts or both) over a range of σ and seeds, with
two-way bootstrap CIs (seeds × examples).

Noise goes into every weight entry a unit owns (the family's unit description,
``models.perturb_selected``): a head's query rows and output columns, an expert's gate, up and
down matrices (routing unchanged). σ is relative by default: σ × the RMS of all unit weights of
the unit's own kind (``models.unit_weight_rms(units=...)``), so with heads+experts each head gets
σ × (head RMS) and each expert σ × (expert RMS), and both RMS values are reported."""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax import interventions, models, tasks
from synergy_jax.analysis.stats import two_way_bootstrap
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import typed
from synergy_jax.pipeline.ablation.config import CONDITIONS, AblationConfig, unit_noun

_KIND = {"head": "heads", "expert": "experts"}  # Units.kind → the models' units= name


def unit_kinds(units: Units) -> tuple[str, ...]:
  """The kinds of ``units`` as ``models.perturb_selected`` names them ("heads", "experts"), in
  table order."""
  return tuple(dict.fromkeys(_KIND[k] for k in units.kind.tolist()))


def weight_rms(model, units: str = "heads") -> float:
  """RMS of all unit weights of one kind of ``model`` (a Model; a bare params dict reads the
  dense head description): heads' query and output projections, or experts' gate, up and down
  matrices (units="experts"). The scale of relative σ."""
  return models.unit_weight_rms(model, units=units)


def noise_scales(model, units: Units, sigma_scale: str) -> dict:
  """{kind: RMS of that kind's unit weights} for each kind among ``units`` (relative σ), or
  {kind: None} (sigma_scale="absolute": σ is used as given)."""
  return {k: weight_rms(model, k) if sigma_scale == "relative" else None
          for k in unit_kinds(units)}


def perturb_units(model, selection: "interventions.UnitGrids", sigmas: Mapping[str, float],
                  key) -> dict:
  """``model``'s params with N(0, σ_k²) noise in the weights of the selected units of each kind k
  of ``sigmas`` ({"heads": σ_h, "experts": σ_e}, absolute SDs); selection: bool grids
  (``interventions.unit_selection``). Every other parameter is returned bit-identical. Heads
  use ``key``, experts ``fold_in(key, 1)``; selections and σ are traced (no recompilation)."""
  params = model.params
  for kind, sigma in sigmas.items():
    sel = selection.heads if kind == "heads" else selection.experts
    if sel is None:
      raise ValueError(f"perturb_units: σ given for {kind} but the selection has no {kind} grid")
    # Heads keep the key they had when perturbed alone (the heads-only experiment's noise).
    k = key if kind == "heads" else jax.random.fold_in(key, 1)
    params = models.perturb_selected(params, sel, jnp.float32(sigma), k,
                                     config=model.config, units=kind)
  return params


def _correct(model, tokenizer, examples) -> np.ndarray:
  texts = tasks.generate_answers(model, tokenizer, examples)
  return np.array([tasks.check(e, t) for e, t in zip(examples, texts)])


def perturbation_accuracy(model: "models.Model", tokenizer, examples: list, selections: dict,
                          sigmas_abs: Mapping[str, Sequence[float]], *, n_seeds: int,
                          seed: int = 0, progress: Callable | None = None) -> np.ndarray:
  """(C, S, R, E) bool exact matches: condition (``CONDITIONS``) × σ × seed × example.

  selections: {"synergistic": UnitGrids, "redundant": UnitGrids, "random": [UnitGrids] (>=
  n_seeds, one per seed)} bool unit selections. sigmas_abs: {kind: (S,) absolute noise SDs}
  for each perturbed kind ("heads", "experts"). Noise of seed r at σ index s uses the same PRNG
  key in every condition (common random numbers). A σ index with every SD 0 leaves the
  parameters unchanged and is evaluated once.
  """
  sig = {k: np.asarray(v, np.float64) for k, v in sigmas_abs.items()}
  n_sig = {v.size for v in sig.values()}
  if len(n_sig) != 1:
    raise ValueError(f"sigmas_abs lists differ in length across kinds: "
                     f"{ {k: v.size for k, v in sig.items()} }")
  n_sig = n_sig.pop()
  if len(selections["random"]) < n_seeds:
    raise ValueError(f"selections has {len(selections['random'])} random sets for {n_seeds} "
                     "seeds")
  out = np.zeros((len(CONDITIONS), n_sig, n_seeds, len(examples)), bool)
  base = None
  jobs = [(s, r) for s in range(n_sig) for r in range(n_seeds)]
  bar = progress(jobs, desc="perturbation (σ × seed)", unit="run") if progress else jobs
  for s, r in bar:
    if all(v[s] == 0 for v in sig.values()):
      if base is None:
        base = _correct(model, tokenizer, examples)
      out[:, s, r] = base
      continue
    key = jax.random.fold_in(jax.random.PRNGKey(seed), s * 100_003 + r)
    for c, cond in enumerate(CONDITIONS):
      chosen = selections[cond] if cond != "random" else selections["random"][r]
      params = perturb_units(model, chosen, {k: float(v[s]) for k, v in sig.items()}, key)
      out[c, s, r] = _correct(model.replace(params=params), tokenizer, examples)
  return out


@dataclasses.dataclass(frozen=True)
class PerturbationSummary:
  """results.json → perturbation (field names are its keys), for C = ``CONDITIONS``, S σ values
  and K difficulty ranks.

  sigmas (S,) as configured (relative or absolute, ``sigma_scale``), sigmas_abs (S,) the noise
  SDs used when one kind of unit is perturbed (None for heads+experts: see noise_by_kind);
  accuracy {condition: {"mean", "ci_low", "ci_high": (S, K)}} with families pooled at each rank
  (``levels``); by_family {family: {"levels": its k values, condition: {...} (S, k)}};
  seed_accuracy {condition: (S, seeds)}; ci: how the CIs were made. Set after the evaluation:
  weight_rms (the scale of relative σ when one kind is perturbed; None for absolute σ or
  heads+experts), compilations (XLA compilations during it), generate_calls, head_sets
  {"synergistic", "redundant": unit indices, "random": [unit indices] per seed} (units of the
  summary's unit table, experts included), noise_by_kind {"heads" / "experts": {"weight_rms":
  that kind's RMS (None: absolute σ), "sigmas_abs": (S,)}} for each perturbed kind (absent
  from files of earlier versions, whose units are heads).
  """
  sigmas: list
  sigmas_abs: list | None
  sigma_scale: str
  conditions: list
  levels: list
  level_kind: str
  families: list
  n_seeds: int
  n_examples_per_family_level: int
  ci: str
  accuracy: dict
  by_family: dict
  seed_accuracy: dict
  weight_rms: float | None = None
  compilations: int | None = None
  generate_calls: int | None = None
  head_sets: dict | None = None
  noise_by_kind: dict | None = None

  @classmethod
  def from_dict(cls, data, where: str) -> "PerturbationSummary":
    return cls(**typed.field_values(cls, data, where))


def summarise_perturbation(correct: np.ndarray, examples: list, sigmas: Sequence[float],
                           sigmas_abs: Sequence[float] | None,
                           config: AblationConfig) -> PerturbationSummary:
  """results.json's ``perturbation`` (without the fields set after the evaluation; sigmas_abs
  None when two kinds of unit are perturbed, each with its own SDs): accuracy per
  condition × σ × difficulty rank (families pooled at each rank; ``levels`` holds the ranks) and
  per family × level k (``by_family``), each with a two-way bootstrap CI."""
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
  return PerturbationSummary(
      sigmas=list(map(float, sigmas)),
      sigmas_abs=None if sigmas_abs is None else list(map(float, sigmas_abs)),
      sigma_scale=config.sigma_scale, conditions=list(CONDITIONS),
      levels=levels, level_kind="difficulty rank (1 = each family's easiest level)",
      families=families, n_seeds=int(correct.shape[2]),
      n_examples_per_family_level=config.n_examples,
      ci=(f"{config.ci_level:.0%} percentile bootstrap resampling noise seeds (and, for "
          f"'random', {unit_noun(config.units)[0]} sets) and examples independently"),
      accuracy=pooled,
      by_family=by_family,
      seed_accuracy={cond: per_seed[c].mean(-1) for c, cond in enumerate(CONDITIONS)},
  )
