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
  assert "Synergistic-core profile" in (out / "summary.md").read_text()


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
    prof.profile_activity(np.zeros((2, 5, 20)), 3, 4, prof.ProfileConfig())


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
  res = prof.profile_activity(acts, layers, heads, prof.ProfileConfig(n_surrogates=100))
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
  one = prof.profile_activity(acts, 4, 4, prof.ProfileConfig(n_surrogates=5, null="circular"))
  many = prof.profile_activity(acts, 4, 4, prof.ProfileConfig(n_surrogates=5, null="circular",
                                                              shard=True))
  np.testing.assert_allclose(many.atoms, one.atoms, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(many.surrogates.head_z, one.surrogates.head_z, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(many.summary["layer_profile"], one.summary["layer_profile"],
                             rtol=1e-6)
