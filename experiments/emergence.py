"""The synergistic-core profile at every saved training checkpoint (emergence during training).

  python run.py --experiment=emergence                 # shipped checkpoints of the default model
  python run.py --experiment=emergence --checkpoints=DIR --checkpoint_steps=0,500,1000
"""
from absl import app
from absl import flags

from experiments import common
from synergy_jax.pipeline import emergence, profile

flags.DEFINE_string("checkpoints", "default",
                    "Exported model folder whose checkpoints/step_NNNNNN/ are profiled "
                    "('default': the shipped model).")
flags.DEFINE_list("checkpoint_steps", None, "Subset of checkpoint steps to profile (default: all exported).")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  q = common.quick_or
  config = profile.ProfileConfig(tau=FLAGS.tau, redundancy=FLAGS.redundancy,
                                 n_surrogates=q("surrogates", 0), seed=FLAGS.seed,
                                 max_new_tokens=q("max_new_tokens", 40),
                                 batch_size=FLAGS.batch_size)
  prompts = profile.profile_prompts(FLAGS.prompts, per_category=2 if FLAGS.quick else None)
  steps = None if FLAGS.checkpoint_steps is None else [int(s) for s in FLAGS.checkpoint_steps]
  path = common.run_dir("emergence")
  emergence.run_emergence(prompts, config, path, cache_dir=common.cache_dir(),
                          path=FLAGS.checkpoints, steps=steps, progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
