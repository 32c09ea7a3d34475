"""Ablation evaluation: does removing or perturbing synergistic units hurt more than redundant or
random ones? Units are attention heads (--units=heads, the default), the experts of a
mixture-of-experts model (--units=experts; zero ablation removes an expert's contribution with
routing unchanged, noise goes into all of its weights) or both (--units=heads+experts).

  python run.py --experiment=ablation                          # default model
  python run.py --experiment=ablation --ranking=balance --sigmas=0,0.5,1,2,4 --n_random=10
  python run.py --experiment=ablation --model=<MoE dir> --units=experts --expert_activity=dense

--quick: 2 suite prompts per category, 32 tokens, fractions 0,.25,.5,.75,1, σ 0,0.5,2, 3 seeds,
families add,chain at difficulty ranks 1,3,5 with 8 examples, 200 bootstraps (explicit flags still win).

Writes results.json (divergence curves, auc_ratio with CI, perturbation accuracy per condition ×
σ × level), divergence.csv, perturbation.csv, head_scores.csv, divergence.png,
perturbation*.png and summary.md.
"""
from absl import app
from absl import flags

from experiments import common
from synergy_jax.pipeline import ablation, profile

flags.DEFINE_list("fractions", [f"{i / 10:g}" for i in range(11)],
                  "Fractions of the units (--units) zero-ablated (strictly increasing, in "
                  "[0, 1]).")
flags.DEFINE_integer("n_random", 5, "Random ablation orders (>= 2; the study uses >= 5).")
flags.DEFINE_integer("divergence_batch", 0, "Prompts per scoring batch (0: all at once). Each "
                     "batch compiles once; all fractions and orders share it.")
flags.DEFINE_integer("mask_chunk", 8, "Masks evaluated per lax.map step (memory: chunk × prompts "
                     "× tokens × vocabulary log-probs).")
flags.DEFINE_list("sigmas", ["0", "0.25", "0.5", "1", "2"], "Noise standard deviations.")
flags.DEFINE_enum("sigma_scale", "relative", ["relative", "absolute"],
                  "relative: σ × RMS of the unit weights of each unit's own kind (heads: all "
                  "q/o projection weights; experts: all gate/up/down weights); absolute: as "
                  "given.")
flags.DEFINE_float("perturb_fraction", 0.25, "Fraction of the units perturbed per condition.")
flags.DEFINE_integer("n_seeds", 5, "Noise seeds per condition and σ (random: a new unit set "
                     "each).")
flags.DEFINE_integer("n_examples", 32, "Examples per family × level.")
flags.DEFINE_integer("eval_seed", 2025, "Seed of the evaluation examples.")

FLAGS = flags.FLAGS


def config_from_flags() -> ablation.AblationConfig:
  q = common.quick_or
  levels = common.number_list("levels", int, quick_value=["1", "3", "5"])
  return ablation.AblationConfig(
      ranking=FLAGS.ranking, per_category=2 if FLAGS.quick else None,
      max_new_tokens=q("max_new_tokens", 32), batch_size=q("batch_size", 12),
      phiid=common.phiid_config(),
      fractions=common.number_list("fractions", quick_value=["0", "0.25", "0.5", "0.75", "1"]),
      n_random=FLAGS.n_random, divergence_batch=FLAGS.divergence_batch,
      mask_chunk=FLAGS.mask_chunk,
      sigmas=common.number_list("sigmas", quick_value=["0", "0.5", "2"]),
      sigma_scale=FLAGS.sigma_scale, perturb_fraction=FLAGS.perturb_fraction,
      n_seeds=q("n_seeds", 3), families=tuple(q("families", ["add", "chain"])),
      levels=levels,
      n_examples=q("n_examples", 8), eval_seed=FLAGS.eval_seed, n_boot=q("n_boot", 200),
      ci_level=FLAGS.ci_level, seed=FLAGS.seed, units=FLAGS.units,
      expert_activity=FLAGS.expert_activity)


def main(argv):
  del argv
  config = config_from_flags()
  prompts = profile.profile_prompts(FLAGS.prompts, per_category=config.per_category)
  path = common.run_dir("ablation")
  ablation.run_ablation(FLAGS.model, prompts, config, path, cache_dir=common.cache_dir(),
                        dtype=FLAGS.dtype, progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
