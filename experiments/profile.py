"""Synergistic-core profile of a model's attention heads or MoE experts (the study's first
result; units: docs/units.md).

  python run.py                                  # default model, built-in prompt suite
  python run.py --experiment=profile --model=MOE_DIR --units=experts --expert_activity=routed
  python run.py --experiment=profile --model=PATH_OR_HUB_ID --redundancy=ccs --out=runs/x
  python run.py --experiment=profile --acts=recorded.npz      # activity from anywhere

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


def profile_config() -> "profile.ProfileConfig":
  """The ProfileConfig of the command line (ValueError on bad combinations, before any model
  is loaded); shared with the robustness experiment."""
  q = common.quick_or
  return profile.ProfileConfig(
      phiid=common.phiid_config(), n_surrogates=q("surrogates", 20), null=FLAGS.null,
      graph_fraction=FLAGS.graph_fraction, ranking=FLAGS.ranking, seed=FLAGS.seed,
      n_boot=q("n_boot", 200), baseline_inputs=FLAGS.baseline_inputs,
      max_new_tokens=q("max_new_tokens", 40), batch_size=FLAGS.batch_size, greedy=FLAGS.greedy,
      shard=FLAGS.shard, units=FLAGS.units, expert_activity=FLAGS.expert_activity)


def main(argv):
  del argv
  config = profile_config()
  if FLAGS.acts and FLAGS["model"].present:
    raise ValueError("give either --model or --acts, not both")
  path = common.run_dir("profile")
  if FLAGS.acts:
    profile.run_profile_acts(FLAGS.acts, config, path, cache_dir=common.cache_dir(),
                             progress=common.progress_fn())
  else:
    prompts = profile.profile_prompts(FLAGS.prompts, per_category=2 if FLAGS.quick else None)
    profile.run_profile(FLAGS.model, prompts, config, path, cache_dir=common.cache_dir(),
                        baseline=FLAGS.baseline, dtype=FLAGS.dtype,
                        progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
