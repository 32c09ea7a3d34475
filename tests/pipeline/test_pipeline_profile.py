"""End-to-end profile and emergence runs in --quick mode on the embedded default model, checked
for the files they promise and their internal consistency; plus a resumed run reusing the cache."""
import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from synergy_jax.pipeline import profile as prof
from synergy_jax.analysis.units import Units

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "synergy_jax" / "assets" / "default"

needs_default = pytest.mark.skipif(
    not (DEFAULT / "config.json").exists(),
    reason=f"the shipped default model is missing from {DEFAULT}")


def run_py(*args, timeout=600):
  cmd = [sys.executable, "run.py", "--noprogress", *args]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
  return proc


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("profile")
  cache = tmp_path_factory.mktemp("cache")
  run_py("--experiment=profile", "--quick", f"--out={out}", f"--cache_dir={cache}")
  return out, cache


@needs_default
def test_profile_writes_consistent_results(profile_run):
  out, _ = profile_run
  for name in ("results.json", "head_scores.csv", "head_scores_random.csv", "layer_profile.csv",
               "atoms.npz", "summary.md", "flags.json", "heatmaps.png", "head_ranks.png",
               "layer_profile.png", "diagnostics.png", "graph_metrics.png"):
    assert (out / name).stat().st_size > 0, name
  res = json.loads((out / "results.json").read_text())
  units = res["units"]
  n, layers, heads = units["n_units"], units["num_layers"], units["num_heads"]
  assert n == layers * heads >= 48
  assert len(res["layer_profile"]) == layers
  assert len(res["random"]["layer_profile"]) == layers
  assert -1 <= res["syn_red_spearman"]["rho"] <= 1
  for g in ("synergy", "redundancy"):
    assert 0 <= res["graph"][g]["efficiency"] <= 1
    assert -0.5 <= res["graph"][g]["modularity"] <= 1
  assert res["surrogates"]["n_surrogates"] == 20
  rows = read_csv(out / "head_scores.csv")
  assert len(rows) == n
  assert [(int(r["layer"]), int(r["head"])) for r in rows] == [divmod(u, heads) for u in range(n)]
  excluded = {e["unit"] for e in units["excluded"]}
  ranks = [float(r["synergy_rank"]) for r in rows if int(r["unit"]) not in excluded]
  assert sorted(ranks) == list(range(1, len(ranks) + 1)), "synergy ranks are not a permutation"
  for r in rows:
    if int(r["unit"]) in excluded:
      continue
    assert float(r["rank_score"]) == pytest.approx(float(r["synergy_rank"]) -
                                                   float(r["redundancy_rank"]))
  # The layer profile is the per-layer mean of the min-max scaled rank score of the table.
  score = np.array([float(r["rank_score"]) for r in rows])
  scaled = (score - np.nanmin(score)) / (np.nanmax(score) - np.nanmin(score))
  np.testing.assert_allclose(np.nanmean(scaled.reshape(layers, heads), 1), res["layer_profile"],
                             rtol=1e-9)
  atoms = np.load(out / "atoms.npz")
  assert atoms["atoms"].shape == (n, n, 16)
  assert atoms["acts"].shape[1] == n and atoms["acts"].shape[2] == 40
  summary = (out / "summary.md").read_text()
  assert summary.startswith("# Synergistic-core profile\n\n**Verdict (trained).**")
  assert res["verdict"] in summary and "Confounds" in summary
  # Calibrated null, excess atoms, intervals, depth trend, reliability, matched baseline.
  assert res["null"] == "trial" and res["surrogates"]["null"] == "trial"
  assert res["baseline_inputs"] == "matched" and res["random"]["baseline_inputs"] == "matched"
  assert len(res["excess"]["layer_profile"]) == layers
  for score in ("rank_difference", "balance", "excess"):
    tr = res["depth_trend"][score]
    assert 0 < tr["p_value"] <= 1 and tr["ci"][0] <= tr["curvature"] <= tr["ci"][1]
    ci = res["layer_profile_ci"][score]
    lo, hi, est = map(np.asarray, (ci["ci_low"], ci["ci_high"], ci["estimate"]))
    assert lo.shape == (layers,) and np.all(lo <= hi) and np.all(np.isfinite(est))
    assert -1 <= res["reliability"][score]["rho"] <= 1
    assert score in res["random"]["depth_trend"]
  np.testing.assert_allclose(res["layer_profile_ci"]["rank_difference"]["estimate"],
                             res["layer_profile"], rtol=1e-9)
  sts_ex = np.array([float(r["sts_excess"]) for r in rows])
  assert np.all(np.isfinite(sts_ex))
  # The matched baseline was teacher-forced on exactly the trained model's continuations.
  gens = json.loads((out / "generations.json").read_text())
  assert json.loads((out / "generations_random.json").read_text()) == gens
  assert (out / "excess_profile.png").stat().st_size > 0


@needs_default
def test_profile_rerun_reuses_cache(profile_run, tmp_path):
  out, cache = profile_run
  before = sorted(p.name for p in cache.iterdir())
  mtimes = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
  out2 = tmp_path / "again"
  run_py("--experiment=profile", "--quick", f"--out={out2}", f"--cache_dir={cache}")
  assert sorted(p.name for p in cache.iterdir()) == before
  assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == mtimes
  a = json.loads((out / "results.json").read_text())
  b = json.loads((out2 / "results.json").read_text())
  assert a["layer_profile"] == b["layer_profile"]
  assert a["surrogates"] == b["surrogates"]


@needs_default
def test_emergence_quick(tmp_path):
  out = tmp_path / "emergence"
  run_py("--experiment=emergence", "--quick", f"--out={out}", f"--cache_dir={tmp_path / 'c'}")
  res = json.loads((out / "results.json").read_text())
  steps = res["steps"]
  assert steps[0] == 0 and len(steps) >= 9 and steps == sorted(steps)
  layers = len(res["depth"])
  assert all(len(res["layer_profile"][str(s)]) == layers for s in steps)
  rows = read_csv(out / "emergence.csv")
  assert len(rows) == len(steps) * layers
  assert (out / "emergence.png").stat().st_size > 0


def test_profile_prompts_and_config_errors(tmp_path):
  quick = prof.profile_prompts(per_category=2)
  assert len(quick) == 12
  assert len(prof.profile_prompts()) >= 60
  f = tmp_path / "p.jsonl"
  f.write_text('{"text": "one"}\n{"text": "two", "category": "x"}\n')
  assert prof.profile_prompts(str(f)) == ["one", "two"]
  with pytest.raises(ValueError, match="ranking"):
    prof.ProfileConfig(ranking="nope")
  with pytest.raises(ValueError, match="n_surrogates"):
    prof.ProfileConfig(n_surrogates=-1)
  with pytest.raises(ValueError, match=r"3 layers × 4 heads"):
    prof.profile_activity(np.zeros((2, 5, 20)), Units.grid(3, 4), prof.ProfileConfig())
  with pytest.raises(ValueError, match="excess.*n_surrogates"):
    prof.ProfileConfig(ranking="excess", n_surrogates=0)
  with pytest.raises(ValueError, match="null must be one of"):
    prof.ProfileConfig(null="shuffle")
  with pytest.raises(ValueError, match="baseline_inputs"):
    prof.ProfileConfig(baseline_inputs="mine")
  from synergy_jax import phiid
  with pytest.raises(ValueError, match="contradict"):
    prof.ProfileConfig(phiid=phiid.PhiidConfig(tau=2), tau=1)
  cfg = prof.ProfileConfig(tau=2, redundancy="ccs")
  assert cfg.phiid == phiid.PhiidConfig(tau=2, redundancy="ccs") and cfg.tau == 2


def _write_npz(path, **arrays):
  np.savez(path, **arrays)
  return path


def test_acts_file_errors_name_the_culprit(tmp_path):
  from synergy_jax.pipeline import acts_file
  good = np.random.default_rng(0).standard_normal((6, 6, 30))
  with pytest.raises(FileNotFoundError, match="nothere.npz"):
    acts_file.load_acts(tmp_path / "nothere.npz")
  (tmp_path / "junk.npz").write_text("not a zip")
  with pytest.raises(ValueError, match="not a NumPy .npz"):
    acts_file.load_acts(tmp_path / "junk.npz")
  p = _write_npz(tmp_path / "a.npz", acts=good, num_layers=3)
  with pytest.raises(ValueError, match=r"lacks key\(s\) \['num_heads'\]"):
    acts_file.load_acts(p)
  p = _write_npz(tmp_path / "b.npz", acts=good[0], num_layers=3, num_heads=2)
  with pytest.raises(ValueError, match=r"\(prompts, units, time\)"):
    acts_file.load_acts(p)
  p = _write_npz(tmp_path / "c.npz", acts=good, num_layers=4, num_heads=2)
  with pytest.raises(ValueError, match="6 units but num_layers × num_heads = 4 × 2 = 8"):
    acts_file.load_acts(p)
  p = _write_npz(tmp_path / "d.npz", acts=good, num_layers=3.0, num_heads=2)
  with pytest.raises(ValueError, match="'num_layers' must be a positive integer"):
    acts_file.load_acts(p)
  rec = acts_file.load_acts(_write_npz(tmp_path / "e.npz", acts=good, num_layers=3, num_heads=2))
  assert rec.acts.shape == (6, 6, 30) and (rec.num_layers, rec.num_heads) == (3, 2)


def test_profile_of_recorded_activity(tmp_path):
  rng = np.random.default_rng(4)
  acts = rng.standard_normal((8, 6, 40))
  acts[:, 2:4, 1:] += 0.9 * acts[:, 0:1, :-1]  # layer 1 driven by unit 0
  path = _write_npz(tmp_path / "rec.npz", acts=acts, num_layers=3, num_heads=2)
  cfg = prof.ProfileConfig(n_surrogates=10, n_boot=20, n_perm=99, ranking="excess")
  out = prof.run_profile_acts(path, cfg, tmp_path / "run", cache_dir=tmp_path / "cache")
  assert out["recorded"]["model"] == f"acts:{path}" and "random" not in out
  assert out["config"]["ranking"] == "excess" and len(out["layer_profile"]) == 3
  assert (tmp_path / "run" / "layer_profile.png").stat().st_size > 0
  np.testing.assert_allclose(np.load(tmp_path / "run" / "atoms.npz")["acts"], acts)


def test_profile_activity_on_planted_structure():
  """Synthetic units: layer 1's heads are noisy copies of one shared driver (redundant with each
  other); the rest are independent noise. The pipeline's redundancy must single them out."""
  rng = np.random.default_rng(0)
  p, layers, heads, t = 6, 3, 4, 200
  acts = rng.standard_normal((p, layers * heads, t))
  driver = rng.standard_normal((p, 1, t))
  for j in range(1, t):
    driver[..., j] += 0.8 * driver[..., j - 1]
  acts[:, heads:2 * heads] = driver + 0.3 * rng.standard_normal((p, heads, t))
  res = prof.profile_activity(acts, Units.grid(layers, heads),
                              prof.ProfileConfig(n_surrogates=100))
  red = res.scores.redundancy
  assert np.all(red[heads:2 * heads].min() > np.delete(red, np.s_[heads:2 * heads]).max())
  # The surrogate null flags the copies' redundancy and not the independent units'. (100
  # surrogates: with 20 the smallest empirical p, 1/21, can never pass BH over 12 heads.)
  k = res.surrogates.atoms.index("rtr")
  sig = res.surrogates.head_significant[:, k]
  assert sig[heads:2 * heads].all()
  # The 8 independent heads share one chance correlation with the driver through the 4 copies
  # (the copies are one series), so their tests are not independent: allow one false positive.
  assert np.delete(sig, np.s_[heads:2 * heads]).sum() <= 1
  z = np.delete(res.surrogates.head_z[:, k], np.s_[heads:2 * heads])
  assert abs(np.median(z)) < 1.5 and res.surrogates.head_z[heads:2 * heads, k].min() > 10
  assert res.summary["units"]["n_units"] == 12 and len(res.summary["layer_profile"]) == 3


def test_sharded_profile_equals_one_device():
  import jax
  assert jax.device_count() >= 2, "tests/conftest.py simulates 8 CPU devices"
  rng = np.random.default_rng(1)
  acts = rng.standard_normal((3, 16, 60)).cumsum(-1) * 0.1 + rng.standard_normal((3, 16, 60))
  # 3 prompts: too few for trial shuffling, so the circular-shift null (on the sharded path).
  grid = Units.grid(4, 4)
  one = prof.profile_activity(acts, grid, prof.ProfileConfig(n_surrogates=5, null="circular"))
  many = prof.profile_activity(acts, grid, prof.ProfileConfig(n_surrogates=5, null="circular",
                                                              shard=True))
  np.testing.assert_allclose(many.atoms, one.atoms, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(many.surrogates.head_z, one.surrogates.head_z, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(many.summary["layer_profile"], one.summary["layer_profile"],
                             rtol=1e-6)


def test_local_atoms_of_top_heads_average_to_their_partner_means():
  """Per-token sts/rtr of the chosen heads: the top k by score then the bottom k (finite only),
  and their mean over tokens equals the head's partner-averaged all-pairs atoms."""
  from synergy_jax import phiid
  from synergy_jax.pipeline import profile_local
  rng = np.random.default_rng(4)
  acts = rng.standard_normal((5, 6, 30))
  acts[:, 3, 1:] += 0.8 * acts[:, 0, :-1]
  score = np.array([0.5, np.nan, -2.0, 3.0, 1.0, -1.0])
  heads, role = profile_local.top_heads(score, 2)
  assert heads.tolist() == [3, 4, 2, 5] and role.tolist() == ["synergistic"] * 2 + ["redundant"] * 2
  cfg = phiid.PhiidConfig()
  loc = profile_local.local_atoms(acts, score, cfg, k=2)
  atoms = np.asarray(phiid.all_pairs(acts, config=cfg))
  for name, got in (("sts", loc.sts), ("rtr", loc.rtr)):
    pair = atoms[..., phiid.ATOMS.index(name)]
    want = np.nanmean(pair, axis=1)[heads]  # unit as source x, over partners j != i
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got.mean(axis=(0, 2)), want, rtol=1e-4, atol=1e-6)
