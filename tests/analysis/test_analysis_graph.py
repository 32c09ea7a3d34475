"""Thresholding, weighted efficiency and modularity against hand-computed graphs and networkx."""
import networkx as nx
import numpy as np
import pytest

from synergy_jax.analysis import graph


def test_top_edges_keeps_strongest_fraction():
  w = np.array([[np.nan, 5, 1, 2], [5, np.nan, 3, -1], [1, 3, np.nan, 4], [2, -1, 4, np.nan]],
               dtype=float)
  a = graph.top_edges(w, fraction=0.5)  # 6 pairs → 3 edges: 5, 4, 3
  expected = np.zeros((4, 4))
  for i, j, v in [(0, 1, 5), (2, 3, 4), (1, 2, 3)]:
    expected[i, j] = expected[j, i] = v
  np.testing.assert_array_equal(a, expected)
  a_all = graph.top_edges(w, fraction=1.0)
  assert a_all[1, 3] == 0.0  # negative weight never kept
  # Asymmetric input is averaged.
  w2 = np.array([[0, 1.0], [3.0, 0]])
  assert graph.top_edges(w2, 1.0)[0, 1] == 2.0


def test_efficiency_hand_path_graph():
  # Path 0 -1- 1 -0.5- 2 (weights), normalize=False: lengths 1 and 2.
  a = np.zeros((3, 3))
  a[0, 1] = a[1, 0] = 1.0
  a[1, 2] = a[2, 1] = 0.5
  d = graph.shortest_path_lengths(a, normalize=False)
  np.testing.assert_allclose(d, [[0, 1, 3], [1, 0, 2], [3, 2, 0]])
  # E = 1/6 · 2 · (1 + 1/3 + 1/2).
  assert graph.global_efficiency(a, normalize=False) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
  # normalize divides weights by max (1 here): unchanged.
  assert graph.global_efficiency(a) == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
  # Disconnected node adds zero-efficiency pairs.
  b = np.zeros((4, 4))
  b[:3, :3] = a
  assert graph.global_efficiency(b, normalize=False) == pytest.approx(2 * (1 + 1 / 3 + 1 / 2) / 12)


def test_efficiency_matches_networkx_weighted_and_unweighted():
  rng = np.random.default_rng(0)
  n = 12
  w = rng.uniform(0.1, 1.0, size=(n, n))
  w = (w + w.T) / 2
  a = graph.top_edges(w, 0.3)
  g = nx.Graph()
  g.add_nodes_from(range(n))
  for i, j in zip(*np.nonzero(np.triu(a))):
    g.add_edge(int(i), int(j), weight=a[i, j], length=1.0 / a[i, j])
  lengths = dict(nx.all_pairs_dijkstra_path_length(g, weight="length"))
  ref = sum(1.0 / lengths[i][j] for i in range(n) for j in range(n) if i != j and j in lengths[i])
  assert graph.global_efficiency(a, normalize=False) == pytest.approx(ref / (n * (n - 1)))
  binary = (a > 0).astype(float)
  assert graph.global_efficiency(binary) == pytest.approx(nx.global_efficiency(g))


def test_modularity_two_cliques_hand_and_networkx():
  # Two triangles joined by one edge: Q = 5/14 for the natural split (hand computation:
  # m = 7; each triangle has 3 internal edges and total degree 7 → Q = 2·(3/7 − (7/14)²)).
  g = nx.Graph([(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), (2, 3)])
  a = nx.to_numpy_array(g, nodelist=range(6))
  labels = graph.leading_eigenvector_communities(a)
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])
  q = graph.modularity(a, labels)
  assert q == pytest.approx(2 * (3 / 7 - 0.25))
  assert q == pytest.approx(nx.community.modularity(g, [{0, 1, 2}, {3, 4, 5}]))


def test_modularity_weighted_matches_networkx_and_karate():
  g = nx.karate_club_graph()
  a = nx.to_numpy_array(g, nodelist=range(34), weight=None)
  labels = graph.leading_eigenvector_communities(a)
  comms = [set(np.flatnonzero(labels == c).tolist()) for c in range(labels.max() + 1)]
  q = graph.modularity(a, labels)
  assert q == pytest.approx(nx.community.modularity(g, comms, weight=None))
  # Newman (2006) reports Q = 0.419 for the leading-eigenvector division of the karate club.
  assert q > 0.39
  rng = np.random.default_rng(2)
  w = rng.uniform(size=(10, 10))
  w = graph.top_edges((w + w.T) / 2, 0.5)
  lab = graph.leading_eigenvector_communities(w)
  gw = nx.from_numpy_array(w)
  comms = [set(np.flatnonzero(lab == c).tolist()) for c in range(lab.max() + 1)]
  iso = set(np.flatnonzero(lab < 0).tolist())
  if iso:
    comms.append(iso)
  assert graph.modularity(w, lab) == pytest.approx(nx.community.modularity(gw, comms))


def test_isolated_nodes_and_metrics_dict():
  a = np.zeros((5, 5))
  a[0, 1] = a[1, 0] = 1.0
  a[2, 3] = a[3, 2] = 1.0
  lab = graph.leading_eigenvector_communities(a)
  assert lab[4] == -1 and lab[0] == lab[1] and lab[2] == lab[3] and lab[0] != lab[2]
  m = graph.graph_metrics(a, fraction=0.2)
  assert m["n_edges"] == 2 and m["n_isolated"] == 1 and m["n_communities"] == 2
  assert m["modularity"] == pytest.approx(0.5)
  with pytest.raises(ValueError, match="isolated"):
    graph.modularity(a, np.array([0, 0, 1, 1, -1]) * 0 - 1)
