"""When synergy happens: per-token (local) sts and rtr of the most synergistic and most redundant
heads, for every prompt (``phiid.local_head_atoms``: each head as source x, averaged over its
partners). Their mean over tokens is the head's average atom, so a spike marks the tokens where a
head's synergy (or redundancy) with the rest of the network is concentrated.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from synergy_jax import phiid
from synergy_jax.analysis import ranking

_STS, _RTR = ranking.ATOM_INDEX["sts"], ranking.ATOM_INDEX["rtr"]


@dataclasses.dataclass(frozen=True)
class LocalAtoms:
  """heads (H,) unit indices: the ``k`` most synergistic then the ``k`` most redundant by the
  ranking score (fewer when the score has fewer finite heads); role (H,) "synergistic" |
  "redundant"; sts, rtr (P, H, S) per-token atoms in nats, S = T' − τ (token s is the transition
  from step s to step s + τ of the generated series)."""
  heads: np.ndarray
  role: np.ndarray
  sts: np.ndarray
  rtr: np.ndarray


def top_heads(score: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
  """(heads, role): the k highest-scoring heads, then the k lowest (NaN scores never chosen; a
  head is chosen once)."""
  score = np.asarray(score, np.float64)
  finite = np.isfinite(score)
  syn = [int(u) for u in ranking.synergistic_order(score) if finite[u]][:k]
  red = [int(u) for u in ranking.redundant_order(score) if finite[u] and u not in syn][:k]
  heads = np.asarray(syn + red, int)
  role = np.array(["synergistic"] * len(syn) + ["redundant"] * len(red))
  return heads, role


def local_atoms(acts: np.ndarray, score: np.ndarray, config: "phiid.PhiidConfig", *,
                k: int = 3) -> LocalAtoms:
  """Per-token sts and rtr of the top ``k`` synergistic and redundant heads of (P, U, T) acts.

  Degenerate units and singular pairs are left out of each head's partner average (they are
  listed in the profile's ``degenerate`` record)."""
  heads, role = top_heads(score, k)
  if heads.size == 0:
    raise ValueError("local atoms: no head has a finite ranking score")
  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*masking.*")  # already in "degenerate"
    loc = np.asarray(phiid.local_head_atoms(acts, config, heads=heads, on_degenerate="mask"))
  return LocalAtoms(heads, role, loc[:, :, _STS, :], loc[:, :, _RTR, :])
