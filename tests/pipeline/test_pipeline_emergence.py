"""Hub names and revisions through a fake local Hugging Face cache (built here, offline), and the
emergence experiment over two revisions of a tiny model."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from synergy_jax import models
from synergy_jax.models import hub
from synergy_jax.pipeline import emergence

ROOT = pathlib.Path(__file__).resolve().parents[2]


def build_fake_cache(root: pathlib.Path, repo: str, revisions: dict) -> dict:
  """A Hugging Face cache layout: models--<owner>--<name>/refs/<rev> holds a commit hash and
  snapshots/<commit>/ the files. revisions: {revision: seed of a random default-shaped model}.
  Returns {revision: snapshot path}."""
  folder = root / ("models--" + repo.replace("/", "--"))
  cfg = models.load_config("default")
  out = {}
  for k, (rev, seed) in enumerate(revisions.items()):
    commit = f"{k + 1:040x}"
    snap = folder / "snapshots" / commit
    models.save(models.init(cfg, seed), snap)
    for f in ("tokenizer.json", "tokenizer_config.json"):
      shutil.copy(hub.DEFAULT_DIR / f, snap / f)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / rev).write_text(commit)
    out[rev] = snap
  return out


@pytest.fixture(scope="module")
def fake_hub(tmp_path_factory):
  root = tmp_path_factory.mktemp("hf")
  snaps = build_fake_cache(root, "tinyorg/tiny", {"step0": 0, "step8": 1})
  snaps.update(build_fake_cache(root, "tinygpt", {"main": 2}))
  return root, snaps


def test_hub_ids_with_and_without_namespace_and_revisions(fake_hub, monkeypatch):
  root, snaps = fake_hub
  monkeypatch.setenv("HF_HUB_CACHE", str(root))
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  assert hub.resolve("tinyorg/tiny@step0") == snaps["step0"]
  assert hub.resolve("tinyorg/tiny@step8") == snaps["step8"]
  assert hub.resolve("tinygpt") == snaps["main"]  # no namespace, default revision "main"
  assert hub.resolve(hub.with_revision("tinyorg/tiny", "step8")) == snaps["step8"]
  with pytest.raises(FileNotFoundError, match="revision 'step999'.*HF_HUB_OFFLINE"):
    hub.resolve("tinyorg/tiny@step999")
  with pytest.raises(FileNotFoundError, match="gpt9000"):
    hub.resolve("gpt9000")
  with pytest.raises(ValueError, match="step0.*step8"):
    hub.with_revision("tinyorg/tiny@step0", "step8")
  with pytest.raises(FileNotFoundError, match="not a hub id"):
    hub.resolve("../nowhere")
  a = models.load("tinyorg/tiny@step0")
  b = models.load("tinyorg/tiny@step8")
  assert not np.array_equal(np.asarray(a.params["embed"]), np.asarray(b.params["embed"]))


def test_revision_presets():
  pythia = emergence.revision_list(["pythia"])
  steps = [emergence.revision_step(r) for r in pythia]
  assert steps[:11] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
  assert steps[11:] == list(range(1000, 143001, 1000)) and len(pythia) == 154
  assert emergence.revision_step("main") is None
  with pytest.raises(ValueError, match="more than once"):
    emergence.revision_list(["step0", "step0"])
  with pytest.raises(ValueError, match="empty"):
    emergence.revision_list(["step0", ""])


def _run(args, env, timeout=300):
  return subprocess.run([sys.executable, "run.py", "--noprogress", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_emergence_over_hub_revisions_offline(fake_hub, tmp_path):
  root, _ = fake_hub
  env = {**os.environ, "HF_HUB_CACHE": str(root), "HF_HUB_OFFLINE": "1"}
  out = tmp_path / "em"
  # An earlier run's leftovers in --out (a stale baseline file) are removed by the rerun.
  out.mkdir()
  (out / "status.json").write_text('{"status": "failed"}')
  (out / "head_scores_random.csv").write_text("stale")
  proc = _run(["--experiment=emergence", "--model=tinyorg/tiny", "--revisions=step0,step8",
               "--quick", f"--out={out}", f"--cache_dir={tmp_path / 'cache'}"], env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert not (out / "head_scores_random.csv").exists()
  res = json.loads((out / "results.json").read_text())
  assert res["status"] == "complete" and res["checkpoints"] == ["step0", "step8"]
  assert res["steps"] == [0, 8]
  layers = len(res["depth"])
  for rev in ("step0", "step8"):
    entry = res["per_step"][rev]
    assert len(entry["layer_profile"]) == layers
    assert all(np.isfinite(entry["layer_profile"]))
    assert -1 <= entry["syn_red_spearman"]["rho"] <= 1
  # Different weights at the two revisions: different profiles.
  assert res["per_step"]["step0"]["layer_profile"] != res["per_step"]["step8"]["layer_profile"]
  for png in ("emergence.png", "emergence_trend.png"):
    assert (out / png).stat().st_size > 0
  flags = json.loads((out / "flags.json").read_text())
  assert flags["experiment"] == "emergence" and flags["revisions"] == ["step0", "step8"]
  assert "helpfull" not in flags and "logtostderr" not in flags and "ci_level" not in flags
  # A revision missing from the cache is named, in one line, before any profile runs.
  proc = _run(["--experiment=emergence", "--model=tinyorg/tiny", "--revisions=step0,step77",
               "--quick", f"--out={tmp_path / 'x'}", f"--cache_dir={tmp_path / 'cache'}"], env)
  assert proc.returncode == 2
  assert "step77" in proc.stderr and "Traceback" not in proc.stderr
  assert not (tmp_path / "x").exists()


def _entry(shift):
  return emergence.CheckpointProfile(
      layer_profile=[0.1 + shift, 0.7, 0.2], layer_profile_balance=[0.4, 0.5, float("nan")],
      core_contrast={"band": [1 / 3, 2 / 3], "rank_score": 0.5 - shift},
      syn_red_spearman={"rho": -0.2, "p_value": 0.3}, autocorr_syn_spearman=None,
      mean_sts=0.01, mean_rtr=0.02, n_units_scored=6, degenerate=[], surrogates=None)


def test_emergence_results_round_trip_and_old_files_still_read(tmp_path):
  """results.json of the typed result has the layout earlier versions wrote (a file written
  before the change, spelled out here, reads back the same), and a file that is not an emergence
  result fails naming the file."""
  points = [(emergence.Checkpoint("step0", 0, None), _entry(0.0)),
            (emergence.Checkpoint("step8", 8, None), _entry(0.1))]
  out = emergence.write_emergence(tmp_path / "run", points, np.array([0.0, 0.5, 1.0]),
                                  {"model": "tinyorg/tiny"})
  on_disk = json.loads((tmp_path / "run" / "results.json").read_text())
  assert on_disk == out
  assert on_disk["layer_profile"] == {"step0": [0.1, 0.7, 0.2], "step8": [0.2, 0.7, 0.2]}
  assert on_disk["per_step"]["step0"]["layer_profile_balance"] == [0.4, 0.5, None]
  old = {"config": {"model": "m"}, "checkpoints": ["250"], "steps": [250], "depth": [0.0, 1.0],
         "per_step": {"250": {"layer_profile": [0.2, 0.3], "layer_profile_balance": [0.5, 0.5],
                              "core_contrast": {"band": [0.3, 0.6], "rank_score": None},
                              "syn_red_spearman": {"rho": 0.1}, "autocorr_syn_spearman": None,
                              "mean_sts": 0.1, "mean_rtr": 0.2, "n_units_scored": 4,
                              "degenerate": [], "surrogates": None}},
         "layer_profile": {"250": [0.2, 0.3]}, "status": "complete"}
  (tmp_path / "old").mkdir()
  (tmp_path / "old" / "results.json").write_text(json.dumps(old))
  res = emergence.read_emergence(tmp_path / "old")
  assert res.checkpoints == ["250"] and res.per_step["250"].n_units_scored == 4
  assert "| 250 | 0.20 0.30 | n/a |" in emergence.summary_markdown(res)
  back = emergence.read_emergence(tmp_path / "run")
  assert back.per_step["step8"].core_contrast["rank_score"] == pytest.approx(0.4)
  del old["per_step"]["250"]["mean_sts"]
  (tmp_path / "old" / "results.json").write_text(json.dumps(old))
  with pytest.raises(ValueError, match=r"old/results.json is not an emergence.*mean_sts"):
    emergence.read_emergence(tmp_path / "old")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    emergence.read_emergence(tmp_path / "nowhere")
