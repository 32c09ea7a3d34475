"""Two local processes × 2 CPU devices under jax.distributed (global mesh, gloo collectives):
capture, all-pairs ΦID and the circular-shift null give what one process holding every prompt
gives. The children always end: a wall-clock limit, then they are killed; their stderr is shown
on failure."""
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from synergy_jax import models, phiid, training
from synergy_jax.analysis import nulls
from synergy_jax.pipeline import capture

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import multihost_worker as worker  # noqa: E402  pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES = 2
LIMIT_S = 150


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_children(model_dir, out):
  port = _free_port()
  env_cmd = [sys.executable, str(ROOT / "tests" / "multihost_worker.py"), str(port)]
  procs = [subprocess.Popen(env_cmd + [str(pid), str(NUM_PROCESSES), str(model_dir), str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**__import__("os").environ, "PYTHONPATH": str(ROOT),
                                 "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"})
           for pid in range(NUM_PROCESSES)]
  errors = []
  try:
    for pid, proc in enumerate(procs):
      try:
        _, err = proc.communicate(timeout=LIMIT_S)
      except subprocess.TimeoutExpired:
        errors.append(f"process {pid} ran past {LIMIT_S} s")
        break
      if proc.returncode != 0:
        errors.append(f"process {pid} exited {proc.returncode}:\n{err[-3000:]}")
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        _, err = proc.communicate()
        errors.append(f"killed process {proc.args[3]}; stderr:\n{err[-3000:]}")
  if errors:
    pytest.fail("\n".join(errors))


def test_two_processes_match_one(tmp_path):
  cfg = training.default_model_config(hidden_size=32, intermediate_size=64, num_layers=2,
                                      num_heads=4, head_dim=8)
  model_dir = tmp_path / "tiny"
  models.save(models.init(cfg, seed=5), model_dir)
  training.save_tokenizer(model_dir)
  out = tmp_path / "multi.npz"
  _run_children(model_dir, out)
  got = np.load(out)

  # One process with every prompt; capture batches as the processes had them (batch composition
  # changes activity at rounding level, see tests/pipeline/test_pipeline_capture.py).
  model, tok = models.load(model_dir), models.load_tokenizer(model_dir)
  share = len(worker.PROMPTS) // NUM_PROCESSES
  acts = capture.collect_activity(model, tok, worker.PROMPTS, max_new_tokens=worker.NEW_TOKENS,
                                  batch_size=share).acts.astype(np.float64)
  with jax.enable_x64(True):
    mmi = np.asarray(phiid.all_pairs(acts, on_degenerate="mask"))
    design = nulls.draw_design("circular", 4, len(worker.PROMPTS), worker.NEW_TOKENS, seed=3)
    obs = mmi[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
    mom = nulls.null_moments(acts, obs, design, phiid.PhiidConfig())
  off = ~np.eye(mmi.shape[0], dtype=bool)
  assert np.isfinite(mmi[off]).all()
  np.testing.assert_array_equal(np.isnan(got["mmi"]), np.isnan(mmi))
  # Sums over prompts in another order: equal to rounding.
  np.testing.assert_allclose(got["mmi"], mmi, rtol=1e-12, atol=1e-13)
  for name in ("s1", "s2", "null_head"):
    np.testing.assert_allclose(got[name], getattr(mom, name), rtol=1e-10, atol=1e-12,
                               err_msg=name)
  for name in ("cnt", "ge"):
    np.testing.assert_array_equal(got[name], getattr(mom, name), err_msg=name)
  assert mom.cnt[off].min() == design.n_surrogates
