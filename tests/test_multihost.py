"""Two local processes × 2 CPU devices under jax.distributed (global mesh, gloo collectives):
capture, all-pairs ΦID and the default (trial-shuffling) surrogate null give what one process
holding every prompt gives, under pool="mean" (per-prompt estimates summed over the mesh) and
pool="concat" (every prompt gathered, pairs split over the mesh). The children always end: a
wall-clock limit, then they are killed; their stderr is shown on failure."""
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from synergy_jax import models, phiid, training
from synergy_jax.analysis import nulls
from synergy_jax.pipeline import capture

ROOT = pathlib.Path(__file__).resolve().parents[1]
NUM_PROCESSES = 2
CPU_DEVICES = 2
# Per child run. A run took 127 s of the former 150 s limit on a loaded 2-core machine (the two
# children, four simulated devices and the coordinator share the cores): generous, not tight.
LIMIT_S = 300
PROMPTS = ["The cat sat on", "Add 2 and 3:", "Once upon a time", "Hi there",
           "A long road", "Seven and", "Blue sky", "In the morning"]
NEW_TOKENS = 24
SURROGATES = 5  # odd, and not a multiple of the 4 devices: the padded plan is exercised


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_children(model_dir, prompts, out, pool):
  """experiments/multihost.py as 2 processes on this machine, as docs/multihost.md launches it."""
  share = len(PROMPTS) // NUM_PROCESSES
  cmd = [sys.executable, "-m", "experiments.multihost", f"--coordinator=127.0.0.1:{_free_port()}",
         f"--num_processes={NUM_PROCESSES}", f"--cpu_devices={CPU_DEVICES}",
         f"--model={model_dir}", f"--prompts={prompts}", f"--max_new_tokens={NEW_TOKENS}",
         f"--batch_size={share}", f"--surrogates={SURROGATES}", "--null=trial", "--seed=3",
         f"--pool={pool}", f"--out={out}"]
  logs = [open(out.parent / f"process{pid}.log", "w+", encoding="utf-8")  # no pipe can fill up
          for pid in range(NUM_PROCESSES)]
  env = {**os.environ, "PYTHONPATH": str(ROOT), "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
  procs = [subprocess.Popen(cmd + [f"--process_id={pid}"], cwd=ROOT, stdout=log, stderr=log,
                            env=env) for pid, log in enumerate(logs)]
  deadline = time.monotonic() + LIMIT_S
  errors = []
  try:
    for pid, proc in enumerate(procs):
      try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        errors.append(f"process {pid} still running after {LIMIT_S} s")
        break
      if proc.returncode != 0:
        errors.append(f"process {pid} exited {proc.returncode}")
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
    if errors:
      for pid, log in enumerate(logs):
        log.seek(0)
        errors.append(f"--- process {pid} output (tail):\n{log.read()[-3000:]}")
    for log in logs:
      log.close()
  if errors:
    pytest.fail("\n".join(errors))


@pytest.mark.parametrize("pool", ["mean", "concat"])
def test_two_processes_match_one(tmp_path, pool):
  cfg = training.default_model_config(hidden_size=32, intermediate_size=64, num_layers=2,
                                      num_heads=4, head_dim=8)
  model_dir = tmp_path / "tiny"
  models.save(models.init(cfg, seed=5), model_dir)
  training.save_tokenizer(model_dir)
  prompts = tmp_path / "prompts.jsonl"
  prompts.write_text("".join(json.dumps({"text": t}) + "\n" for t in PROMPTS))
  _run_children(model_dir, prompts, tmp_path / "run", pool)
  got = np.load(tmp_path / "run" / "atoms.npz")

  # One process with every prompt; capture batches as the processes had them (batch composition
  # changes activity at rounding level, see tests/pipeline/test_pipeline_capture.py).
  model, tok = models.load(model_dir), models.load_tokenizer(model_dir)
  share = len(PROMPTS) // NUM_PROCESSES
  acts = capture.collect_activity(model, tok, PROMPTS, max_new_tokens=NEW_TOKENS,
                                  batch_size=share).acts.astype(np.float64)
  config = phiid.PhiidConfig(pool=pool)
  with jax.enable_x64(True):
    mmi = np.asarray(phiid.all_pairs(acts, config=config, on_degenerate="mask"))
    design = nulls.draw_design("trial", SURROGATES, len(PROMPTS), NEW_TOKENS, seed=3)
    obs = mmi[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
    mom = nulls.null_moments(acts, obs, design, config)
  off = ~np.eye(mmi.shape[0], dtype=bool)
  assert np.isfinite(mmi[off]).all()
  assert json.loads((tmp_path / "run" / "flags.json").read_text())["config"]["pool"] == pool
  np.testing.assert_array_equal(np.isnan(got["atoms"]), np.isnan(mmi))
  # mean: sums over prompts in another order; concat: the same program. Equal to rounding.
  np.testing.assert_allclose(got["atoms"], mmi, rtol=1e-12, atol=1e-13)
  for name in ("s1", "s2", "null_head"):
    np.testing.assert_allclose(got[name], getattr(mom, name), rtol=1e-10, atol=1e-12,
                               err_msg=name)
  for name in ("cnt", "ge"):
    np.testing.assert_array_equal(got[name], getattr(mom, name), err_msg=name)
  assert mom.cnt[off].min() == design.n_surrogates


def test_a_constant_unit_is_an_error_naming_its_pairs_not_a_silent_nan():
  """distributed.all_pairs on one process (8 simulated devices, 8 prompts): a unit that is
  constant in one prompt makes its pairs non-finite; the default raises naming them, "mask"
  returns NaN there and finite values elsewhere."""
  from synergy_jax import distributed
  acts = np.random.default_rng(0).normal(size=(8, 3, 30))
  acts[5, 1] = 2.0  # unit 1 constant in prompt 5
  mesh = distributed.prompt_mesh()
  glob = distributed.global_prompts(acts, mesh)
  with pytest.raises(ValueError, match=r"\(0, 1\)"):
    distributed.all_pairs(glob, mesh=mesh)
  masked = distributed.all_pairs(glob, mesh=mesh, on_degenerate="mask")
  assert np.isnan(masked[0, 1]).all() and np.isnan(masked[1, 2]).all()
  assert np.isfinite(masked[0, 2]).all() and np.isfinite(masked[2, 0]).all()


@pytest.mark.parametrize("kind", ["gaussian", "copula"])
def test_concat_pool_on_a_prompt_mesh_equals_one_device(kind):
  """pool="concat" with the prompts split over 8 simulated devices (one process): the pooled
  statistics (standardisation; ranks for the copula) need every prompt, which
  distributed.all_pairs gathers; the atoms equal phiid.all_pairs on the whole array (per-prompt
  means would differ: checked too), and for the Gaussian kind the surrogate null equals
  nulls.null_moments."""
  from synergy_jax import distributed
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(8, 5, 20))
  acts[:, 1, 1:] += 0.7 * acts[:, 0, :-1]
  acts *= 1.0 + np.arange(8)[:, None, None]  # prompt scales: pooling differs from averaging
  config = phiid.PhiidConfig(kind=kind, pool="concat")
  mesh = distributed.prompt_mesh()
  with jax.enable_x64(True):
    # block_size=1: 5 row blocks (and 3 spare) over the 8 devices, so the half-grid band's x↔y
    # exchanged entries travel between devices
    got = distributed.all_pairs(distributed.global_prompts(acts, mesh), config=config, mesh=mesh,
                                block_size=1)
    want = np.asarray(phiid.all_pairs(acts, config=config))
    per_prompt = np.asarray(phiid.all_pairs(acts, config=config.replace(pool="mean")))
  off = ~np.eye(5, dtype=bool)
  assert np.isfinite(want[off]).all()
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
  assert np.max(np.abs(per_prompt[off] - want[off])) > 1e-3
  if kind != "gaussian":
    return  # the null's copula path is the estimator itself, checked above
  with jax.enable_x64(True):
    design = nulls.draw_design("trial", 4, 8, 20, seed=2)
    obs = want[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
    mom = distributed.null_moments(acts, obs, design, config, mesh=mesh)
    ref = nulls.null_moments(acts, obs, design, config)
  for name in ("s1", "s2", "null_head"):
    np.testing.assert_allclose(getattr(mom, name), getattr(ref, name), rtol=1e-10, atol=1e-12,
                               err_msg=name)
  for name in ("cnt", "ge"):
    np.testing.assert_array_equal(getattr(mom, name), getattr(ref, name), err_msg=name)
