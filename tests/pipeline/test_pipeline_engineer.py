"""The engineer and scale experiments: flag validation before any work, the across-seed analysis
on known values, and quick end-to-end runs on tiny models (rerun: cached models reused)."""
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

from synergy_jax.pipeline.engineer import ModelMeasures, analyse

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _run(*args, timeout=600):
  quiet = [] if "--experiment=train" in args else ["--noprogress"]  # train shows no bars
  return subprocess.run([sys.executable, "run.py", *quiet, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_bad_flags_are_named_before_any_work(tmp_path):
  out = tmp_path / "never"
  cases = [
      (["--experiment=train", "--synergy_target=middle", f"--workdir={out}"], "--synergy_target"),
      (["--experiment=train", "--synergy_weight=nan", f"--workdir={out}"], "--synergy_weight"),
      (["--experiment=train", "--synergy_target=core", "--synergy_weight=1", "--num_layers=2",
        f"--workdir={out}"], "--synergy_target"),
      (["--experiment=engineer", "--lambdas=-1,1", f"--out={out}"], "--lambdas"),
      (["--experiment=engineer", "--lambdas=0,x", f"--out={out}"], "--lambdas"),
      (["--experiment=engineer", "--architecture=3x2", f"--out={out}"], "--architecture"),
      (["--experiment=engineer", "--target=0,nope", f"--out={out}"], "--target"),
      (["--experiment=engineer", "--series_len=2", f"--out={out}"], "--series_len"),
      (["--experiment=scale", "--sizes=3x3x16", f"--out={out}"], "--sizes"),
      (["--experiment=scale", "--model=default", f"--out={out}"], "--model"),
  ]
  for args, culprit in cases:
    proc = _run(*args, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (args, proc.stderr[-2000:])
    assert err and err[-1].startswith("error: ") and culprit in err[-1], (args, err)
    assert not out.exists(), f"{args}: work started for a rejected command"


def _measures(objective, core, acc, auc):
  return ModelMeasures(
      n_params=10, num_layers=3, num_heads=2, core_contrast=core, objective=objective,
      depth_trend={"rank_difference": {"curvature": -core, "p_value": 0.5}}, reliability=0.5,
      verdict="v", baseline={"core_contrast": 0.0}, accuracy={"add/1": acc},
      accuracy_by_rank=[acc], accuracy_mean=acc,
      ablation={"auc_ratio_synergistic": auc}, layer_balance=[0.0, 0.0, 0.0])


def test_analysis_compares_each_lambda_with_zero_across_seeds():
  seeds = (0, 1, 2)
  m = {}
  for s in seeds:
    m[(0.0, s)] = _measures(0.1 * s, 0.0 + 0.01 * s, 0.5, 1.0)
    m[(1.0, s)] = _measures(1.0 + 0.1 * s, 0.5 + 0.01 * s, 0.4, 1.2)
    m[(-1.0, s)] = _measures(-1.0 + 0.1 * s, -0.5 + 0.01 * s, 0.5, 1.0)
  res = analyse(m, (-1.0, 0.0, 1.0), seeds, n_boot=200, n_perm=1000)
  c = res.comparisons["objective"][1.0]
  np.testing.assert_allclose(c["difference"], 1.0)
  # 3 vs 3 seeds, completely separated: the exact two-sided p is 2 / C(6, 3) = 0.1
  assert c["exact"] and c["n_permutations"] == 20
  np.testing.assert_allclose(c["permutation_p"], 0.1)
  assert c["hedges_g"] > 5 and c["g_ci"][0] > 0
  np.testing.assert_allclose(res.comparisons["core_contrast"][-1.0]["difference"], -0.5)
  np.testing.assert_allclose(res.comparisons["accuracy_mean"][1.0]["difference"], -0.1)
  assert np.isnan(res.comparisons["accuracy_mean"][-1.0]["hedges_g"])  # both groups constant
  text = " ".join(res.verdict)
  assert "λ = 1: the term J moved in the intended direction" in text
  assert "λ = -1: the term J moved in the intended direction" in text
  assert len(res.runs) == 9


def test_quick_engineer_end_to_end_and_rerun_reuses_models(tmp_path):
  out, cache = tmp_path / "eng", tmp_path / "cache"
  args = ["--experiment=engineer", "--quick", "--architecture=3x2x16", "--lambdas=0,1",
          "--train_seeds=0", "--train_steps=3", "--accuracy_examples=1", "--series_len=16",
          f"--out={out}", f"--cache_dir={cache}"]
  proc = _run(*args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "results.json").read_text())
  assert res["weights"] == [0.0, 1.0] and res["seeds"] == [0]
  for key in ("0/0", "1/0"):
    m = res["measures"][key]
    assert np.isfinite(m["objective"]) and np.isfinite(m["core_contrast"])
    assert len(m["layer_balance"]) == 3 and 0.0 <= m["accuracy_mean"] <= 1.0
    assert np.isfinite(m["ablation"]["auc_ratio_synergistic"])
    assert "rank_difference" in m["depth_trend"]
    folder = pathlib.Path(res["models"][key])
    assert (folder / "model.safetensors").exists() and (folder / "key.json").exists()
  assert json.loads((pathlib.Path(res["models"]["1/0"]) / "key.json").read_text())[
      "synergy"]["weight"] == 1.0
  log = (pathlib.Path(res["models"]["1/0"]).parent / "run" / "log.csv").read_text()
  assert "synergy" in log.splitlines()[0] and "task_loss" in log.splitlines()[0]
  assert res["comparisons"]["objective"]["1"]["difference"] is not None
  for name in ("runs.csv", "engineer.png", "summary.md"):
    assert (out / name).stat().st_size > 0, name
  assert "Verdict" in (out / "summary.md").read_text()
  stamp = (pathlib.Path(res["models"]["1/0"]) / "model.safetensors").stat().st_mtime_ns
  again = _run(*args)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "[λ=1 seed=0] step" not in again.stdout  # no training step ran
  assert (pathlib.Path(res["models"]["1/0"]) / "model.safetensors").stat().st_mtime_ns == stamp
  res2 = json.loads((out / "results.json").read_text())
  assert res2["measures"] == res["measures"]


def test_quick_scale_end_to_end(tmp_path):
  out, cache = tmp_path / "scale", tmp_path / "cache"
  # --card_examples=0: the model card's generation-based table compiles one program per task
  # cell, too slow for this test; the quick run itself (card_examples=1) writes the cards.
  proc = _run("--experiment=scale", "--quick", "--sizes=3x2x32,3x2x16", "--train_steps=3",
              "--accuracy_examples=1", "--card_examples=0", f"--out={out}",
              f"--cache_dir={cache}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "results.json").read_text())
  rows = res["sizes"]
  assert [r["size"] for r in rows] == ["3x2x16", "3x2x32"]  # ascending parameter count
  assert rows[0]["n_params"] < rows[1]["n_params"]
  for r in rows:
    assert np.isfinite(r["core_contrast"]) and np.isfinite(r["curvature"])
    assert 0.0 <= r["accuracy_mean"] <= 1.0
    folder = pathlib.Path(res["models"][r["size"]])
    assert (folder / "model.safetensors").exists() and (folder / "key.json").exists()
    assert not (folder / "MODEL_CARD.md").exists()  # card_examples=0
  assert res["trends"]["core_contrast"] is None  # fewer than 3 sizes: no trend claimed
  for name in ("sizes.csv", "scale.png", "summary.md"):
    assert (out / name).stat().st_size > 0, name


def test_a_failed_run_is_reported_not_compared():
  m = {(0.0, 0): _measures(0.0, 0.0, 0.5, 1.0), (0.0, 1): _measures(0.1, 0.1, 0.5, 1.0),
       (1.0, 0): _measures(1.0, 0.5, 0.4, 1.2), (1.0, 1): None}
  res = analyse(m, (0.0, 1.0), (0, 1), n_boot=50, n_perm=100)
  c = res.comparisons["objective"][1.0]
  assert c["difference"] is None and "non-finite" in c["note"]
  assert np.isnan(res.values["objective"][1.0][1]) and len(res.runs) == 3
  assert "could not be compared" in " ".join(res.verdict)
