"""kill -9 in the middle of a training run, resume, and end with the same parameters as an
uninterrupted run (each run is a separate `python -m experiments.train` process)."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from synergy_jax import training
from synergy_jax.training import checkpoints, loop

ROOT = pathlib.Path(__file__).resolve().parents[2]
FLAGS = ["--steps=120", "--train_batch_size=2", "--seq_len=128", "--warmup_steps=5",
         "--save_every=10", "--eval_every=60", "--eval_examples=1", "--log_every=10",
         "--hidden_size=16", "--intermediate_size=32", "--num_layers=2", "--num_heads=2",
         "--head_dim=8", "--learning_rate=5e-3"]


def _cmd(workdir):
  return [sys.executable, "-m", "experiments.train", f"--workdir={workdir}", *FLAGS]


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = ""  # one CPU device, like a user's run
  env["PYTHONPATH"] = str(ROOT)
  return env


def _final_params(workdir):
  mc = training.default_model_config(hidden_size=16, intermediate_size=32, num_layers=2,
                                     num_heads=2, head_dim=8)
  from synergy_jax import models
  from synergy_jax.training import modelstate
  params = modelstate.params_of(models.init(mc, 0))
  cfg = training.TrainConfig(steps=120, batch_size=2, seq_len=128, warmup_steps=5,
                             save_every=10, eval_every=60, eval_examples=1, log_every=10,
                             learning_rate=5e-3)
  opt_state = jax.eval_shape(loop.make_optimizer(cfg).init, params)
  state = checkpoints.restore(os.path.join(workdir, "checkpoints"), 120,
                              {"params": params, "opt_state": opt_state})
  return state


def test_kill9_and_resume_gives_identical_parameters(tmp_path):
  ref = tmp_path / "uninterrupted"
  subprocess.run(_cmd(ref), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=300)

  run = tmp_path / "killed"
  proc = subprocess.Popen(_cmd(run), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpt = run / "checkpoints"
  deadline = time.time() + 240
  killed_after = None
  while time.time() < deadline and proc.poll() is None:
    done = [int(p.name) for p in ckpt.iterdir() if p.name.isdigit()] if ckpt.exists() else []
    if done and max(done) >= 40:
      os.kill(proc.pid, signal.SIGKILL)
      killed_after = max(done)
      break
    time.sleep(0.02)
  proc.wait()
  assert killed_after is not None, "the run ended before it could be killed"
  assert proc.returncode == -signal.SIGKILL
  assert checkpoints.steps(ckpt)[-1] < 120

  subprocess.run(_cmd(run), cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=300)
  a, b = _final_params(ref), _final_params(run)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # the log of the resumed run has each step once and ends at the last step
  steps = [r["step"] for r in training.read_log(run / "log.csv")]
  assert steps == sorted(set(steps)) and steps[-1] == 120
