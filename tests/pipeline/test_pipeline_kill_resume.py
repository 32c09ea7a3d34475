"""A profile run killed (SIGKILL) at random moments and then rerun ends with exactly the files of
an uninterrupted run, and leaves no temporary files in the run directory or the cache."""
import json
import pathlib
import random
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--noprogress", "--quick", "--nobaseline", "--surrogates=5", "--max_new_tokens=24"]


def _cmd(out, cache):
  return [sys.executable, "run.py", *ARGS, f"--out={out}", f"--cache_dir={cache}"]


def _tmp_files(*dirs):
  return [p for d in dirs for p in pathlib.Path(d).rglob("*") if p.name.endswith(".tmp")]


def test_profile_killed_at_random_times_resumes_to_identical_results(tmp_path):
  ref_out, ref_cache = tmp_path / "ref", tmp_path / "ref_cache"
  t0 = time.time()
  subprocess.run(_cmd(ref_out, ref_cache), cwd=ROOT, check=True, capture_output=True, timeout=300)
  duration = time.time() - t0
  out, cache = tmp_path / "run", tmp_path / "cache"
  seed = random.randrange(2**32)
  rng = random.Random(seed)
  # One kill per test run, at a random moment of a fresh run (the seed is in every message);
  # the rerun then resumes from whatever the killed run had cached.
  kills = [rng.uniform(0.2, 1.0) * duration]
  for after in kills:
    proc = subprocess.Popen(_cmd(out, cache), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
      proc.wait(timeout=after)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()
  subprocess.run(_cmd(out, cache), cwd=ROOT, check=True, capture_output=True, timeout=300)
  note = f"kill seed {seed}, kills at {[round(k, 1) for k in kills]} s of {duration:.1f} s"
  assert json.loads((out / "results.json").read_text()) == json.loads(
      (ref_out / "results.json").read_text()), note
  assert json.loads((out / "status.json").read_text())["status"] == "complete", note
  for name in ("head_scores.csv", "layer_profile.csv", "summary.md"):
    assert (out / name).read_text() == (ref_out / name).read_text(), (name, note)
  a, b = np.load(out / "atoms.npz"), np.load(ref_out / "atoms.npz")
  for key in ("atoms", "acts", "score"):
    np.testing.assert_array_equal(a[key], b[key], err_msg=note)
  assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref_out.iterdir()), note
  assert _tmp_files(out, cache) == [], note
