"""Per-head synergy and redundancy, their rankings, and unit orders for interventions.

Input everywhere: ``atoms`` (U, U, 16) from ``synergy_jax.phiid.all_pairs`` — entry [i, j, a] is
atom a (lattice order, see :data:`ATOMS`) with unit i as source x and unit j as source y, in nats;
the diagonal is NaN (or, for surrogates, computed but meaningless). What unit u is (a head, an
MoE expert) is the caller's unit table (``analysis.units.Units``); nothing here depends on it.

Definitions (Luppi et al., Nat. Neurosci. 2022; Urbina-Rodriguez, Mediano et al. 2026):
  synergy_i    = mean over partners j != i of sts[i, j]   (Syn→Syn, nats)
  redundancy_i = mean over partners j != i of rtr[i, j]   (Red→Red, nats)
  rank score_i = rank(synergy)_i − rank(redundancy)_i
with ranks base 1 (lowest value → 1) and ties given their average rank. A positive score means a
head ranks higher for synergy than for redundancy (the "synergistic core"); negative → redundant.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis.stats import rankdata
from synergy_jax.phiid.lattice import ATOMS

ATOM_INDEX = {name: i for i, name in enumerate(ATOMS)}


def check_atoms(atoms: np.ndarray) -> np.ndarray:
  """Returns ``atoms`` as float64 after checking its (U, U, 16) shape."""
  a = np.asarray(atoms, dtype=np.float64)
  if a.ndim != 3 or a.shape[0] != a.shape[1] or a.shape[2] != len(ATOMS):
    raise ValueError(f"atoms must have shape (U, U, {len(ATOMS)}), got {a.shape}")
  return a


def atom_matrix(atoms: np.ndarray, name: str) -> np.ndarray:
  """(U, U) matrix of one atom with the diagonal set to NaN (self-pairs never count)."""
  if name not in ATOM_INDEX:
    raise ValueError(f"unknown atom {name!r}; choose one of {ATOMS}")
  m = check_atoms(atoms)[:, :, ATOM_INDEX[name]].copy()
  np.fill_diagonal(m, np.nan)
  return m


def partner_mean(matrix: np.ndarray) -> np.ndarray:
  """(U,) mean over partners j != i of matrix[i, j], ignoring NaN pairs (NaN if none is finite).

  For a symmetric matrix this is also the mean over matrix[j, i]. For an asymmetric estimate
  (unit i as x vs as y) we average both roles: mean over j of (m[i, j] + m[j, i]) / 2 where both
  are finite, else whichever is finite.
  """
  m = np.asarray(matrix, dtype=np.float64).copy()
  np.fill_diagonal(m, np.nan)
  both = np.stack([m, m.T])  # (2, U, U): unit i as x, unit i as y
  cnt = np.sum(~np.isnan(both), axis=0)
  s = np.nansum(both, axis=0)
  sym = np.where(cnt > 0, s / np.maximum(cnt, 1), np.nan)  # (U, U)
  n_ok = np.sum(~np.isnan(sym), axis=1)
  tot = np.nansum(sym, axis=1)
  return np.where(n_ok > 0, tot / np.maximum(n_ok, 1), np.nan)


@dataclasses.dataclass(frozen=True)
class HeadScores:
  """Per-unit scores, all (U,) float64.

  synergy / redundancy: partner means of sts / rtr (nats).
  synergy_rank / redundancy_rank: ranks among included units (base 1, ties averaged), NaN if
    excluded. rank_score = synergy_rank − redundancy_rank (NaN if excluded).
  balance: per-head mean of pair balance sts/(sts+rtr) (see :func:`pair_balance`), in [0, 1].
  excluded: units whose synergy or redundancy is NaN (left out of both rankings).
  """
  synergy: np.ndarray
  redundancy: np.ndarray
  synergy_rank: np.ndarray
  redundancy_rank: np.ndarray
  rank_score: np.ndarray
  balance: np.ndarray
  excluded: tuple[int, ...]

  def to_dict(self) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def rank_difference(synergy: np.ndarray, redundancy: np.ndarray):
  """rank(synergy) − rank(redundancy) over units with both scores finite.

  Args:
    synergy, redundancy: (U,) per-head scores.
  Returns:
    (score, synergy_rank, redundancy_rank, excluded) — three (U,) arrays (NaN for excluded units)
    and the tuple of excluded unit indices. Ranks are base 1 among the n included units, ties
    averaged, so each ranking of distinct values is a permutation of 1..n and the score lies in
    [-(n-1), n-1].
  """
  s = np.asarray(synergy, dtype=np.float64)
  r = np.asarray(redundancy, dtype=np.float64)
  if s.shape != r.shape or s.ndim != 1:
    raise ValueError(f"synergy and redundancy must be (U,) of equal shape, got {s.shape}, {r.shape}")
  bad = np.isnan(s) | np.isnan(r)
  rs = rankdata(np.where(bad, np.nan, s))
  rr = rankdata(np.where(bad, np.nan, r))
  return rs - rr, rs, rr, tuple(int(i) for i in np.flatnonzero(bad))


def pair_balance(atoms: np.ndarray, *, negative: str = "clip") -> np.ndarray:
  """(U, U) per-pair balance b = sts / (sts + rtr), in [0, 1]; diagonal NaN.

  ΦID atoms under MMI/CCS can be slightly negative (estimation noise, or misinformation), so the
  ratio needs a rule:
    negative="clip": negative sts or rtr count as 0 information of that kind, then b = s/(s+r);
    negative="nan":  pairs with a negative sts or rtr are undefined (NaN).
  Pairs with s + r == 0 after the rule (no synergy, no redundancy) are undefined (NaN), never a
  silent 0 or 0.5.
  """
  s = atom_matrix(atoms, "sts")
  r = atom_matrix(atoms, "rtr")
  if negative == "clip":
    s, r = np.where(s < 0, 0.0, s), np.where(r < 0, 0.0, r)
  elif negative == "nan":
    neg = (s < 0) | (r < 0)
    s, r = np.where(neg, np.nan, s), np.where(neg, np.nan, r)
  else:
    raise ValueError(f"negative must be 'clip' or 'nan', got {negative!r}")
  tot = s + r
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(tot > 0, s / np.where(tot > 0, tot, 1.0), np.nan)


def head_balance(atoms: np.ndarray, *, negative: str = "clip") -> np.ndarray:
  """(U,) per-head mean over partners of :func:`pair_balance` (NaN pairs skipped)."""
  return partner_mean(pair_balance(atoms, negative=negative))


def head_scores(atoms: np.ndarray, *, negative: str = "clip") -> HeadScores:
  """All per-head scores from a (U, U, 16) atoms array (see module docstring)."""
  syn = partner_mean(atom_matrix(atoms, "sts"))
  red = partner_mean(atom_matrix(atoms, "rtr"))
  score, rs, rr, excluded = rank_difference(syn, red)
  return HeadScores(syn, red, rs, rr, score, head_balance(atoms, negative=negative), excluded)


# --------------------------------------------------------------------------------------------------
# Unit orders (for ablation and perturbation)
# --------------------------------------------------------------------------------------------------


def order_by_score(score: np.ndarray, *, descending: bool = True) -> np.ndarray:
  """(U,) unit indices sorted by ``score`` (highest first if ``descending``).

  Ties keep ascending unit index; units with NaN score come last, in ascending index, so the
  order is always a full permutation of range(U) (fraction 1 ablates everything).
  """
  s = np.asarray(score, dtype=np.float64)
  if s.ndim != 1:
    raise ValueError(f"score must be (U,), got {s.shape}")
  key = np.where(np.isnan(s), np.inf, -s if descending else s)
  return np.argsort(key, kind="stable")


def synergistic_order(score: np.ndarray) -> np.ndarray:
  """Most synergistic first (descending rank score or balance)."""
  return order_by_score(score, descending=True)


def redundant_order(score: np.ndarray) -> np.ndarray:
  """Most redundant first (ascending rank score or balance); NaN units still last."""
  return order_by_score(score, descending=False)


def random_orders(n_units: int, n_orders: int, seed: int) -> np.ndarray:
  """(n_orders, n_units) independent random permutations, reproducible from ``seed``."""
  if n_units < 1 or n_orders < 1:
    raise ValueError(f"random_orders needs n_units, n_orders >= 1, got {n_units}, {n_orders}")
  rng = np.random.default_rng(seed)
  return np.stack([rng.permutation(n_units) for _ in range(n_orders)])


def n_selected(fraction: float, n_units: int) -> int:
  """round(fraction · n_units) with halves rounded up (not to even), fraction in [0, 1]."""
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"fraction must be in [0, 1], got {fraction}")
  return int(np.floor(fraction * n_units + 0.5))

