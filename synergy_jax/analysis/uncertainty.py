"""How sure a layer profile is: per-prompt estimates, prompt bootstrap, split-half reliability.

Under pool="mean" the atoms of a pair are the mean over prompts of per-prompt atoms, so the
per-prompt pair values of sts and rtr, (P, U, U, 2), are all that a bootstrap over prompts needs:
a replicate's atoms are the mean over a resample of prompts (no re-generation, no re-estimation).
``prompt_pairs`` computes them with the compiled Gaussian MMI kernel of ``analysis.nulls`` where it
applies, else one ``phiid.all_pairs`` call per prompt. For pool="concat" the replicates are means
of per-prompt estimates, an approximation stated in the result's ``method``.

Axis legend: B bootstrap replicates, P prompts, U units, K the two atoms (sts, rtr), L layers.
"""
from __future__ import annotations

import dataclasses
import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from synergy_jax.analysis import nulls, profile, ranking, stats
from synergy_jax.analysis.units import as_units

PAIR_ATOMS = ("sts", "rtr")
SCORES = ("rank_difference", "balance", "excess")


@functools.partial(jax.jit, static_argnames=("tau", "weights"))
def _prompt_pairs_fast(acts, *, tau, weights):
  """(P, U, T) → (P, U, U, K) per-prompt Gaussian MMI atoms (diagonal and degenerate units NaN)."""
  n = acts.shape[1]

  def one(a):  # a: (1, U, T)
    bad = nulls._bad_units(a, tau)
    xs = tuple(nulls._lags(a, tau, "mean", bad))
    v = nulls._pair_atoms(xs, xs, "mean", weights)
    masked = bad[:, None] | bad[None, :] | jnp.eye(n, dtype=bool)
    return jnp.where(masked[..., None], jnp.nan, v)
  return jax.lax.map(one, acts[:, None])


def prompt_pairs(acts: np.ndarray, config, *, dtype=None, mesh=None) -> np.ndarray:
  """(P, U, U, 2) float32 per-prompt pair values of (sts, rtr) in nats; NaN on the diagonal and
  for a unit degenerate in that prompt. ``config``: the profile's ``phiid.PhiidConfig`` (its pool
  is ignored: each prompt is estimated on its own)."""
  from synergy_jax import phiid
  acts = np.asarray(acts)
  if acts.ndim != 3:
    raise ValueError(f"acts must be (prompts, units, time), got shape {acts.shape}")
  dtype = jnp.dtype(dtype) if dtype is not None else jax.dtypes.canonicalize_dtype(jnp.float64)
  if nulls.fast_path_applies(config):
    w = tuple(map(tuple, nulls._atom_log_weights(PAIR_ATOMS).tolist()))
    return np.asarray(_prompt_pairs_fast(jnp.asarray(acts, dtype), tau=config.tau, weights=w),
                      np.float32)
  idx = [ranking.ATOM_INDEX[a] for a in PAIR_ATOMS]
  one = config.replace(pool="mean")
  out = []
  for q in range(acts.shape[0]):
    a = np.asarray(phiid.all_pairs(acts[q:q + 1], config=one, on_degenerate="mask", mesh=mesh,
                                   dtype=dtype), np.float32)
    out.append(a[:, :, idx])
  return np.stack(out)


def prompt_mean(per_prompt: np.ndarray) -> np.ndarray:
  """(P, U, U, K) → (U, U, K) mean over prompts of the finite values (NaN where none is: the
  diagonal, or a unit degenerate in every prompt)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN diagonal: NaN is the answer
    return np.nanmean(np.asarray(per_prompt, np.float64), 0)


def _as_atoms(pairs: np.ndarray) -> np.ndarray:
  """(U, U, 2) sts/rtr → (U, U, 16) with the other atoms NaN (for ``ranking`` helpers)."""
  out = np.full(pairs.shape[:2] + (len(ranking.ATOMS),), np.nan)
  for k, a in enumerate(PAIR_ATOMS):
    out[..., ranking.ATOM_INDEX[a]] = pairs[..., k]
  return out


def scores_from_pairs(pairs: np.ndarray, null_mean: np.ndarray | None = None) -> dict:
  """(U,) head scores from (U, U, 2) pair sts/rtr: "rank_difference" (rank(syn) − rank(red)),
  "balance" (mean pair sts/(sts+rtr)) and, with the surrogates' (U, U, 2) pair means, "excess"
  (rank difference of the partner means of sts − null and rtr − null)."""
  pairs = np.asarray(pairs, np.float64)
  syn, red = ranking.partner_mean(pairs[..., 0]), ranking.partner_mean(pairs[..., 1])
  out = {"rank_difference": ranking.rank_difference(syn, red)[0],
         "balance": ranking.head_balance(_as_atoms(pairs))}
  if null_mean is not None:
    ex = pairs - np.asarray(null_mean, np.float64)
    out["excess"] = ranking.rank_difference(ranking.partner_mean(ex[..., 0]),
                                            ranking.partner_mean(ex[..., 1]))[0]
  return out


@dataclasses.dataclass(frozen=True)
class ProfileCI:
  """Prompt-bootstrap intervals of one score's layer profile (min–max scaled, as the profile).

  estimate, low, high: (L,); curvature_ci: interval of the depth-trend curvature over replicates;
  samples: (B, L) replicate profiles; method: how replicates were formed.
  """
  score: str
  estimate: np.ndarray
  low: np.ndarray
  high: np.ndarray
  level: float
  curvature_ci: tuple
  samples: np.ndarray
  method: str

  def to_dict(self) -> dict:
    return {"score": self.score, "estimate": self.estimate, "ci_low": self.low,
            "ci_high": self.high, "ci_level": self.level, "curvature_ci": list(self.curvature_ci),
            "n_boot": int(self.samples.shape[0]), "method": self.method}


def _replicate_pairs(per_prompt: np.ndarray, n_boot: int, seed: int, chunk: int = 64):
  """Yields (U, U, 2) mean pair values of each bootstrap resample of prompts."""
  p = per_prompt.shape[0]
  idx = stats.bootstrap_indices(p, n_boot, seed)
  flat = per_prompt.reshape(p, -1).astype(np.float64)
  finite = np.isfinite(flat)
  vals = np.where(finite, flat, 0.0)
  for start in range(0, n_boot, chunk):
    counts = np.stack([np.bincount(i, minlength=p) for i in idx[start:start + chunk]])  # (b, P)
    tot = counts @ vals
    num = counts @ finite
    with np.errstate(invalid="ignore", divide="ignore"):
      mean = np.where(num > 0, tot / np.maximum(num, 1), np.nan)
    yield from mean.reshape((-1,) + per_prompt.shape[1:])


def layer_profile_ci(per_prompt: np.ndarray, units, num_heads: int | None = None, *,
                     scores=SCORES, null_mean: np.ndarray | None = None, n_boot: int = 1000,
                     level: float = 0.95, seed: int = 0, pooled: bool = False) -> dict:
  """Per-layer bootstrap intervals over prompts for each score in ``scores``.

  Args:
    per_prompt: (P, U, U, 2) from ``prompt_pairs``.
    units: the unit table (``analysis.units.Units``), or num_layers with ``num_heads`` for the
      head grid.
    null_mean: (U, U, 2) surrogate pair means (needed for "excess"; treated as fixed).
    pooled: the point atoms were pool="concat" (recorded in ``method``).
  Returns:
    {score: ProfileCI}.
  """
  per_prompt = np.asarray(per_prompt)
  units = as_units(units, num_heads)
  n = units.size
  if per_prompt.ndim != 4 or per_prompt.shape[1:] != (n, n, 2):
    raise ValueError(f"per_prompt must be (P, {n}, {n}, 2) for {units.layout()}, got "
                     f"{per_prompt.shape}")
  scores = [s for s in scores if s != "excess" or null_mean is not None]
  point = scores_from_pairs(prompt_mean(per_prompt), null_mean)
  prof = {s: [] for s in scores}
  curv = {s: [] for s in scores}
  d = units.depth
  for rep in _replicate_pairs(per_prompt, n_boot, seed):
    sc = scores_from_pairs(rep, null_mean)
    for s in scores:
      scaled = profile.minmax_scale(sc[s])
      prof[s].append(profile.layer_profile(scaled, units, scale=False).mean)
      ok = np.isfinite(scaled)
      curv[s].append(stats.quadratic_fit(d[ok], scaled[ok])[2] if ok.sum() > 3 else np.nan)
  method = ("percentile bootstrap over prompts of per-prompt pair atoms"
            + ("; the point atoms pool all prompts (concat), replicates average per-prompt "
               "estimates" if pooled else "") + "; surrogate null means held fixed")
  out = {}
  for s in scores:
    samples = np.asarray(prof[s])
    with warnings.catch_warnings():  # a layer without units has NaN in every replicate
      warnings.filterwarnings("ignore", message="All-NaN slice")
      lo, hi = stats.percentile_interval(samples, level)
    clo, chi = stats.percentile_interval(np.asarray(curv[s]), level)
    est = profile.layer_profile(point[s], units).mean
    out[s] = ProfileCI(s, est, lo, hi, level, (float(clo), float(chi)), samples, method)
  return out


def reliability(per_prompt: np.ndarray, *, null_mean: np.ndarray | None = None,
                scores=SCORES, n_splits: int = 20, seed: int = 0) -> dict:
  """{score: ``stats.split_half_spearman`` result} for head scores from random prompt halves."""
  out = {}
  for s in scores:
    if s == "excess" and null_mean is None:
      continue
    fn = lambda sub, s=s: scores_from_pairs(prompt_mean(sub), null_mean)[s]
    out[s] = stats.split_half_spearman(per_prompt, fn, n_splits=n_splits, seed=seed)
  return out
