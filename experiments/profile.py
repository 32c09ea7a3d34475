"""Synergistic-core profile of a model's attention heads (issue: the study's first result).

  python run.py                                  # default model, built-in prompt suite
  python run.py --experiment=profile --model=PATH_OR_HUB_ID --redundancy=ccs --out=runs/x

Writes results.json, head_scores.csv, layer_profile.csv, atoms.npz, figures and summary.md.
"""
from absl import app
from absl import flags

from experiments import common
from synergy_jax.pipeline import profile

flags.DEFINE_bool("greedy", True, "Greedy decoding (else sampling with --seed).")
flags.DEFINE_enum("pool", "mean", ["mean", "concat"],
                  "mean: estimate per prompt and average (the study); concat: pool samples.")
flags.DEFINE_float("graph_fraction", 0.1, "Fraction of strongest edges kept in the graph view.")
flags.DEFINE_bool("baseline", True, "Also profile the random-init model of the same architecture.")

FLAGS = flags.FLAGS


def main(argv):
  del argv
  q = common.quick_or
  config = profile.ProfileConfig(
      tau=FLAGS.tau, redundancy=FLAGS.redundancy, pool=FLAGS.pool,
      n_surrogates=q("surrogates", 20), graph_fraction=FLAGS.graph_fraction,
      ranking=FLAGS.ranking, seed=FLAGS.seed, max_new_tokens=q("max_new_tokens", 40),
      batch_size=FLAGS.batch_size, greedy=FLAGS.greedy, shard=FLAGS.shard)
  prompts = profile.profile_prompts(FLAGS.prompts, per_category=2 if FLAGS.quick else None)
  path = common.run_dir("profile")
  profile.run_profile(FLAGS.model, prompts, config, path, cache_dir=common.cache_dir(),
                      baseline=FLAGS.baseline, dtype=FLAGS.dtype, progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
