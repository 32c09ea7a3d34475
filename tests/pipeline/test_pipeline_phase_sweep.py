"""The difficulty phase sweep end to end (``run.py --experiment=phase_sweep --quick``) on the
embedded default model, plus its prompt handling.

The run's files are checked for internal consistency against independent recomputations: level
accuracies from the per-prompt table and from ``tasks.evaluate`` (a separate generation path),
per-prompt means and susceptibilities from ``per_prompt.csv``, and a second run on the same cache
must reproduce the numbers without regenerating.
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
from synergy_jax.pipeline import phase_sweep

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "synergy_jax" / "assets" / "default"
# Before the default model is exported a developer may point this at another model directory.
MODEL = os.environ.get("SYNERGY_JAX_TEST_MODEL", "default")
QUICK_LEVELS = [1, 3, 5]
QUICK_FAMILIES = ["add", "chain"]
QUICK_N = 6


def _need_model():
  if MODEL == "default" and not (DEFAULT / "config.json").exists():
    pytest.skip(f"{DEFAULT}/config.json is absent (the default model is not exported yet)")


def _run(out, cache, *extra):
  cmd = [sys.executable, "run.py", "--experiment=phase_sweep", "--quick", f"--model={MODEL}",
         f"--out={out}", f"--cache_dir={cache}", "--noprogress", *extra]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
  _need_model()
  base = tmp_path_factory.mktemp("phase_sweep")
  _run(base / "run", base / "cache")
  res = json.loads((base / "run" / "results.json").read_text())
  with open(base / "run" / "per_prompt.csv") as f:
    rows = list(csv.DictReader(f))
  return base, res, rows


def test_files_and_shapes(sweep):
  base, res, rows = sweep
  run = base / "run"
  for name in ("results.json", "summary.md", "flags.json", "order_parameters.csv",
               "accuracy.csv", "per_prompt.csv", "per_prompt.npz", "transition.csv",
               "phase_sweep_balance.png", "phase_sweep_core_contrast.png",
               "phase_sweep_syn_gt_red.png"):
    assert (run / name).stat().st_size > 0, name
  flags = json.loads((run / "flags.json").read_text())
  assert flags["quick"] is True
  # flags.json gives the values --quick used, and which flag values they replaced
  assert [float(k) for k in flags["levels"]] == QUICK_LEVELS
  assert flags["n_prompts"] == QUICK_N and flags["families"] == QUICK_FAMILIES
  assert flags["quick_overrides"]["levels"] == {"flag": None, "used": flags["levels"]}
  assert flags["quick_overrides"]["n_prompts"] == {"flag": 32, "used": QUICK_N}
  assert res["levels"] == QUICK_LEVELS
  assert res["families"] == QUICK_FAMILIES
  assert res["n_prompts"] == [QUICK_N * len(QUICK_FAMILIES)] * len(QUICK_LEVELS)
  assert len(rows) == sum(res["n_prompts"])
  assert set(res["order_parameter"]) == {"balance", "core_contrast", "syn_gt_red"}
  for name, op in res["order_parameter"].items():
    for key in ("values", "ci_low", "ci_high", "per_prompt_mean", "per_prompt_ci_low",
                "per_prompt_ci_high"):
      assert len(op[key]) == len(QUICK_LEVELS), (name, key)
  summary = (run / "summary.md").read_text()
  assert "Transition tests" in summary and "accuracy" in summary
  # The summary opens with one verdict on the claim, the one results.json holds, and no later
  # line states the opposite verdict on the claim.
  lead = summary.splitlines()[2]
  assert lead.startswith("**The claim under test")
  assert ("is supported" in lead) == res["claim_supported"]
  opposite = "is supported by" if not res["claim_supported"] else "is not supported by"
  assert opposite not in summary
  # The table shows what the figures show: per-prompt means with their CIs.
  op = res["order_parameter"][res["order_parameter_name"]]
  row = next(line for line in summary.splitlines() if line.startswith(f"| {QUICK_LEVELS[0]:g} |"))
  assert f"{op['per_prompt_mean'][0]:.3g} [{op['per_prompt_ci_low'][0]:.3g}," in row
  # The typed summary read back from results.json rebuilds summary.md exactly.
  typed = phase_sweep.read_sweep(run)
  assert isinstance(typed.order_parameter["balance"], phase_sweep.OrderParameterSeries)
  assert typed.levels == res["levels"] and typed.wall_s == res["wall_s"] > 0
  assert phase_sweep.summary_markdown(typed) == summary


def _verdict_input(supported, jump, skipped=False):
  tr = ({"skipped": "needs >= 3 levels"} if skipped else
        {"supported": supported, "fits": {"logistic": {"jump": jump}}, "level_means": [0.8, 0.82],
         "logistic_threshold_unconfirmed": 3.1})
  return "balance", tr, bool(supported and jump > 0)


def test_claim_sentence_agrees_with_the_verdict_in_every_case():
  # (transition supported, jump, claim supported): the third case is the one that used to open
  # "Yes — a transition is supported" and then say the claim was not supported.
  for supported, jump, claim in ((True, 0.05, True), (False, 0.05, False), (True, -0.01, False),
                                 (False, -0.02, False)):
    text = phase_sweep.claim_sentence(*_verdict_input(supported, jump))
    assert ("is supported" in text) == claim and ("is not supported" in text) == (not claim), text
    if supported and jump < 0:
      assert "downward" in text and "opposite" in text
  text = phase_sweep.claim_sentence(*_verdict_input(False, 0.0, skipped=True))
  assert "could not be tested" in text and "supported" not in text


def test_order_parameters_ranges_and_cis(sweep):
  _, res, _ = sweep
  op = res["order_parameter"]
  for i in range(len(QUICK_LEVELS)):
    b = op["balance"]
    assert 0.0 <= b["ci_low"][i] <= b["values"][i] <= b["ci_high"][i] <= 1.0
    f = op["syn_gt_red"]
    assert 0.0 <= f["ci_low"][i] <= f["values"][i] <= f["ci_high"][i] <= 1.0
    c = op["core_contrast"]
    assert -1.0 <= c["ci_low"][i] <= c["ci_high"][i] <= 1.0
    for name in op:  # a mean lies inside the percentile interval of its bootstrap means
      assert op[name]["per_prompt_ci_low"][i] <= op[name]["per_prompt_mean"][i] \
          <= op[name]["per_prompt_ci_high"][i]


def test_per_prompt_table_matches_level_summaries(sweep):
  _, res, rows = sweep
  level = np.array([float(r["level"]) for r in rows])
  correct = np.array([int(r["correct"]) for r in rows])
  acc = res["accuracy"]
  for i, k in enumerate(QUICK_LEVELS):
    sel = level == k
    assert sel.sum() == res["n_prompts"][i]
    assert acc["values"][i] == pytest.approx(correct[sel].mean(), abs=1e-12)
    assert acc["ci_low"][i] <= acc["values"][i] <= acc["ci_high"][i]
    for name in ("balance", "syn_gt_red"):
      y = np.array([float(r[name]) for r in rows])[sel]
      assert res["order_parameter"][name]["per_prompt_mean"][i] == pytest.approx(y.mean(),
                                                                                rel=1e-9)
      sus = res["susceptibility"][name]
      if sus is not None:
        assert sus[i] == pytest.approx(np.var(y, ddof=1), rel=1e-9)


def test_accuracy_agrees_with_task_evaluator(sweep):
  """Accuracy from the 100-token capture generations equals the task suite's evaluator path
  (``tasks.generate_answers``: a short greedy generation of the same examples, here all in one
  batch), family by family and level by level."""
  _, res, _ = sweep
  from synergy_jax import models
  model, tok = models.load(MODEL), models.load_tokenizer(MODEL)
  groups = [(f, r) for r in QUICK_LEVELS for f in QUICK_FAMILIES]  # (family, difficulty rank)
  examples = [e for f, r in groups for e in tasks.sample(f, tasks.levels(f)[r - 1], QUICK_N,
                                                          seed=0)]
  texts = tasks.generate_answers(model, tok, examples)
  ok = np.array([tasks.check(e, t) for e, t in zip(examples, texts)]).reshape(len(groups), QUICK_N)
  for (f, k), row in zip(groups, ok):
    i = QUICK_LEVELS.index(k)
    assert res["accuracy"]["per_family"][f][i] == pytest.approx(row.mean(), abs=1e-12), (f, k)


def test_transition_verdict_is_consistent(sweep):
  _, res, _ = sweep
  tr = res["transition"][res["order_parameter_name"]]
  assert isinstance(res["supported"], bool)
  assert res["supported"] == tr["supported"] == all(c["passed"] for c in tr["criteria"].values())
  jump = tr["fits"]["logistic"]["high"] - tr["fits"]["logistic"]["low"]
  assert res["claim_supported"] == (res["supported"] and jump > 0)  # a rise toward synergy
  assert 0.0 < tr["p_value"] <= 1.0
  lo, hi = tr["threshold_ci"]
  assert QUICK_LEVELS[0] <= lo <= hi <= QUICK_LEVELS[-1]
  assert len(tr["susceptibility"]) == len(QUICK_LEVELS)
  assert tr["susceptibility_peak"] in QUICK_LEVELS
  if res["supported"]:
    t = res["threshold"]
    assert t["ci"][0] <= t["estimate"] <= t["ci"][1] and 0 < t["p_value"] < 0.05
  else:
    assert res["threshold"] is None


def test_rerun_reuses_cache_and_reproduces(sweep):
  base, res, _ = sweep
  cache = base / "cache"
  before = sorted(p.name for p in cache.iterdir())
  assert any(n.startswith("activity-") for n in before)
  assert any(n.startswith("sts_rtr-") for n in before)
  _run(base / "run2", cache)
  assert sorted(p.name for p in cache.iterdir()) == before  # nothing new was computed
  res2 = json.loads((base / "run2" / "results.json").read_text())
  assert res2["order_parameter"] == res["order_parameter"]
  assert res2["accuracy"] == res["accuracy"]
  assert res2["transition"]["balance"]["p_value"] == res["transition"]["balance"]["p_value"]


def test_jsonl_prompts_need_difficulty(tmp_path):
  path = tmp_path / "p.jsonl"
  path.write_text('{"text": "add 1+2=", "difficulty": 1}\n{"text": "add 11+22="}\n')
  with pytest.raises(ValueError, match="prompt 1 .*difficulty"):
    phase_sweep.jsonl_items(path)


def test_difficulty_ranks_must_exist_in_every_family():
  n_min = min(len(tasks.levels(f)) for f in tasks.FAMILIES)
  assert phase_sweep.sweep_levels(tasks.FAMILIES) == tuple(range(1, n_min + 1))
  assert phase_sweep.sweep_levels(["sort"], [3, 1]) == (1, 3)
  too_far = len(tasks.levels("add")) + 1
  with pytest.raises(ValueError, match="'add' has no difficulty rank"):
    phase_sweep.sweep_levels(["add", "sort"], [too_far])
  with pytest.raises(ValueError, match="integers"):
    phase_sweep.sweep_levels(["add"], [1.5])
  with pytest.raises(ValueError, match="order_parameter"):
    phase_sweep.PhaseSweepConfig(order_parameter="entropy")


def test_ranks_map_to_each_familys_levels(sweep):
  _, res, _ = sweep
  assert res["level_values"] == {f: [tasks.levels(f)[r - 1] for r in QUICK_LEVELS]
                                 for f in QUICK_FAMILIES}


def test_jsonl_sweep_in_process(tmp_path):
  """The library path a notebook uses: user prompts with difficulty labels, no accuracy."""
  _need_model()
  lines = []
  for k, n_ops in ((1, 1), (2, 3), (3, 5)):
    for e in tasks.sample("chain", n_ops, 4, seed=3):
      lines.append(json.dumps({"text": e.prompt, "category": "chain", "difficulty": k}))
  path = tmp_path / "prompts.jsonl"
  path.write_text("\n".join(lines) + "\n")
  cfg = phase_sweep.PhaseSweepConfig(max_new_tokens=16, batch_size=12, n_boot=20,
                                     n_transition_boot=20, n_perm=20)
  res = phase_sweep.run_phase_sweep(MODEL, cfg, tmp_path / "run", cache_dir=tmp_path / "cache",
                                    prompts_path=str(path))
  assert res.levels == [1.0, 2.0, 3.0]
  assert res.accuracy is None
  assert res.n_prompts == [4, 4, 4]
  assert phase_sweep.read_sweep(tmp_path / "run").accuracy is None
  assert not (tmp_path / "run" / "accuracy.csv").exists()
  assert (tmp_path / "run" / "summary.md").exists()


def test_read_sweep_names_the_file_and_the_missing_key(tmp_path):
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"experiment": "phase_sweep", "model": "m"}))
  with pytest.raises(ValueError, match=r"results.json: missing key 'fingerprint'"):
    phase_sweep.read_sweep(tmp_path)
  with pytest.raises(FileNotFoundError, match="nothere"):
    phase_sweep.read_sweep(tmp_path / "nothere")


def test_sweep_on_moe_experts(tmp_path):
  from tests.pipeline import moe_dirs
  model = moe_dirs.write_tiny_moe(tmp_path / "moe")
  config = phase_sweep.PhaseSweepConfig(
      families=("add",), levels=(1.0, 2.0, 3.0), n_per_family=4, max_new_tokens=12,
      batch_size=4, n_boot=10, n_transition_boot=10, n_perm=10, units="experts",
      expert_activity="routed")
  res = phase_sweep.run_phase_sweep(str(model), config, tmp_path / "run",
                                    cache_dir=tmp_path / "cache")
  assert res.units["description"] == "10 experts (2 shared)"
  assert res.units["expert_activity"] == "routed"
  assert len(res.order_parameter["balance"].values) == 3
  assert np.isfinite(res.order_parameter["balance"].values).all()
  # experts in layers 0 and 2 of 3: depths 0 and 1, no middle layer, no core contrast
  assert np.isnan(res.order_parameter["core_contrast"].values).all()
  names = {f"L{l} {e}" for l in (0, 2) for e in ("E0", "E1", "E2", "E3", "S0")}
  assert all(d["name"] in names and d["kind"] == "expert" for d in res.degenerate)
  summary = (tmp_path / "run" / "summary.md").read_text()
  assert "Units: 10 experts (2 shared) of a 3-layer model (routed expert activity)." in summary
  with pytest.raises(ValueError, match="units must be one of"):
    phase_sweep.PhaseSweepConfig(units="neurons")
