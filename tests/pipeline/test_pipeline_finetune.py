"""The fine-tuning experiment end to end on the default model: --quick GRPO through run.py
(figures, results.json layout, loadable --save_params folders), and quick SFT in-process, stopped
part-way and resumed, with results identical to an uninterrupted run."""
import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
from flax import nnx

from synergy_jax import models
from synergy_jax.pipeline import finetune, profile
from synergy_jax.training import freeze, tuning

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_quick_grpo_through_run_py(tmp_path):
  out = tmp_path / "grpo"
  proc = subprocess.run(
      [sys.executable, "run.py", "--experiment=finetune", "--method=grpo", "--quick",
       "--save_params", "--noprogress", f"--out={out}", f"--cache_dir={tmp_path / 'cache'}"],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "results.json").read_text())
  assert res["method"] == "grpo" and res["n_heads_per_condition"] == 24
  assert set(res["conditions"]) == {"synergistic", "redundant", "random"}
  syn, red = res["conditions"]["synergistic"], res["conditions"]["redundant"]
  assert not set(map(tuple, syn["heads"])) & set(map(tuple, red["heads"]))  # disjoint halves
  assert len(res["conditions"]["random"]["heads"]) == 2  # one head set per seed
  for c in res["conditions"].values():
    assert len(c["best"]) == len(c["final"]) == 2
    assert all(0.0 <= v <= 1.0 for v in c["best"] + c["final"])
    assert all(b >= f for b, f in zip(c["best"], c["final"]))  # final is in the window
    assert c["curves"]["steps"] == [0, 8, 16]
  for key in ("synergistic_vs_random", "synergistic_vs_redundant"):
    for m in ("best", "final"):
      comp = res["comparisons"][key][m]
      assert comp["exact"] and comp["n_permutations"] == 6 and 0 < comp["permutation_p"] <= 1
      assert np.isfinite(comp["median_difference"])
  assert 0.0 < res["base_accuracy"]["acc"] < 1.0
  for name in ("learning_curves.png", "final_accuracy.png", "runs.csv", "curves.csv"):
    assert (out / name).stat().st_size > 0, name
  assert "Verdict" in (out / "summary.md").read_text()
  # a saved run loads as a model and holds the tuned (not the base) parameters: the entries the
  # selected heads own (the family's unit description, on the nnx.Param state) changed, every
  # other entry is bit-identical to the base
  loaded = models.load(out / "params" / "synergistic_seed0")
  base = models.load("default")
  sel = np.array(syn["heads"])
  owned = jax.tree.leaves(freeze.entry_mask(base, sel))
  tuned_leaves = jax.tree.leaves(nnx.state(loaded, nnx.Param))
  base_leaves = jax.tree.leaves(nnx.state(base, nnx.Param))
  assert len(owned) == len(tuned_leaves) == len(base_leaves)
  n_changed = 0
  for m, t, b in zip(owned, tuned_leaves, base_leaves):
    m, t, b = np.asarray(m), np.asarray(t), np.asarray(b)
    np.testing.assert_array_equal(t[~m], b[~m])
    n_changed += int(np.sum(t[m] != b[m]))
  assert n_changed > 0


def _sft_config():
  # one evaluation cell and a short profile: this test is about resume, not about learning
  tune = tuning.TuneConfig(method="sft", steps=8, warmup_steps=2, learning_rate=1e-3,
                           batch_size=8, families=("add",), levels=(2,), eval_every=4,
                           eval_examples=8, save_every=4, log_every=4)
  return finetune.FinetuneConfig(tune=tune, seeds=2, per_category=1, max_new_tokens=16,
                                 batch_size=6, n_boot=200)


def _strip(res):
  from synergy_jax import results
  return results.to_jsonable({k: v for k, v in res.items() if k not in ("timing_s", "wall_s")})


def test_quick_sft_stopped_and_resumed_equals_uninterrupted(tmp_path):
  prompts = profile.profile_prompts(None, per_category=1)
  cfg = _sft_config()
  quiet = lambda s: None
  full = finetune.run_finetune("default", prompts, cfg, tmp_path / "a",
                               cache_dir=tmp_path / "cache", log=quiet)
  assert finetune.run_finetune("default", prompts, cfg, tmp_path / "b", cache_dir=tmp_path /
                               "cache", stop_after=3, log=quiet) is None
  assert not (tmp_path / "b" / "results.json").exists()
  resumed = finetune.run_finetune("default", prompts, cfg, tmp_path / "b",
                                  cache_dir=tmp_path / "cache", log=quiet)
  assert json.dumps(_strip(full), sort_keys=True) == json.dumps(_strip(resumed), sort_keys=True)
  assert full["method"] == "sft" and full["conditions"]["random"]["curves"]["steps"] == [0, 4, 8]
  # every run's log has each step once
  for d in (tmp_path / "b" / "runs").iterdir():
    steps = [int(r["step"]) for r in finetune.logs.read(d / "log.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 8, d.name


def test_config_errors_name_the_setting():
  import pytest
  with pytest.raises(ValueError, match="seeds must be >= 2"):
    finetune.FinetuneConfig(seeds=1)
  with pytest.raises(ValueError, match="fraction"):
    finetune.FinetuneConfig(fraction=1.0)
  with pytest.raises(ValueError, match="jsonl.*method='sft' only"):
    tuning.TuneConfig(method="grpo", jsonl="x.jsonl")
  with pytest.raises(ValueError, match="no family .* levels \\[9\\]"):
    tuning.TuneConfig(levels=(9,))
  with pytest.raises(ValueError, match="unknown task family 'mul'"):
    tuning.TuneConfig(families=("mul",))
  with pytest.raises(ValueError, match="no evaluation at its final step 12"):
    finetune.best_and_final(np.array([0, 6]), np.array([0.1, 0.2]), 12, 0.0)
  dataclasses.replace(_sft_config(), seeds=3)  # a valid config passes


def test_head_sets_disjoint_despite_ties():
  # 8 units, scores tied at the median: stable orders alone would put units 2 and 3 in both
  score = np.array([5.0, 4.0, 0.0, 0.0, 0.0, 0.0, -4.0, -5.0])
  cfg = finetune.FinetuneConfig(fraction=0.5, seeds=3)
  sets = finetune.head_sets(score, 2, 4, cfg)
  syn = {tuple(x) for x in sets["synergistic"][0]}
  red = {tuple(x) for x in sets["redundant"][0]}
  assert len(syn) == len(red) == 4 and not syn & red
  assert {(0, 0), (0, 1)} <= syn and {(1, 2), (1, 3)} <= red  # the untied extremes
  assert len(sets["random"]) == 3 and all(len(r) == 4 for r in sets["random"])
  assert finetune.boundary_ties(score, 4) == 4
