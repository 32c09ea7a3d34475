"""Every plot function runs on small synthetic data and writes a non-empty PNG."""
import numpy as np
import pytest

from synergy_jax import plots
from synergy_jax.analysis import profile

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L, H = 3, 2
N = L * H


def _check_png(path):
  data = path.read_bytes()
  assert data[:8] == PNG_MAGIC and len(data) > 1000
  assert not list(path.parent.glob(".*.tmp"))  # atomic writer left no temp file


def test_heatmaps_and_rank(tmp_path):
  rng = np.random.default_rng(0)
  m = rng.uniform(size=(N, N))
  np.fill_diagonal(m, np.nan)
  fig = plots.pair_heatmaps({"synergy (sts)": m, "redundancy (rtr)": m.T}, H,
                            save=tmp_path / "heat.png")
  assert len(fig.axes) >= 2
  _check_png(tmp_path / "heat.png")
  plots.head_rank_heatmap(rng.normal(size=N), L, H, save=tmp_path / "rank.png")
  _check_png(tmp_path / "rank.png")
  with pytest.raises(ValueError, match="multiple of"):
    plots.pair_heatmaps({"x": np.zeros((5, 5))}, H)
  # non-negative MMI atoms: sequential map; CCS atoms with negative entries: diverging, centred
  assert fig.axes[0].images[0].get_cmap().name == "viridis"
  signed = m - 0.3
  fig = plots.pair_heatmaps({"synergy (sts)": signed}, H, title="trained model x")
  im = fig.axes[0].images[0]
  assert im.get_cmap().name == "RdBu_r"
  lim = np.nanmax(np.abs(signed))
  assert im.norm.vmin == pytest.approx(-lim) and im.norm.vmax == pytest.approx(lim)
  assert fig._suptitle.get_text() == "trained model x"


def test_unit_tables_heatmap_lines_and_per_layer_scores(tmp_path):
  # heads of layers 0-1, then experts of layers 0 and 2 (2 routed + 1 shared each)
  layers = np.array([0, 0, 1, 1, 0, 0, 0, 2, 2, 2])
  kinds = np.array(["head"] * 4 + ["expert"] * 6)
  shared = np.array([False] * 6 + [True, False, False, True])
  m = np.random.default_rng(2).uniform(size=(10, 10))
  fig = plots.pair_heatmaps({"sts": m}, layers)
  ax = fig.axes[0]
  # a line wherever the layer changes: before units 2, 4 and 7
  horizontal = [ln.get_ydata()[0] for ln in ax.lines if ln.get_ydata()[0] == ln.get_ydata()[1]]
  assert sorted(horizontal) == [1.5, 3.5, 6.5]
  assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "0", "2"]
  with pytest.raises(ValueError, match="10 entries for 9 units"):
    plots.pair_heatmaps({"x": np.zeros((9, 9))}, layers)
  scores = np.linspace(-1, 1, 10)
  scores[5] = np.nan
  fig = plots.unit_scores_by_layer(scores, layers, kinds, shared, 3, title="units",
                                   save=tmp_path / "units.png")
  _check_png(tmp_path / "units.png")
  labels = fig.axes[0].get_legend_handles_labels()[1]
  assert labels == ["head", "routed expert", "shared expert"]
  ax = fig.axes[0]
  drawn = sum(len(c.get_offsets()) for c in ax.collections)
  assert drawn == 10  # 9 finite points and one cross for the NaN unit
  with pytest.raises(ValueError, match=r"must all be \(U,\)"):
    plots.unit_scores_by_layer(scores[:9], layers, kinds, shared, 3)


def test_profiles_and_emergence(tmp_path):
  rng = np.random.default_rng(1)
  p1 = profile.layer_profile(rng.normal(size=N), L, H)
  p2 = profile.layer_profile(rng.normal(size=N), L, H)
  plots.layer_profiles({"trained": p1, "random init": p2}, save=tmp_path / "profile.png")
  _check_png(tmp_path / "profile.png")
  plots.emergence_profiles([0, 100, 200], [p1.mean, p2.mean, p1.mean], p1.depth,
                           save=tmp_path / "emergence.png")
  _check_png(tmp_path / "emergence.png")


def test_diagnostics_and_graph(tmp_path):
  rng = np.random.default_rng(2)
  plots.diagnostics_scatter(rng.normal(size=N), rng.normal(size=N), rng.uniform(size=N),
                            rho_syn_red=-0.3, rho_ac_syn=0.1, save=tmp_path / "diag.png")
  _check_png(tmp_path / "diag.png")
  plots.graph_metrics_bar({"synergy": {"efficiency": 0.4, "modularity": 0.3},
                           "redundancy": {"efficiency": 0.5, "modularity": 0.2}},
                          save=tmp_path / "graph.png")
  _check_png(tmp_path / "graph.png")


def test_phase_sweep_and_ablation(tmp_path):
  lv = np.arange(1, 6)
  op = {"mean": np.array([0.2, 0.2, 0.5, 0.8, 0.8]), "ci_low": np.array([0.1] * 5),
        "ci_high": np.array([0.9] * 5)}
  acc = {"mean": np.linspace(1, 0.2, 5), "ci_low": np.linspace(0.9, 0.1, 5),
         "ci_high": np.linspace(1, 0.3, 5)}
  xs = np.linspace(1, 5, 50)
  plots.phase_sweep(lv, op, np.array([0.01, 0.02, 0.05, 0.02, 0.01]), acc,
                    fit_curve=(xs, 0.2 + 0.6 / (1 + np.exp(-(xs - 3) / 0.3))), threshold=3.0,
                    threshold_ci=(2.8, 3.2), save=tmp_path / "sweep.png")
  _check_png(tmp_path / "sweep.png")
  fr = np.linspace(0, 1, 6)
  plots.divergence_curves(fr, fr ** 0.5, fr ** 2, np.stack([fr, fr * 1.1, fr * 0.9]),
                          save=tmp_path / "div.png")
  _check_png(tmp_path / "div.png")
  sig = np.array([0.0, 0.1, 0.2])
  accs = {c: np.linspace(1, 0.3, 9).reshape(3, 3) for c in ("synergistic", "redundant", "random")}
  plots.perturbation_accuracy(sig, [1, 2, 3], accs,
                              ci={"random": (accs["random"] - 0.1, accs["random"] + 0.1)},
                              save=tmp_path / "perturb.png")
  _check_png(tmp_path / "perturb.png")
  with pytest.raises(ValueError, match=r"\(S, K\)"):
    plots.perturbation_accuracy(sig, [1, 2], accs)
