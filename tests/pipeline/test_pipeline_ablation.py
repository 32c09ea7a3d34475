"""The ablation evaluation end to end (``run.py --experiment=ablation --quick``) on the embedded
default model: divergence curves, AUC ratio, perturbation accuracy and their consistency.

Independent references: orders are checked against head_scores.csv, AUCs against numpy's
trapezoid rule, σ = 0 accuracy against ``tasks.evaluate`` (a separate batching of the same
examples), and a split-batch divergence run against the single-batch one.
"""
import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from synergy_jax import tasks
from synergy_jax.pipeline import ablation, capture
from synergy_jax.tasks import batching

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "synergy_jax" / "assets" / "default"
# Before the default model is exported a developer may point this at another model directory.
MODEL = os.environ.get("SYNERGY_JAX_TEST_MODEL", "default")
QUICK_FRACTIONS = [0.0, 0.25, 0.5, 0.75, 1.0]
QUICK_SIGMAS = [0.0, 0.5, 2.0]
QUICK_LEVELS = [1, 3, 5]
QUICK_FAMILIES = ["add", "chain"]
QUICK_EXAMPLES = 8
QUICK_SEEDS = 3


def _need_model():
  if MODEL == "default" and not (DEFAULT / "config.json").exists():
    pytest.skip(f"{DEFAULT}/config.json is absent (the default model is not exported yet)")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  _need_model()
  base = tmp_path_factory.mktemp("ablation")
  cmd = [sys.executable, "run.py", "--experiment=ablation", "--quick", f"--model={MODEL}",
         f"--out={base / 'run'}", f"--cache_dir={base / 'cache'}", "--noprogress"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((base / "run" / "results.json").read_text())
  with open(base / "run" / "head_scores.csv") as f:
    scores = np.array([float(r["score"]) for r in csv.DictReader(f)])
  return base / "run", res, scores


def test_files(run):
  path, res, _ = run
  for name in ("results.json", "summary.md", "flags.json", "divergence.csv", "perturbation.csv",
               "head_scores.csv", "perturbation.npz", "divergence.png", "perturbation.png",
               "perturbation_add.png", "perturbation_chain.png"):
    assert (path / name).stat().st_size > 0, name
  summary = (path / "summary.md").read_text()
  assert "AUC ratio synergistic/random" in summary and "Perturbation" in summary
  assert res["ranking"] == "rank_difference"
  # The typed summary read back from results.json rebuilds summary.md exactly.
  typed = ablation.read_ablation(path)
  assert isinstance(typed.divergence, ablation.DivergenceSummary)
  assert isinstance(typed.perturbation, ablation.PerturbationSummary)
  assert typed.perturbation.head_sets == res["perturbation"]["head_sets"]
  assert typed.wall_s == res["wall_s"] > 0
  assert ablation.summary_markdown(typed) == summary
  with open(path / "head_scores.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["name"] for r in rows] == res["units"]["names"]
  assert {r["kind"] for r in rows} == {"head"}
  # The heads-only noise is scaled by the heads' RMS alone.
  p = res["perturbation"]
  assert list(p["noise_by_kind"]) == ["heads"]
  assert p["noise_by_kind"]["heads"]["weight_rms"] == p["weight_rms"]
  # flags.json: the values --quick used, and the flag values they replaced
  flags = json.loads((path / "flags.json").read_text())
  assert [float(f) for f in flags["fractions"]] == QUICK_FRACTIONS
  assert flags["quick_overrides"]["fractions"]["flag"] != flags["fractions"]


def test_results_of_earlier_versions_read_as_heads(run, tmp_path):
  """A results.json of the heads-only format (num_layers and num_heads, no "units", no
  "noise_by_kind") reads back with the head grid as its unit table."""
  path, res, _ = run
  from synergy_jax import models
  from synergy_jax.analysis.units import Units
  cfg = models.load_config(MODEL)
  old = {k: v for k, v in res.items() if k != "units"}
  old = {**old, "num_layers": cfg.num_layers, "num_heads": cfg.num_heads,
         "perturbation": {k: v for k, v in res["perturbation"].items() if k != "noise_by_kind"},
         "config": {k: v for k, v in res["config"].items()
                    if k not in ("units", "expert_activity")}}
  (tmp_path / "results.json").write_text(json.dumps(old))
  typed = ablation.read_ablation(tmp_path)
  assert typed.unit_table == Units.grid(cfg.num_layers, cfg.num_heads)
  assert typed.units == res["units"]
  assert typed.perturbation.noise_by_kind is None
  assert ablation.summary_markdown(typed) == (path / "summary.md").read_text()


def test_divergence_curves(run):
  _, res, _ = run
  d = res["divergence"]
  assert d["fractions"] == QUICK_FRACTIONS
  rnd = np.array(d["random"]["curves"])
  assert rnd.shape == (5, len(QUICK_FRACTIONS))
  # Nothing ablated: exactly zero, not merely small.
  assert d["synergistic"][0] == 0.0 and d["redundant"][0] == 0.0 and np.all(rnd[:, 0] == 0.0)
  # Something ablated changes the next-token distributions (KL > 0).
  assert min(d["synergistic"][1:] + d["redundant"][1:]) > 0 and np.all(rnd[:, 1:] > 0)
  # Fraction 1 ablates every head in every order: the same mask, the same divergence.
  np.testing.assert_allclose(rnd[:, -1], d["synergistic"][-1], rtol=1e-6)
  np.testing.assert_allclose(d["redundant"][-1], d["synergistic"][-1], rtol=1e-6)
  np.testing.assert_allclose(d["random"]["mean"], rnd.mean(0), rtol=1e-12)
  np.testing.assert_allclose(d["random"]["sd"], rnd.std(0, ddof=1), rtol=1e-12)
  # All fractions × orders of the single prompt batch share compiled code: far fewer XLA
  # compilations (the scorer plus a few small helpers) than fractions, let alone masks.
  assert d["batches"] == 1 and 1 <= d["compilations"] < len(QUICK_FRACTIONS)


def test_orders_follow_the_ranking(run):
  _, res, score = run
  orders = res["divergence"]["orders"]
  from synergy_jax import models
  cfg = models.load_config(MODEL)
  n = cfg.num_layers * cfg.num_heads
  assert len(score) == n and res["units"]["which"] == "heads"
  assert res["units"]["names"] == [f"L{u // cfg.num_heads} H{u % cfg.num_heads}"
                                   for u in range(n)]
  syn, red = np.array(orders["synergistic"]), np.array(orders["redundant"])
  for o in [syn, red, *np.array(orders["random"])]:
    assert sorted(o.tolist()) == list(range(n))
  finite = np.isfinite(score)
  s_syn, s_red = score[syn][:finite.sum()], score[red][:finite.sum()]
  assert np.all(np.diff(s_syn) <= 0) and np.all(np.diff(s_red) >= 0)
  rnd = np.array(orders["random"])
  assert len({tuple(r) for r in rnd}) == rnd.shape[0]  # distinct random orders


def test_auc_and_ratio(run):
  _, res, _ = run
  d = res["divergence"]
  fr = np.array(d["fractions"])
  trap = lambda y: float(np.sum(np.diff(fr) * (np.asarray(y)[1:] + np.asarray(y)[:-1]) / 2))
  assert d["auc"]["synergistic"] == pytest.approx(trap(d["synergistic"]), rel=1e-12)
  assert d["auc"]["redundant"] == pytest.approx(trap(d["redundant"]), rel=1e-12)
  rand_auc = [trap(c) for c in d["random"]["curves"]]
  np.testing.assert_allclose(d["auc"]["random"], rand_auc, rtol=1e-12)
  r = res["auc_ratio"]
  assert r["ratio"] == pytest.approx(d["auc"]["synergistic"] / np.mean(rand_auc), rel=1e-12)
  assert r["ci_low"] <= r["ci_high"] and r["n_random"] == 5
  lo, hi = d["auc"]["synergistic"] / max(rand_auc), d["auc"]["synergistic"] / min(rand_auc)
  assert lo - 1e-12 <= r["ci_low"] and r["ci_high"] <= hi + 1e-12  # means of resampled orders


def test_perturbation_table(run):
  path, res, score = run
  p = res["perturbation"]
  assert p["sigmas"] == QUICK_SIGMAS and p["levels"] == QUICK_LEVELS
  assert p["conditions"] == ["synergistic", "redundant", "random"]
  assert p["n_seeds"] == QUICK_SEEDS and p["families"] == QUICK_FAMILIES
  for cond in p["conditions"]:
    m = np.array(p["accuracy"][cond]["mean"])
    lo, hi = np.array(p["accuracy"][cond]["ci_low"]), np.array(p["accuracy"][cond]["ci_high"])
    assert m.shape == lo.shape == hi.shape == (len(QUICK_SIGMAS), len(QUICK_LEVELS))
    assert np.all((0 <= lo) & (lo <= m) & (m <= hi) & (hi <= 1))
    # σ = 0 is the unperturbed model in every condition.
    assert p["accuracy"][cond]["mean"][0] == p["accuracy"]["synergistic"]["mean"][0]
  # 1 unperturbed + 3 conditions × 2 non-zero σ × 3 seeds generations, far fewer compilations.
  assert p["generate_calls"] == 1 + 3 * 2 * QUICK_SEEDS
  assert 1 <= p["compilations"] < p["generate_calls"] / 2
  correct = np.load(path / "perturbation.npz")["correct"]
  n_ex = len(QUICK_FAMILIES) * len(QUICK_LEVELS) * QUICK_EXAMPLES
  assert correct.shape == (3, len(QUICK_SIGMAS), QUICK_SEEDS, n_ex)
  np.testing.assert_allclose(np.array(p["seed_accuracy"]["random"]), correct[2].mean(-1))
  # Head sets: top / bottom quarter of the score, random sets of the same size.
  k = int(np.floor(0.25 * len(score) + 0.5))
  sets = p["head_sets"]
  assert len(sets["synergistic"]) == len(sets["redundant"]) == k
  assert all(len(s) == k for s in sets["random"]) and len(sets["random"]) == QUICK_SEEDS
  syn_scores = score[sets["synergistic"]]
  others = np.delete(score, sets["synergistic"])
  assert np.nanmin(syn_scores) >= np.nanmax(others)
  assert not set(sets["synergistic"]) & set(sets["redundant"])


def test_unperturbed_accuracy_matches_tasks_evaluate(run):
  _, res, _ = run
  from synergy_jax import models
  model, tok = models.load(MODEL), models.load_tokenizer(MODEL)
  fam = res["perturbation"]["by_family"]
  for f, k in (("add", 5), ("chain", 1)):  # one family × level batch each (compiles are slow)
    i = fam[f]["levels"].index(k)
    expected = tasks.evaluate(model, tok, f, k, QUICK_EXAMPLES, seed=2025)
    assert fam[f]["synergistic"]["mean"][0][i] == pytest.approx(expected, abs=1e-12), (f, k)


def test_split_batches_one_compilation_each():
  """Split prompt batches give the single batch's per-prompt divergences, and once the small
  helper programs are compiled, each batch compiles exactly once however many fractions and
  orders it evaluates."""
  _need_model()
  from synergy_jax import interventions, models
  model, tok = models.load(MODEL), models.load_tokenizer(MODEL)
  prompts = [p.text for p in tasks.prompt_suite()[:4]]
  rng = np.random.default_rng(0)
  cont = rng.integers(4, model.config.vocab_size, size=(4, 6))
  tokens, plen = batching.with_continuations(capture.encode_prompts(tok, prompts), cont,
                                             model.config)
  n = model.config.num_layers * model.config.num_heads
  orders = interventions.ablation_orders(np.arange(n, dtype=float), n_random=3, seed=1)
  fr = [0.0, 0.5, 1.0]
  one = ablation.divergence(model, tokens, plen, orders, fr)
  two = ablation.divergence(model, tokens, plen, orders, fr, divergence_batch=2)
  assert two["batches"] == 2
  for k in orders:
    np.testing.assert_allclose(two[k], one[k], rtol=1e-4, atol=1e-7)
    assert np.all(one[k][:, 0] == 0.0)
  more = interventions.ablation_orders(rng.normal(size=n), n_random=8, seed=2)
  many = ablation.divergence(model, tokens, plen, more, np.linspace(0, 1, 9),
                             divergence_batch=2)
  assert many["compilations"] == 2  # 10 orders × 9 fractions: still one program per batch


def test_divergence_summary_masks_nonfinite_prompts_explicitly_and_lists_them():
  rng = np.random.default_rng(0)
  fr = np.array([0.0, 0.5, 1.0])
  per = {"synergistic": rng.random((1, 3, 4)), "redundant": rng.random((1, 3, 4)),
         "random": rng.random((3, 3, 4))}
  per["synergistic"][0, 1, 2] = np.nan  # one prompt's divergence at fraction 0.5
  div = {**per, "fractions": fr, "compilations": 1, "batches": 1}
  orders = {"synergistic": np.arange(4), "redundant": np.arange(4)[::-1],
            "random": np.stack([rng.permutation(4) for _ in range(3)])}
  d = ablation.summarise_divergence(div, orders)
  kept = np.delete(per["synergistic"][0, 1], 2)
  assert d.synergistic[1] == pytest.approx(kept.mean())  # mean of the other three prompts
  assert d.prompt_sd["synergistic"][1] == pytest.approx(kept.std(ddof=1))
  assert d.synergistic[0] == pytest.approx(per["synergistic"][0, 0].mean())
  assert d.nonfinite == [{"order": "synergistic", "order_index": 0, "fraction": 0.5,
                             "prompt": 2}]
  np.testing.assert_array_equal(d.n_prompts_used["synergistic"], [[4, 3, 4]])
  assert np.isfinite(d.auc["synergistic"])
  r = ablation.auc_ratios(d, n_boot=50, ci_level=0.9, seed=0)["synergistic"]
  assert r["ratio"] == pytest.approx(d.auc["synergistic"] / np.mean(d.auc["random"]), rel=1e-12)
  per["random"][1, 2, :] = np.inf  # every prompt of one random order at fraction 1
  with pytest.raises(ValueError, match="random order 1 at ablated fraction 1"):
    ablation.summarise_divergence(div, orders)
