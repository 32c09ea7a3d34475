"""The one entry point: ``python run.py --experiment=NAME [flags]``.

Shared flags: --model (default, a directory, a hub id[@revision], random:BASE), --out, --quick,
--cache_dir, --seed; each experiment adds its own (``--experiment=NAME --helpfull`` lists all).

``EXPERIMENTS`` is the table of experiments: adding one is one entry here (its module defines its
flags and ``main(argv)``). run.py parses ``--experiment`` alone first, imports that module (which
defines its flags), then hands the whole command line to absl and runs ``main`` through
``experiments.common.run_main`` (flag validation, one-line user errors, run status).
"""
import importlib
import sys

from absl import app
from absl import flags

from experiments import common

_SHARED_BY_PIPELINES = ("families", "levels")
# Flags of the profile's null, baselines and recorded activity, used by profile and robustness.
_PROFILE_ONLY = ("null", "baseline_inputs", "acts")
# Flags of the unit choice (heads / MoE experts), read by profile, phase_sweep, robustness.
_UNITS = ("units", "expert_activity")
EXPERIMENTS = {
    "profile": common.Experiment("experiments.profile",
                                 ignores=_SHARED_BY_PIPELINES + ("n_boot", "ci_level")),
    # emergence resolves --model at each of its --revisions itself, before loading any.
    "emergence": common.Experiment("experiments.emergence", loads_model=False,
                                   ignores=_SHARED_BY_PIPELINES + _PROFILE_ONLY + _UNITS + (
                                       "n_boot", "ci_level", "ranking", "shard")),
    "phase_sweep": common.Experiment("experiments.phase_sweep",
                                     ignores=_PROFILE_ONLY + ("ranking", "shard", "surrogates")),
    "ablation": common.Experiment("experiments.ablation",
                                  ignores=_PROFILE_ONLY + ("shard", "surrogates")),
    "train": common.Experiment("experiments.train", loads_model=False, ignores=(
        "model", "revision", "out", "cache_dir", "dtype", "prompts", "max_new_tokens",
        "batch_size", "tau", "redundancy", "ranking", "families", "levels", "shard", "surrogates",
        "n_boot", "ci_level", "progress", "kind", "preprocess", "bias_correction") + _PROFILE_ONLY
        + _UNITS),
    "robustness": common.Experiment("experiments.robustness", ignores=_SHARED_BY_PIPELINES + (
        "n_boot", "ci_level", "ranking", "kind", "preprocess")),
    "finetune": common.Experiment("experiments.finetune", ignores=_SHARED_BY_PIPELINES + (
        "shard", "surrogates") + _PROFILE_ONLY + _UNITS),
    # engineer and scale train their own models (cached under --cache_dir/trained_models).
    "engineer": common.Experiment("experiments.engineer", loads_model=False, ignores=(
        "model", "revision", "dtype", "prompts", "acts") + _SHARED_BY_PIPELINES + _UNITS),
    "scale": common.Experiment("experiments.scale", loads_model=False, ignores=(
        "model", "revision", "dtype", "prompts", "acts") + _SHARED_BY_PIPELINES + _UNITS),
}

flags.DEFINE_enum("experiment", "profile", list(EXPERIMENTS), "Which experiment to run.")
# The same flag alone in its own FlagValues: parsed first to choose the module, while --help and
# every other flag wait for the full parse.
_CHOOSER = flags.FlagValues()
flags.DEFINE_enum("experiment", "profile", list(EXPERIMENTS), "Which experiment to run.",
                  flag_values=_CHOOSER)


def main_entry(argv=None):
  common.quiet_startup()
  argv = list(sys.argv if argv is None else argv)
  try:
    _CHOOSER(argv, known_only=True)
  except flags.Error as e:
    raise SystemExit(f"run.py: {e}") from None
  name = _CHOOSER.experiment
  experiment = EXPERIMENTS[name]
  module = importlib.import_module(experiment.module)
  app.run(common.run_main(name, experiment, module.main), argv=argv)


if __name__ == "__main__":
  main_entry()
