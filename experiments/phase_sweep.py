"""Difficulty phase sweep: does information organisation shift from redundancy to synergy,
abruptly, as task difficulty rises?

  python run.py --experiment=phase_sweep                        # all task families, default model
  python run.py --experiment=phase_sweep --families=add,hop --levels=1,2,3,4,5,6   # ranks
  python run.py --experiment=phase_sweep --prompts=FILE.jsonl   # your prompts, "difficulty" field
  python run.py --experiment=phase_sweep --model=MOE_DIR --units=experts   # MoE experts as units

--quick: families add,chain, every other difficulty rank (1, 3, 5), 6 prompts per family and rank,
24 tokens, 50 bootstrap / permutation replicates (each explicitly given flag still wins).

Writes results.json (levels, order_parameter with CIs, accuracy, threshold, transition tests),
order_parameters.csv, accuracy.csv, per_prompt.csv, transition.csv, phase_sweep_*.png, summary.md.
"""
from absl import app
from absl import flags

from experiments import common
from synergy_jax.pipeline import phase_sweep

flags.DEFINE_integer("n_prompts", 32, "Prompts per family per difficulty rank.")
flags.DEFINE_enum("order_parameter", "balance", list(phase_sweep.ORDER_PARAMETERS),
                  "Order parameter whose transition test gives the verdict (all are reported).")
flags.DEFINE_integer("n_transition_boot", 1000, "Bootstrap replicates of the threshold CI.")
flags.DEFINE_integer("n_perm", 1000, "Shuffled-label permutations for the transition p-value.")

FLAGS = flags.FLAGS


def config_from_flags() -> phase_sweep.PhaseSweepConfig:
  q = common.quick_or
  families = tuple(q("families", ["add", "chain"]))
  # --quick sweeps every other shared rank of the task families (a prompt file keeps its labels)
  quick_levels = ([str(k) for k in phase_sweep.sweep_levels(families)[::2]]
                  if FLAGS.quick and FLAGS.prompts is None else None)
  levels = common.number_list("levels", float, quick_value=quick_levels)
  return phase_sweep.PhaseSweepConfig(
      families=families,
      levels=None if levels is None else tuple(float(k) for k in levels),
      n_per_family=q("n_prompts", 6), max_new_tokens=q("max_new_tokens", 24),
      batch_size=q("batch_size", 12), phiid=common.phiid_config(),
      order_parameter=FLAGS.order_parameter, n_boot=q("n_boot", 50),
      n_transition_boot=q("n_transition_boot", 50), n_perm=q("n_perm", 50),
      ci_level=FLAGS.ci_level, seed=FLAGS.seed, units=FLAGS.units,
      expert_activity=FLAGS.expert_activity)


def main(argv):
  del argv
  config = config_from_flags()
  phase_sweep.select_items(config, FLAGS.prompts)  # bad ranks or prompt file: before the run dir
  path = common.run_dir("phase_sweep")
  phase_sweep.run_phase_sweep(FLAGS.model, config, path, cache_dir=common.cache_dir(),
                              prompts_path=FLAGS.prompts, dtype=FLAGS.dtype,
                              progress=common.progress_fn())
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
