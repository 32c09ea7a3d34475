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
flags.DEFINE_string("prompts", None,
                    "JSONL file of prompts, one object per line: text, optional category and "
                    "difficulty (phase_sweep needs a difficulty on every line). Default: the "
                    "built-in prompts of the experiment.")
flags.DEFINE_integer("max_new_tokens", 100, "Tokens generated per prompt (samples per series).")
flags.DEFINE_integer("batch_size", 8, "Prompts per generation batch.")
flags.DEFINE_integer("tau", 1, "ΦID lag in tokens.")
flags.DEFINE_enum("redundancy", "mmi", ["mmi", "ccs"], "Redundancy function of ΦID.")
flags.DEFINE_enum("ranking", "rank_difference", ["rank_difference", "balance", "excess"],
                  "Per-head score ordering heads from synergistic to redundant: "
                  "rank(synergy) - rank(redundancy), the mean pair balance sts/(sts+rtr), or "
                  "'excess': the rank difference of null-corrected atoms (observed minus the "
                  "surrogate mean; profile only, needs --surrogates >= 2).")
flags.DEFINE_enum("kind", "gaussian", ["gaussian", "copula", "discrete"],
                  "ΦID estimator: Gaussian, Gaussian copula (rank-normalised), or plug-in discrete.")
flags.DEFINE_enum("preprocess", "none", ["none", "detrend", "diff"],
                  "Per-prompt preprocessing of each series before lagging: none, linear "
                  "detrending, or first differences.")
flags.DEFINE_bool("bias_correction", False,
                  "Analytic small-sample bias correction of the Gaussian entropies.")
flags.DEFINE_enum("null", "trial", ["trial", "pair_shift", "circular"],
                  "Surrogate null: trial shuffling (y from another prompt; calibrated default), "
                  "circular shift of y's lagged-pair index, or the classic circular shift of y's "
                  "series (anti-conservative on autocorrelated series; for comparison).")
flags.DEFINE_enum("baseline_inputs", "matched", ["matched", "own"],
                  "Random-init baseline input: teacher-forced on the trained model's prompt + "
                  "generated tokens (matched), or its own free generations (own).")
flags.DEFINE_string("acts", None,
                    "Profile recorded activity instead of a model: an .npz file with keys acts "
                    "(prompts, units, time), num_layers and num_heads (units = layers x heads).")
flags.DEFINE_list("families", ["add", "chain", "hop", "sort"],
                  "Task families (synergy_jax.tasks.FAMILIES) used by phase_sweep (pooled at every "
                  "difficulty rank) and ablation (accuracy evaluation).")
flags.DEFINE_list("levels", None,
                  "Difficulty ranks (1 = each family's easiest level in tasks.levels; a rank pools "
                  "all --families). Default: every rank. phase_sweep with --prompts: the "
                  "difficulty labels kept.")
flags.DEFINE_bool("shard", False, "Split the all-pairs ΦID grid over all local devices "
                  "(several GPUs/TPU cores); results are identical to one device.")
flags.DEFINE_integer("surrogates", 100, "Circular-shift surrogates for the ΦID null (0: none).")
flags.DEFINE_integer("n_boot", 1000, "Bootstrap replicates for confidence intervals.")
flags.DEFINE_float("ci_level", 0.95, "Confidence level of all intervals.")

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


def phiid_config():
  """The ``phiid.PhiidConfig`` of --tau, --redundancy, --kind, --preprocess, --bias_correction
  and ``--pool`` where the experiment defines it (ValueError naming the clash, before any model
  is loaded)."""
  from synergy_jax.phiid.config import PhiidConfig
  pool = FLAGS["pool"].value if "pool" in FLAGS else "mean"
  try:
    return PhiidConfig(tau=FLAGS.tau, redundancy=FLAGS.redundancy, kind=FLAGS.kind, pool=pool,
                       preprocess=FLAGS.preprocess, bias_correction=FLAGS.bias_correction)
  except ValueError as e:
    raise ValueError(f"estimator flags: {e}") from e


def quick_or(name: str, quick_value):
  """Flag ``name``'s value, or ``quick_value`` under --quick unless the flag was given explicitly."""
  if FLAGS.quick and not FLAGS[name].present:
    return quick_value
  return FLAGS[name].value
