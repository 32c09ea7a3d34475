"""run.py dispatch and the experiments' flags."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXPERIMENTS = ("profile", "phase_sweep", "ablation", "train", "emergence")


def test_experiment_modules_share_flags_without_clashes():
  # One process imports every experiment: a flag defined twice would raise DuplicateFlagError.
  code = ("import sys; sys.argv = ['x']\n" +
          "".join(f"import experiments.{n}\n" for n in EXPERIMENTS) + "print('imported')")
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "imported" in proc.stdout


def test_helpfull_documents_each_experiment():
  for name, flag in (("profile", "--surrogates"), ("emergence", "--checkpoint_steps"),
                     ("phase_sweep", "--order_parameter"), ("ablation", "--sigmas")):
    proc = subprocess.run([sys.executable, "run.py", f"--experiment={name}", "--helpfull"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    text = proc.stdout + proc.stderr
    assert flag in text and "--model" in text and "--quick" in text, (name, text[-2000:])


def test_unknown_experiment_is_named():
  proc = subprocess.run([sys.executable, "run.py", "--experiment=nonsense"], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode != 0
  assert "nonsense" in proc.stderr and "profile" in proc.stderr


def _run(*args, env=None, timeout=120):
  import os
  return subprocess.run([sys.executable, "run.py", "--noprogress", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def test_user_errors_are_one_line_naming_the_culprit_before_any_work(tmp_path):
  out = tmp_path / "never"
  cases = [
      (["--tau=0"], "--tau=0"),
      (["--experiment=profile", "--ci_level=0.9"], "--ci_level"),
      (["--experiment=phase_sweep", "--n_prompts=0"], "--n_prompts=0"),
      (["--max_new_tokens=3"], "--max_new_tokens=3"),
      (["--prompts=/no/such/prompts.jsonl"], "/no/such/prompts.jsonl"),
      (["--model=surely-not-a-model-xyz"], "surely-not-a-model-xyz"),
      (["--model=owner/name@v9", "--revision=v1"], "v9"),
      (["--acts=/no/such/acts.npz"], "--acts=/no/such/acts.npz"),
      # a rank the task families lack fails at once, not after ranking and divergence
      (["--experiment=ablation", "--levels=99"], "[99]"),
      (["--experiment=phase_sweep", "--levels=1,x"], "--levels: 'x'"),
      (["--experiment=emergence", "--checkpoints=/no/such/run"], "--checkpoints=/no/such/run"),
      (["--experiment=robustness", "--kinds=gauss"], "--kinds='gauss'"),
      # experts of a dense model: named with the model type, before any model is loaded
      (["--units=experts"], "--units=experts with --model=default: units='experts' needs a "
                            "mixture-of-experts model; the llama model has no experts"),
      (["--experiment=finetune", "--units=experts"], "--units"),
  ]
  for args, culprit in cases:
    proc = _run(*args, f"--out={out}")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (args, proc.stderr[-2000:])
    assert len(err) == 1 and err[0].startswith("error: ") and culprit in err[0], (args, err)
    assert not out.exists(), f"{args}: a run directory was created for a rejected command"
  verbose = _run("--tau=0", "--verbose_errors")
  assert verbose.returncode != 0 and "Traceback" in verbose.stderr and "--tau=0" in verbose.stderr


def test_ctrl_c_marks_the_run_interrupted_and_says_how_to_resume(tmp_path):
  import json
  import signal
  import time
  out = tmp_path / "run"
  proc = subprocess.Popen([sys.executable, "run.py", "--noprogress", "--quick", f"--out={out}",
                           f"--cache_dir={tmp_path / 'cache'}"], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not (out / "status.json").exists() and time.time() < deadline:
    time.sleep(0.1)
  assert proc.poll() is None, proc.communicate()[1][-2000:]
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err[-2000:]
  assert "rerun the same command to resume" in err
  status = json.loads((out / "status.json").read_text())
  assert status["status"] == "interrupted" and status["experiment"] == "profile"
  assert not (out / "results.json").exists()


def test_readme_retrain_command_is_the_model_cards():
  card = (ROOT / "synergy_jax/assets/default/MODEL_CARD.md").read_text()
  command = next(line for line in card.splitlines() if line.startswith("python "))
  assert command in (ROOT / "README.md").read_text()


_FLAGS_JSON_SCRIPT = """
import json, pathlib, sys
from experiments import common, profile
out = pathlib.Path(sys.argv[1])
common.FLAGS(["run.py", "--quick", "--n_boot=7", f"--out={out}", f"--cache_dir={out}/cache"])
common.validate_flags("profile", common.Experiment("experiments.profile", loads_model=False))
config = profile.profile_config()
path = common.run_dir("profile")
before = json.loads((path / "flags.json").read_text())
common.quick_or("max_new_tokens", 12)  # asked after flags.json was written (another value)
after = json.loads((path / "flags.json").read_text())
print(json.dumps({"before": before, "after": after, "used": [config.n_surrogates, config.n_boot,
                  config.max_new_tokens]}))
"""


def test_flags_json_records_the_values_quick_used(tmp_path):
  import json
  proc = subprocess.run([sys.executable, "-c", _FLAGS_JSON_SCRIPT, str(tmp_path / "run")],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  before, after = got["before"], got["after"]
  # profile's --quick: 20 surrogates and 40 new tokens; --n_boot given explicitly wins
  assert got["used"] == [20, 7, 40]
  assert before["quick"] is True
  assert (before["surrogates"], before["n_boot"], before["max_new_tokens"]) == (20, 7, 40)
  assert before["quick_overrides"] == {"surrogates": {"flag": 100, "used": 20},
                                       "max_new_tokens": {"flag": 100, "used": 40}}
  # flags the run did not change are recorded as given
  assert before["tau"] == 1 and before["seed"] == 0
  assert after["max_new_tokens"] == 12
  assert after["quick_overrides"]["max_new_tokens"] == {"flag": 100, "used": 12}


_FINETUNE_FLAGS_SCRIPT = """
import json, pathlib, sys
from experiments import common, finetune
out = pathlib.Path(sys.argv[1])
common.FLAGS(["run.py", "--quick", "--learning_rate=0.001", f"--out={out}",
              f"--cache_dir={out}/cache"])
common.validate_flags("finetune", common.Experiment("experiments.finetune", loads_model=False))
config = finetune.config_from_flags()
path = common.run_dir("finetune")
print(json.dumps({"flags": json.loads((path / "flags.json").read_text()),
                  "used": [config.tune.steps, config.tune.learning_rate, config.tune.clip_norm]}))
"""


def test_flags_json_records_another_experiments_flags_with_this_ones_defaults(tmp_path):
  # finetune uses train's --steps etc. with its own defaults (quick: 16 steps; clip_norm 1.0)
  import json
  proc = subprocess.run([sys.executable, "-c", _FINETUNE_FLAGS_SCRIPT, str(tmp_path / "run")],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  got = json.loads(proc.stdout.strip().splitlines()[-1])
  flags = got["flags"]
  assert got["used"] == [16, 0.001, 1.0]
  assert (flags["steps"], flags["learning_rate"], flags["clip_norm"]) == (16, 0.001, 1.0)
  assert flags["quick_overrides"]["steps"] == {"flag": 3000, "used": 16}
  assert flags["quick_overrides"]["warmup_steps"] == {"flag": 150, "used": 2}
  # no quick value: finetune's own default replaces train's (weight decay 0.01, not 0.05)
  assert flags["experiment_defaults"]["weight_decay"] == {"flag": 0.05, "used": 0.01}
  assert "clip_norm" not in flags["experiment_defaults"]  # the same value as train's
  assert "learning_rate" not in flags["experiment_defaults"]  # given explicitly
  assert "workdir" not in flags and "hidden_size" not in flags  # train's flags finetune ignores


def test_profile_of_moe_experts_end_to_end(tmp_path):
  import csv
  import json
  from tests.pipeline import moe_dirs
  model = moe_dirs.write_tiny_moe(tmp_path / "moe")
  out = tmp_path / "run"
  proc = _run("--experiment=profile", f"--model=random:{model}", "--units=experts", "--quick",
              f"--out={out}", f"--cache_dir={tmp_path / 'cache'}", timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads((out / "results.json").read_text())
  assert res["units"]["description"] == "10 experts (2 shared)"
  assert res["config"]["units"] == "experts" and res["config"]["expert_activity"] == "dense"
  with open(out / "head_scores.csv") as f:
    names = [r["name"] for r in csv.DictReader(f)]
  assert names == [f"L{l} {e}" for l in (0, 2) for e in ("E0", "E1", "E2", "E3", "S0")]
  assert json.loads((out / "status.json").read_text())["status"] == "complete"
  assert "Units: 10 experts (2 shared)" in (out / "summary.md").read_text()
