"""The synergistic-core profile at successive training checkpoints (emergence during training).

  python run.py --experiment=emergence                 # shipped checkpoints of the default model
  python run.py --experiment=emergence --checkpoints=DIR --checkpoint_steps=0,500,1000
  python run.py --experiment=emergence --model=EleutherAI/pythia-160m --revisions=pythia
  python run.py --experiment=emergence --model=EleutherAI/pythia-160m --revisions=step0,step1000

With --revisions, --model is a hub id profiled at each revision (local HF cache, downloaded when
online); without, the checkpoints of an exported training run (--checkpoints) are profiled.
"""
from absl import app
from absl import flags

from experiments import common
from synergy_jax.pipeline import emergence, profile

flags.DEFINE_string("checkpoints", "default",
                    "Exported model folder whose checkpoints/step_NNNNNN/ are profiled "
                    "('default': the shipped model). Not used with --revisions.")
flags.DEFINE_list("checkpoint_steps", None, "Subset of checkpoint steps to profile (default: all "
                  "exported). Not used with --revisions.")
flags.DEFINE_list("revisions", None, "Hub revisions of --model to profile, e.g. "
                  "step0,step1000,step143000, or a preset: "
                  + ", ".join(f"'{k}' ({len(v)} revisions {v[0]}, {v[1]}, …, {v[-1]})"
                              for k, v in emergence.PRESETS.items()) + ".")

FLAGS = flags.FLAGS


def config_from_flags() -> profile.ProfileConfig:
  q = common.quick_or
  return profile.ProfileConfig(phiid=common.phiid_config(),
                               n_surrogates=q("surrogates", 0), seed=FLAGS.seed,
                               max_new_tokens=q("max_new_tokens", 40),
                               batch_size=FLAGS.batch_size)


def _check_exported(folder: str, steps) -> None:
  """--checkpoints names an exported model folder holding every --checkpoint_steps (nothing is
  loaded); raises FileNotFoundError naming the flag."""
  import os

  from synergy_jax import training
  root = training.ASSETS if folder == "default" else folder
  if not os.path.isdir(root):
    raise FileNotFoundError(f"--checkpoints={folder}: no such folder")
  try:
    available = training.emergence_steps(root)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"--checkpoints={folder}: {e}") from e
  missing = sorted(set(steps or ()) - set(available))
  if missing:
    raise common.UserError(f"--checkpoint_steps: no exported checkpoint for steps {missing} "
                           f"under --checkpoints={folder}; available: {available}")


def main(argv):
  del argv
  config = config_from_flags()
  prompts = profile.profile_prompts(FLAGS.prompts, per_category=2 if FLAGS.quick else None)
  if FLAGS.revisions is not None:
    for name in ("checkpoints", "checkpoint_steps"):
      if FLAGS[name].present:
        raise common.UserError(f"--{name} is for exported checkpoints; with --revisions the "
                               "checkpoints are revisions of --model")
    revisions = emergence.resolve_revisions(FLAGS.model, FLAGS.revisions)
    path = common.run_dir("emergence")
    emergence.run_emergence_hub(FLAGS.model, revisions, prompts, config, path,
                                cache_dir=common.cache_dir(), dtype=FLAGS.dtype,
                                progress=common.progress_fn())
  else:
    if FLAGS["model"].present:
      raise common.UserError("--model is used with --revisions (a hub model's checkpoints); "
                             "exported checkpoints are chosen with --checkpoints")
    steps = common.number_list("checkpoint_steps", int)
    _check_exported(FLAGS.checkpoints, steps)
    path = common.run_dir("emergence")
    emergence.run_emergence(prompts, config, path, cache_dir=common.cache_dir(),
                            path=FLAGS.checkpoints, steps=steps, dtype=FLAGS.dtype,
                            progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
