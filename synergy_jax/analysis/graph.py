"""Synergy and redundancy matrices as weighted undirected graphs: efficiency and modularity.

Construction: the (U, U) atom matrix is symmetrised ((W + Wᵀ)/2, as sts and rtr are symmetric in
the two sources up to estimation noise), the diagonal dropped, and only the strongest
``fraction`` of the U(U−1)/2 possible edges kept (default 10%). Edges with non-positive or NaN
weight are never kept, since a distance 1/w needs w > 0.

Global efficiency (Latora & Marchiori 2001), weighted: E = 1/(U(U−1)) Σ_{i≠j} 1/d_ij with d_ij
the shortest-path length when each edge has length 1/w (strong coupling = short distance).
Disconnected pairs contribute 0. Weights are first divided by the largest kept weight
(``normalize=True``), so the strongest edge has length 1 and graphs on different scales (nats of
synergy vs redundancy) are comparable; E then lies in [0, 1].

Modularity (Newman 2006): Q = 1/(2m) Σ_ij [A_ij − k_i k_j / (2m)] δ(c_i, c_j) with k the node
strengths and 2m = Σ_ij A_ij. Communities come from Newman's leading-eigenvector method with
repeated bisection, each split fine-tuned by greedy single-node moves; deterministic (no random
seeds). Isolated nodes (no kept edge) carry no modularity and get community label −1.
"""
from __future__ import annotations

import numpy as np


def symmetrize(matrix: np.ndarray) -> np.ndarray:
  """(U, U) average of W and Wᵀ (NaN where either is NaN), diagonal NaN."""
  w = np.asarray(matrix, dtype=np.float64)
  if w.ndim != 2 or w.shape[0] != w.shape[1]:
    raise ValueError(f"graph matrix must be square (U, U), got {w.shape}")
  s = (w + w.T) / 2.0
  np.fill_diagonal(s, np.nan)
  return s


def top_edges(matrix: np.ndarray, fraction: float = 0.1) -> np.ndarray:
  """(U, U) symmetric weighted adjacency keeping the top ``fraction`` of undirected edges.

  Exactly k = max(1, round(fraction · U(U−1)/2)) edges are kept when that many have positive
  finite weight (fewer otherwise); ties at the cut are broken by pair order (row-major i < j),
  so the result is deterministic. Dropped entries and the diagonal are 0.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"edge fraction must be in (0, 1], got {fraction}")
  s = symmetrize(matrix)
  n = s.shape[0]
  iu, ju = np.triu_indices(n, k=1)
  w = s[iu, ju]
  ok = np.isfinite(w) & (w > 0)
  n_pairs = iu.size
  k = max(1, int(np.floor(fraction * n_pairs + 0.5))) if n_pairs else 0
  key = np.where(ok, -w, np.inf)
  keep = np.argsort(key, kind="stable")[:k]
  keep = keep[ok[keep]]
  a = np.zeros((n, n))
  a[iu[keep], ju[keep]] = w[keep]
  a[ju[keep], iu[keep]] = w[keep]
  return a


def _check_adjacency(adj: np.ndarray) -> np.ndarray:
  a = np.asarray(adj, dtype=np.float64)
  if a.ndim != 2 or a.shape[0] != a.shape[1]:
    raise ValueError(f"adjacency must be square, got shape {a.shape}")
  if not np.all(np.isfinite(a)) or np.any(a < 0):
    raise ValueError("adjacency must be finite and non-negative (0 = no edge)")
  if not np.allclose(a, a.T):
    raise ValueError("adjacency must be symmetric (undirected graph)")
  return a


def shortest_path_lengths(adj: np.ndarray, *, normalize: bool = True) -> np.ndarray:
  """(U, U) weighted shortest-path lengths with edge length 1/w (inf if unreachable, 0 on diag).

  Floyd–Warshall: a loop over intermediate nodes, each step a (U, U) vectorised relaxation.
  """
  a = _check_adjacency(adj)
  if normalize and a.max() > 0:
    a = a / a.max()
  with np.errstate(divide="ignore"):
    d = np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), np.inf)
  np.fill_diagonal(d, 0.0)
  for k in range(d.shape[0]):
    d = np.minimum(d, d[:, k:k + 1] + d[k:k + 1, :])
  return d


def global_efficiency(adj: np.ndarray, *, normalize: bool = True) -> float:
  """Weighted global efficiency (see module docstring); 0 for fewer than 2 nodes' worth of pairs."""
  d = shortest_path_lengths(adj, normalize=normalize)
  n = d.shape[0]
  if n < 2:
    return 0.0
  off = ~np.eye(n, dtype=bool)
  with np.errstate(divide="ignore"):
    inv = np.where(np.isfinite(d) & off, 1.0 / np.where(d > 0, d, 1.0), 0.0)
  return float(inv.sum() / (n * (n - 1)))


def modularity(adj: np.ndarray, communities: np.ndarray) -> float:
  """Newman modularity Q of a partition (labels (U,); label −1 = isolated, no contribution).

  Nodes labelled −1 must have no edges, otherwise they would silently drop out of Q.
  """
  a = _check_adjacency(adj)
  c = np.asarray(communities)
  if c.shape != (a.shape[0],):
    raise ValueError(f"communities must be (U,) = ({a.shape[0]},), got {c.shape}")
  two_m = a.sum()
  if two_m == 0:
    return 0.0
  k = a.sum(1)
  if np.any((c == -1) & (k > 0)):
    raise ValueError(f"nodes {np.flatnonzero((c == -1) & (k > 0))[:5].tolist()} are labelled -1 "
                     "(isolated) but have edges")
  same = (c[:, None] == c[None, :]) & (c[:, None] >= 0)
  b = a - np.outer(k, k) / two_m
  return float((b * same).sum() / two_m)


def _split(b: np.ndarray, members: np.ndarray, tol: float):
  """Leading-eigenvector bisection of ``members``; returns (s ±1 array, gain) or None."""
  bg = b[np.ix_(members, members)]
  bg = bg - np.diag(bg.sum(1))  # generalized modularity matrix of the subgroup
  vals, vecs = np.linalg.eigh(bg)
  if vals[-1] <= tol:
    return None
  s = np.where(vecs[:, -1] >= 0, 1.0, -1.0)
  # Fine-tuning: flip the single node that most increases sᵀBs until no flip helps.
  bs = bg @ s
  diag = np.diag(bg)
  for _ in range(4 * members.size):
    gain = -4.0 * s * bs + 4.0 * diag  # change of sᵀBs when flipping each node
    i = int(np.argmax(gain))
    if gain[i] <= tol:
      break
    bs = bs - 2.0 * s[i] * bg[:, i]
    s[i] = -s[i]
  total = float(s @ bg @ s)
  if total <= tol or np.all(s == s[0]):
    return None
  return s, total


def leading_eigenvector_communities(adj: np.ndarray, *, tol: float = 1e-10) -> np.ndarray:
  """(U,) community labels 0..C−1 (−1 for isolated nodes) by repeated leading-eigenvector splits.

  Labels are numbered by each community's smallest node index, so the output is deterministic.
  """
  a = _check_adjacency(adj)
  n = a.shape[0]
  k = a.sum(1)
  labels = np.full(n, -1)
  active = np.flatnonzero(k > 0)
  if active.size == 0:
    return labels
  two_m = a.sum()
  b = a - np.outer(k, k) / two_m
  pending, done = [active], []
  while pending:
    g = pending.pop()
    res = _split(b, g, tol * two_m) if g.size > 1 else None
    if res is None:
      done.append(g)
    else:
      s, _ = res
      pending.extend([g[s > 0], g[s < 0]])
  done.sort(key=lambda g: int(g.min()))
  for c, g in enumerate(done):
    labels[g] = c
  return labels


def graph_metrics(matrix: np.ndarray, *, fraction: float = 0.1, normalize: bool = True) -> dict:
  """Efficiency and modularity of the top-``fraction`` graph of a (U, U) atom matrix.

  Returns:
    dict with "n_nodes", "n_edges", "edge_fraction", "min_kept_weight" (nats), "efficiency",
    "modularity" (Q), "n_communities" (excluding isolated nodes), "n_isolated", "communities" (U,).
  """
  adj = top_edges(matrix, fraction)
  labels = leading_eigenvector_communities(adj)
  kept = adj[np.triu_indices(adj.shape[0], 1)]
  kept = kept[kept > 0]
  return {
      "n_nodes": int(adj.shape[0]),
      "n_edges": int(kept.size),
      "edge_fraction": float(fraction),
      "min_kept_weight": float(kept.min()) if kept.size else float("nan"),
      "efficiency": global_efficiency(adj, normalize=normalize),
      "modularity": modularity(adj, labels),
      "n_communities": int(labels.max() + 1) if (labels >= 0).any() else 0,
      "n_isolated": int(np.sum(labels < 0)),
      "communities": labels,
  }


def compare_graphs(atoms: np.ndarray, *, fraction: float = 0.1) -> dict:
  """graph_metrics of the sts (synergy) and rtr (redundancy) matrices of a (U, U, 16) array."""
  from synergy_jax.analysis.ranking import atom_matrix
  return {"synergy": graph_metrics(atom_matrix(atoms, "sts"), fraction=fraction),
          "redundancy": graph_metrics(atom_matrix(atoms, "rtr"), fraction=fraction)}
