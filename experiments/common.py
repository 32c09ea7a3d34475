"""Flags shared by every experiment (defined once, here) and small helpers for the scripts."""
from __future__ import annotations

import os
import pathlib
import sys

from absl import flags

flags.DEFINE_string("model", "default",
                    "Model: 'default' (shipped), a local HF directory, a hub id (local HF cache), "
                    "or 'random:BASE' for BASE's architecture with fresh seeded weights.")
flags.DEFINE_string("out", None, "Run directory (default: runs/<experiment>-<UTC timestamp>).")
flags.DEFINE_string("cache_dir", "runs/cache",
                    "Cache of intermediates (activity, ΦID atoms) keyed by a hash of their config; "
                    "a repeated or interrupted run reuses them.")
flags.DEFINE_bool("quick", False, "A small, fast configuration (tests, smoke runs).")
flags.DEFINE_integer("seed", 0, "Seed for random baselines, surrogates, bootstraps and sampling.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Model parameter dtype.")
flags.DEFINE_bool("progress", True, "Show progress bars.")

FLAGS = flags.FLAGS


def progress_fn():
  """tqdm wrapper for loops (or None when --noprogress / not a terminal)."""
  if not FLAGS.progress:
    return None
  from tqdm import tqdm
  return lambda it, **kw: tqdm(it, file=sys.stderr, leave=False, **kw)


def run_dir(experiment: str) -> pathlib.Path:
  """The run directory for this invocation, with flags.json written into it."""
  from synergy_jax import results
  path = results.make_run_dir(FLAGS.out, experiment=experiment)
  results.dump_flags(path, FLAGS)
  return path


def cache_dir() -> pathlib.Path:
  path = pathlib.Path(FLAGS.cache_dir)
  path.mkdir(parents=True, exist_ok=True)
  return path


def finish(path: pathlib.Path) -> None:
  """Prints where the results are and the summary."""
  summary = path / "summary.md"
  print(f"\nresults written to {os.path.abspath(path)}")
  if summary.exists():
    print(summary.read_text())


def quick_or(name: str, quick_value):
  """Flag ``name``'s value, or ``quick_value`` under --quick unless the flag was given explicitly."""
  if FLAGS.quick and not FLAGS[name].present:
    return quick_value
  return FLAGS[name].value
