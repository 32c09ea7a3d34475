"""Atomic writers, run directories, flags, config hashes and the resumable cache."""
import datetime
import pathlib
import json

import numpy as np
import pytest

from synergy_jax import results


def test_write_json_converts_and_nan_is_null(tmp_path):
  p = results.write_json(tmp_path / "r.json", {"a": np.float32(1.5), "b": np.arange(3),
                                                "c": float("nan"), "d": (1, np.int64(2)),
                                                "e": tmp_path})
  d = json.loads(p.read_text())
  assert d == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [1, 2], "e": str(tmp_path)}
  assert [f.name for f in tmp_path.iterdir()] == ["r.json"]
  with pytest.raises(ValueError, match="object"):
    results.write_json(tmp_path / "x.json", {"a": object()})


def test_failed_write_keeps_old_file(tmp_path):
  p = results.write_text(tmp_path / "s.md", "old")

  class Boom:
    def to_dict(self):
      raise RuntimeError("boom")
  with pytest.raises(RuntimeError):
    results.write_json(p, Boom())
  assert p.read_text() == "old"
  # A failure inside the atomic context leaves no temp file behind.
  with pytest.raises(TypeError):
    results.write_bytes(tmp_path / "b.bin", "not bytes")
  assert sorted(f.name for f in tmp_path.iterdir()) == ["s.md"]


def test_csv_and_npz_roundtrip(tmp_path):
  results.write_csv(tmp_path / "t.csv", {"layer": [0, 1], "z": [0.5, float("nan")]})
  assert (tmp_path / "t.csv").read_text() == "layer,z\n0,0.5\n1,nan\n"
  results.write_csv(tmp_path / "u.csv", [{"a": 1, "b": 2}, {"a": 3, "b": 4}])
  assert (tmp_path / "u.csv").read_text() == "a,b\n1,2\n3,4\n"
  with pytest.raises(ValueError, match="lengths"):
    results.write_csv(tmp_path / "v.csv", {"a": [1], "b": [1, 2]})
  results.write_npz(tmp_path / "a.npz", x=np.arange(4.0), y=np.eye(2))
  d = results.read_npz(tmp_path / "a.npz")
  np.testing.assert_array_equal(d["x"], np.arange(4.0))
  assert set(d) == {"x", "y"}


def test_run_dir(tmp_path):
  now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
  a = results.make_run_dir(root=tmp_path, experiment="profile", now=now)
  b = results.make_run_dir(root=tmp_path, experiment="profile", now=now)
  assert a.name == "profile-20260102-030405" and b.name == "profile-20260102-030405-2"
  c = results.make_run_dir(tmp_path / "given")
  assert c.is_dir() and results.make_run_dir(c) == c
  results.write_text(tmp_path / "file", "x")
  with pytest.raises(ValueError, match="not a directory"):
    results.make_run_dir(tmp_path / "file")


def test_dump_flags(tmp_path):
  class FakeFlags:
    def flag_values_dict(self):
      return {"model": "default", "quick": True, "fractions": [0.0, 0.5], "obj": object()}
  p = results.dump_flags(tmp_path, FakeFlags())
  d = json.loads(p.read_text())
  assert d["model"] == "default" and d["quick"] is True and d["fractions"] == [0.0, 0.5]
  assert d["obj"].startswith("<object")


def test_config_hash_stable_and_order_independent():
  h1 = results.config_hash({"a": 1, "b": [1.5, 2], "c": {"x": "y"}})
  h2 = results.config_hash({"c": {"x": "y"}, "b": (1.5, np.int64(2)), "a": 1})
  assert h1 == h2 and len(h1) == 16
  assert results.config_hash({"a": 1.0000001}) != results.config_hash({"a": 1.0})
  # Pinned value: sha256 of the canonical string '{"a":1}'.
  import hashlib
  assert results.config_hash({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()[:16]


def test_cached_computes_once_and_resumes(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    return {"atoms": np.arange(6.0).reshape(2, 3), "n": np.array(2)}
  key = {"model": "default", "tau": 1}
  a = results.cached(tmp_path, key, compute, "phiid")
  b = results.cached(tmp_path, key, compute, "phiid")
  assert len(calls) == 1
  np.testing.assert_array_equal(a["atoms"], b["atoms"])
  assert set(b) == {"atoms", "n"}
  single = results.cached(tmp_path, {"k": 2}, lambda: np.ones(3), "acts")
  np.testing.assert_array_equal(single, np.ones(3))
  again = results.cached(tmp_path, {"k": 2}, lambda: np.zeros(3), "acts")
  np.testing.assert_array_equal(again, np.ones(3))
  assert isinstance(again, np.ndarray)
  results.cached(tmp_path, {"k": 3}, lambda: np.zeros(3), "acts")
  assert len(list(tmp_path.glob("acts-*.npz"))) == 2


def test_cached_corrupt_file_named(tmp_path):
  key = {"x": 1}
  path = results.cache_path(tmp_path, key, "phiid")
  path.write_bytes(b"not a zip")
  with pytest.raises(ValueError, match=str(path.name)):
    results.cached(tmp_path, key, lambda: np.ones(2), "phiid")
  # A valid archive under the wrong name (another key) is refused too.
  results.write_npz(path, x=np.ones(2))
  with pytest.raises(ValueError, match="does not hold the key"):
    results.cached(tmp_path, key, lambda: np.ones(2), "phiid")
  with pytest.raises(ValueError, match="name"):
    results.cached(tmp_path, key, lambda: np.ones(2), "a/b")


def _dead_pid():
  import subprocess
  import sys
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def test_stale_tmp_files_of_dead_writers_are_removed(tmp_path):
  import os
  dead, alive = _dead_pid(), os.getppid()  # our parent runs for as long as this test does
  names = {"dead": f".results.json.{dead}.k3x9a1b2.tmp", "alive": f".atoms.npz.{alive}.abcdefgh.tmp",
           "other": ".notes.tmp", "plain": "results.json"}
  for n in names.values():
    (tmp_path / n).write_text("x")
  removed = results.clean_stale_tmp(tmp_path)
  assert [p.name for p in removed] == [names["dead"]]
  assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
      [names["alive"], names["other"], names["plain"]])
  # The cache cleans its directory on first use: a dead writer's leftover goes, a result stays.
  cache = tmp_path / "cache"
  cache.mkdir()
  (cache / f".activity-0123.npz.{dead}.zzzzzzzz.tmp").write_bytes(b"half a file")
  results.cached(cache, {"k": 1}, lambda: np.ones(2), "acts")
  assert [p.name for p in cache.iterdir()] == [results.cache_path(cache, {"k": 1}, "acts").name]


def test_atomic_writes_name_their_writer_and_leave_nothing(tmp_path):
  import os
  seen = []
  real_replace = os.replace

  def spy(src, dst):
    seen.append(pathlib.Path(src).name)
    return real_replace(src, dst)
  import unittest.mock
  with unittest.mock.patch.object(results.os, "replace", spy):
    results.write_json(tmp_path / "r.json", {"a": 1})
  assert len(seen) == 1 and seen[0].startswith(f".r.json.{os.getpid()}.") and seen[0].endswith(".tmp")
  assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_run_lifecycle_status_and_rerun_clears_previous_files(tmp_path):
  run = tmp_path / "run"
  cache = run / "cache"  # a cache inside --out survives the clearing
  results.start_run(run, experiment="profile", flags={"model": "default"}, keep=[cache])
  assert json.loads((run / "status.json").read_text())["status"] == "running"
  assert json.loads((run / "flags.json").read_text()) == {"model": "default"}
  results.write_npz(cache / "acts-1.npz", x=np.ones(1))
  results.write_csv(run / "head_scores_random.csv", {"a": [1]})
  results.write_json(run / "results.json", {"layer_profile": [0.5]})
  import os
  import unittest.mock
  written, real_replace = [], os.replace

  def spy(src, dst):
    written.append(pathlib.Path(dst).name)
    return real_replace(src, dst)
  with unittest.mock.patch.object(results.os, "replace", spy):
    done = results.complete_run(run)
  assert written == ["status.json", "results.json"]  # results.json is the last file written
  assert list(done) == ["status", "layer_profile"] and done["status"] == "complete"
  on_disk = json.loads((run / "results.json").read_text())
  assert on_disk == {"status": "complete", "layer_profile": [0.5]}
  assert json.loads((run / "status.json").read_text())["status"] == "complete"
  # A rerun into the same --out starts from an empty directory (the cache kept).
  results.start_run(run, experiment="profile", flags={"model": "x"}, keep=[cache])
  assert sorted(p.name for p in run.iterdir()) == ["cache", "flags.json", "status.json"]
  assert (cache / "acts-1.npz").exists()
  results.end_run(run, "interrupted", "stopped by Ctrl-C")
  st = json.loads((run / "status.json").read_text())
  assert st["status"] == "interrupted" and st["message"] == "stopped by Ctrl-C"
  with pytest.raises(FileNotFoundError, match="results.json"):
    results.complete_run(run)
  with pytest.raises(ValueError, match="status"):
    results.end_run(run, "weird")


def test_start_run_refuses_a_folder_that_is_not_a_run(tmp_path):
  mine = tmp_path / "my_thesis"
  mine.mkdir()
  (mine / "chapter1.tex").write_text("precious")
  with pytest.raises(ValueError, match="my_thesis.*status.json"):
    results.start_run(mine, experiment="profile", flags={})
  assert [p.name for p in mine.iterdir()] == ["chapter1.tex"]
