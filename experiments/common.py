"""Flags shared by every experiment (defined once, here) and the life cycle of one run.

An experiment module defines its own flags and ``main(argv)``; ``run.py`` registers it with one
:class:`Experiment` entry and runs it through :func:`run_main`, which validates every flag before
anything is loaded, turns user errors into one line on stderr (exit 2), records failed or
interrupted runs in the run directory's ``status.json``, and says how to resume after Ctrl-C.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Any, Callable

from absl import flags

flags.DEFINE_string("model", "default",
                    "Model: 'default' (shipped), a local HF directory, a hub id ('gpt2', "
                    "'EleutherAI/pythia-160m', optionally '@REVISION'; local HF cache, downloaded "
                    "when online), or 'random:BASE' for BASE's architecture with fresh seeded "
                    "weights.")
flags.DEFINE_string("revision", None, "Hub revision (branch, tag or commit) of a hub --model; "
                    "same as MODEL@REVISION.")
flags.DEFINE_string("out", None, "Run directory (default: runs/<experiment>-<UTC timestamp>). An "
                    "earlier run's files there are removed first.")
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
flags.DEFINE_enum("units", "heads", ["heads", "experts", "heads+experts"],
                  "Which units to profile: attention heads, the experts of a mixture-of-experts "
                  "model (routed then shared, per MoE layer), or both (heads first).")
flags.DEFINE_enum("expert_activity", "dense", ["dense", "routed"],
                  "Activity of an expert unit: 'dense' = norm of the expert's output at every "
                  "token (evaluated even where the router did not pick it); 'routed' = norm of "
                  "its router-weighted contribution (0 where not picked).")
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
                    "(prompts, units, time) and either num_layers and num_heads (units = layers "
                    "x heads) or a unit table (unit_layer, unit_index, unit_kind, unit_shared, "
                    "num_layers; docs/units.md).")
flags.DEFINE_list("families", ["add", "chain", "hop", "sort"],
                  "Task families (synergy_jax.tasks.FAMILIES) used by phase_sweep (pooled at every "
                  "difficulty rank) and ablation (accuracy evaluation).")
flags.DEFINE_list("levels", None,
                  "Difficulty ranks (1 = each family's easiest level in tasks.levels; a rank pools "
                  "all --families). Default: every rank. phase_sweep with --prompts: the "
                  "difficulty labels kept.")
flags.DEFINE_bool("shard", False, "Split the all-pairs ΦID grid over all local devices "
                  "(several GPUs/TPU cores); results are identical to one device.")
flags.DEFINE_integer("surrogates", 100, "Surrogates of the ΦID null (--null: trial shuffling by "
                     "default; 0: no null).")
flags.DEFINE_integer("n_boot", 1000, "Bootstrap replicates for confidence intervals.")
flags.DEFINE_float("ci_level", 0.95, "Confidence level of all intervals.")
flags.DEFINE_bool("verbose_errors", False, "Show the full traceback of a user error (bad flag, "
                  "missing file, unknown model) instead of one line.")

FLAGS = flags.FLAGS

# Range checks of numeric flags, applied to whichever of them exist (experiments add their own
# flags here: one entry each). Each maps a value to True when it is valid.
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "tau": (lambda v: v >= 1, ">= 1"),
    "max_new_tokens": (lambda v: v >= 1, ">= 1"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
    "surrogates": (lambda v: v >= 0, ">= 0"),
    "n_boot": (lambda v: v >= 1, ">= 1"),
    "ci_level": (lambda v: 0 < v < 1, "in (0, 1)"),
    "graph_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "n_prompts": (lambda v: v >= 1, ">= 1"),
    "n_transition_boot": (lambda v: v >= 1, ">= 1"),
    "n_perm": (lambda v: v >= 1, ">= 1"),
    "n_random": (lambda v: v >= 2, ">= 2"),
    "n_seeds": (lambda v: v >= 1, ">= 1"),
    "n_examples": (lambda v: v >= 1, ">= 1"),
    "perturb_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "mask_chunk": (lambda v: v >= 1, ">= 1"),
    "divergence_batch": (lambda v: v >= 0, ">= 0"),
}


class UserError(ValueError):
  """A bad flag value or a flag the chosen experiment does not use."""


@dataclasses.dataclass(frozen=True)
class Experiment:
  """One entry of run.py's table: the module holding ``main(argv)`` and its flags, and the shared
  flags above that it does not use (giving one of them explicitly is an error, not ignored)."""
  module: str
  ignores: tuple = ()
  loads_model: bool = True


def progress_fn():
  """tqdm wrapper for loops (or None when --noprogress). Pipelines name the stage, model and unit
  through ``desc`` and ``unit`` (see ``pipeline.specs.labelled``)."""
  if not FLAGS.progress:
    return None
  from tqdm import tqdm

  def bar(it, **kw):
    # Bars whose caller names no stage still say which experiment and model they belong to.
    kw["desc"] = kw.get("desc") or f"{_CURRENT['name'] or 'run'} · {FLAGS.model}"
    return tqdm(it, file=sys.stderr, leave=False, **kw)
  return bar


# The run of this process: set by run_dir(), read by run_main() to record how the run ended.
_CURRENT: dict = {"name": None, "experiment": None, "run_dir": None}
# {flag: (value used, why)} for each flag whose value the run chose itself: why is QUICK_OVERRIDES
# (a --quick value, ``quick_or``) or EXPERIMENT_DEFAULTS (this experiment's default for a flag
# defined by another, ``own_default``). flags.json shows the used value and, under the key named
# by why, the flag's own value it replaced.
_USED: dict[str, tuple[Any, str]] = {}
QUICK_OVERRIDES = "quick_overrides"
EXPERIMENT_DEFAULTS = "experiment_defaults"


def experiment_flags(experiment: Experiment | None = None) -> dict:
  """{flag: value} of the experiment's own flags and the shared ones it uses (no absl internals),
  each flag with the value the run used. Where the run chose a value itself (a --quick value,
  ``quick_or``; this experiment's default for another experiment's flag, ``own_default``) that
  differs from the flag's, ``"quick_overrides"`` / ``"experiment_defaults"`` give {flag: {"flag":
  its own value, "used": the value used}}."""
  ignored = set(experiment.ignores) if experiment else set()
  modules = {__name__, experiment.module if experiment else None}
  out, replaced = {}, {QUICK_OVERRIDES: {}, EXPERIMENT_DEFAULTS: {}}
  for module, module_flags in FLAGS.flags_by_module_dict().items():
    for f in module_flags:
      if f.name in ignored or (module not in modules and f.name not in _USED):
        continue
      value, why = _USED.get(f.name, (f.value, None))
      out[f.name] = value
      if why is not None and value != f.value:
        replaced[why][f.name] = {"flag": f.value, "used": value}
  if _CURRENT["name"]:
    out = {"experiment": _CURRENT["name"], **out}
  out = dict(sorted(out.items()))
  return {**out, **{k: v for k, v in replaced.items() if v}}


def _write_flags(path: pathlib.Path) -> None:
  from synergy_jax import results
  results.dump_flags(path, experiment_flags(_CURRENT["experiment"]))


def run_dir(experiment: str) -> pathlib.Path:
  """The run directory of this invocation: a previous run's files removed, ``status.json``
  ("running") and ``flags.json`` written (see ``results.start_run``)."""
  from synergy_jax import results
  path = results.make_run_dir(FLAGS.out, experiment=experiment)
  _CURRENT["run_dir"] = path  # before start_run: a Ctrl-C while it writes is still recorded
  results.start_run(path, experiment=experiment, flags=experiment_flags(_CURRENT["experiment"]),
                    keep=[FLAGS.cache_dir])
  return path


def cache_dir() -> pathlib.Path:
  path = pathlib.Path(FLAGS.cache_dir)
  path.mkdir(parents=True, exist_ok=True)
  return path


def finish(path: pathlib.Path) -> None:
  """Marks the run complete (``results.json`` rewritten last) and prints where it is."""
  from synergy_jax import results
  results.complete_run(path)
  _CURRENT["run_dir"] = None  # complete: a later error (e.g. a closed stdout) does not undo it
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
  """Flag ``name``'s value, or ``quick_value`` under --quick unless the flag was given explicitly.
  A quick value returned is recorded, so flags.json gives the value used (``experiment_flags``;
  rewritten if asked after the run directory was made)."""
  if FLAGS.quick and not FLAGS[name].present:
    _record(name, quick_value, QUICK_OVERRIDES)
    return quick_value
  return FLAGS[name].value


def own_default(name: str, default, quick_value=None):
  """Flag ``name`` (defined by another experiment, e.g. train's --steps in finetune) if given
  explicitly, else this experiment's ``default`` (``quick_value`` under --quick when given); the
  value returned is recorded for flags.json (``experiment_flags``)."""
  if FLAGS[name].present:
    _record(name, FLAGS[name].value, EXPERIMENT_DEFAULTS)
    return FLAGS[name].value
  if FLAGS.quick and quick_value is not None:
    _record(name, quick_value, QUICK_OVERRIDES)
    return quick_value
  _record(name, default, EXPERIMENT_DEFAULTS)
  return default


def _record(name: str, value, why: str) -> None:
  changed = _USED.get(name) != (value, why)
  _USED[name] = (value, why)
  if changed and _CURRENT["run_dir"] is not None:  # asked after flags.json was written
    _write_flags(_CURRENT["run_dir"])


def number_list(name: str, kind=float, quick_value=None) -> tuple | None:
  """The list flag ``name`` (or ``quick_value`` under --quick, see quick_or) as numbers of type
  ``kind``; None if unset. A bad entry raises UserError naming the flag and the entry."""
  values = FLAGS[name].value if quick_value is None else quick_or(name, quick_value)
  if values is None:
    return None
  out = []
  for v in values:
    try:
      x = kind(v)
    except ValueError:
      raise UserError(f"--{name}: {v!r} is not {'an integer' if kind is int else 'a number'}") \
          from None
    out.append(x)
  return tuple(out)


def _fold_revision() -> None:
  """Writes --revision into --model as MODEL@REVISION (the form models.load resolves), so every
  experiment reading FLAGS.model gets the revision."""
  from synergy_jax.models import hub
  if FLAGS.revision:
    FLAGS.model = hub.with_revision(FLAGS.model, FLAGS.revision)


def validate_flags(name: str, experiment: Experiment) -> None:
  """Every check that needs no model: ranges, flags the experiment ignores, files, the model name.

  Raises:
    UserError / FileNotFoundError naming the flag.
  """
  _USED.clear()  # a new invocation in this process: no values chosen yet
  given_ignored = [f for f in experiment.ignores if f in FLAGS and FLAGS[f].present]
  if given_ignored:
    raise UserError(f"--experiment={name} does not use "
                    + ", ".join(f"--{f}" for f in given_ignored) + "; leave it out")
  for flag, (ok, rule) in RANGES.items():
    if flag in FLAGS and not ok(FLAGS[flag].value):
      raise UserError(f"--{flag}={FLAGS[flag].value} must be {rule}")
  if "tau" in FLAGS and "tau" not in experiment.ignores:
    estimator = phiid_config()  # ValueError naming the clashing estimator flags
    if FLAGS["max_new_tokens"].present and "max_new_tokens" not in experiment.ignores:
      from synergy_jax.phiid import checks
      try:
        checks.check_length(FLAGS.max_new_tokens, estimator)
      except ValueError as e:
        raise UserError(f"--max_new_tokens={FLAGS.max_new_tokens}: {e}") from e
  for name in ("prompts", "acts"):
    if name in FLAGS and FLAGS[name].value is not None and name not in experiment.ignores:
      if not os.path.isfile(FLAGS[name].value):
        raise FileNotFoundError(f"--{name}={FLAGS[name].value}: no such file")
  if "revision" not in experiment.ignores:
    _fold_revision()
  if experiment.loads_model and "model" not in experiment.ignores:
    from synergy_jax.models import hub
    from synergy_jax.pipeline import specs
    model = FLAGS.model
    base = model[len(specs.RANDOM_PREFIX):] if model.startswith(specs.RANDOM_PREFIX) else model
    if not base:
      raise UserError(f"--model={FLAGS.model!r}: name a base model after 'random:'")
    try:
      hub.resolve(base)
    except FileNotFoundError as e:
      raise FileNotFoundError(f"--model={FLAGS.model}: {e}") from e
  if "units" in FLAGS and "units" not in experiment.ignores:
    _check_units(experiment)


def _check_units(experiment: Experiment) -> None:
  """--units against the model (a dense model has no experts) or --acts (whose file says)."""
  if "acts" in FLAGS and FLAGS["acts"].value is not None and "acts" not in experiment.ignores:
    for flag in ("units", "expert_activity"):
      if FLAGS[flag].present:
        raise UserError(f"--{flag} does not apply to --acts (the file's unit table, or its "
                        f"num_layers and num_heads, say what the units are)")
    return
  if experiment.loads_model and "model" not in experiment.ignores:
    from synergy_jax.pipeline import specs
    try:
      specs.check_units(FLAGS.model, FLAGS.units)
    except ValueError as e:
      raise UserError(f"--units={FLAGS.units} with --model={FLAGS.model}: {e}") from e


def quiet_startup() -> None:
  """Silences two harmless start-up messages: JAX's INFO line that no TPU backend could be
  initialised (shown under absl's logging on every machine without a TPU) and transformers'
  advice that PyTorch is absent (synergy_jax needs only its configs and tokenizers). Called by
  every user-facing entry point (run.py, experiments.multihost) before JAX starts."""
  import logging
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def _one_line(err: BaseException) -> str:
  return " ".join(str(err).split()) or type(err).__name__


def run_main(name: str, experiment: Experiment, main: Callable) -> Callable:
  """``main`` wrapped for absl's ``app.run``: validation first, then user errors as one line."""
  from synergy_jax import results

  def wrapped(argv):
    from experiments import interrupts
    interrupts.install()  # a Ctrl-C landing in a gc callback would otherwise be discarded
    _CURRENT.update(name=name, experiment=experiment, run_dir=None)
    try:
      validate_flags(name, experiment)
      return main(argv)
    except KeyboardInterrupt:
      if _CURRENT["run_dir"] is not None:
        results.end_run(_CURRENT["run_dir"], "interrupted", "stopped by Ctrl-C")
      print(f"\ninterrupted: rerun the same command to resume; finished work is cached in "
            f"--cache_dir={FLAGS.cache_dir}", file=sys.stderr)
      interrupts.exit_now(130)
    except (ValueError, FileNotFoundError) as e:
      if _CURRENT["run_dir"] is not None:
        results.end_run(_CURRENT["run_dir"], "failed", _one_line(e))
      if FLAGS.verbose_errors:
        raise
      print(f"error: {_one_line(e)}  (--verbose_errors shows the traceback)", file=sys.stderr)
      sys.exit(2)
    except BaseException as e:
      if _CURRENT["run_dir"] is not None and not isinstance(e, SystemExit):
        results.end_run(_CURRENT["run_dir"], "failed", f"{type(e).__name__}: {_one_line(e)}")
      raise
  return wrapped
