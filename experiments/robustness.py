"""Does the inverted U survive the estimator? The profile under every estimator kind ×
preprocessing × score, from one capture (issue 10).

  python run.py --experiment=robustness                      # the default model
  python run.py --experiment=robustness --model=PATH --surrogates=100
  python run.py --experiment=robustness --acts=recorded.npz
  python run.py --experiment=robustness --model=MOE_DIR --units=heads+experts

Writes results.json (``variants``), robustness.csv, robustness.png and summary.md.
"""
from absl import app
from absl import flags

from experiments import common
from experiments import profile as profile_exp
from synergy_jax.pipeline import profile, robustness

flags.DEFINE_list("kinds", list(robustness.KINDS), "Estimator kinds of the panel.")
flags.DEFINE_list("preprocessings", list(robustness.PREPROCESS), "Preprocessings of the panel.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  for name, allowed in (("kinds", robustness.KINDS), ("preprocessings", robustness.PREPROCESS)):
    bad = [v for v in FLAGS[name].value if v not in allowed]
    if bad or not FLAGS[name].value:
      raise common.UserError(f"--{name}={','.join(FLAGS[name].value)!r}: choose a non-empty "
                             f"subset of {','.join(allowed)}")
  config = robustness.RobustnessConfig(profile_exp.profile_config(), tuple(FLAGS.kinds),
                                       tuple(FLAGS.preprocessings))
  if FLAGS.acts and FLAGS["model"].present:
    raise ValueError("give either --model or --acts, not both")
  prompts = None if FLAGS.acts else profile.profile_prompts(
      FLAGS.prompts, per_category=2 if FLAGS.quick else None)
  path = common.run_dir("robustness")
  robustness.run_robustness(None if FLAGS.acts else FLAGS.model, prompts, config, path,
                            cache_dir=common.cache_dir(), acts_path=FLAGS.acts, dtype=FLAGS.dtype,
                            progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
