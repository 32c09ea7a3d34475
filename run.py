"""The one entry point: ``python run.py --experiment=NAME [flags]``.

Dispatches to ``experiments/NAME.py``; every experiment is also runnable on its own
(``python -m experiments.profile --helpfull``). This file only chooses the module and hands the
command line to absl, which parses the shared flags (``--model``, ``--out``, ``--quick``, ...)
and the experiment's own.
"""
import importlib
import sys

from absl import app
from absl import flags

EXPERIMENTS = ("profile", "phase_sweep", "ablation", "train", "emergence", "robustness", "finetune")

flags.DEFINE_enum("experiment", "profile", EXPERIMENTS, "Which experiment to run.")


def _chosen_experiment(argv):
  """Reads --experiment from argv before absl parses it (the module defines the other flags)."""
  name = "profile"
  for i, arg in enumerate(argv[1:], start=1):
    if arg.startswith("--experiment="):
      name = arg.split("=", 1)[1]
    elif arg == "--experiment" and i + 1 < len(argv):
      name = argv[i + 1]
  if name not in EXPERIMENTS:
    raise SystemExit(f"run.py: unknown --experiment={name!r}; choose one of {', '.join(EXPERIMENTS)}")
  return name


def main_entry():
  name = _chosen_experiment(sys.argv)
  module = importlib.import_module(f"experiments.{name}")
  app.run(module.main)


if __name__ == "__main__":
  main_entry()
