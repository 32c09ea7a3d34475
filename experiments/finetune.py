"""Fine-tunes the most synergistic, the most redundant and random heads (SFT or GRPO) and compares
their held-out accuracy over seeds.

  python run.py --experiment=finetune --method=grpo                 # default model, 5 seeds
  python run.py --experiment=finetune --method=sft --fraction=0.25 --seeds=8 --steps=200
  python run.py --experiment=finetune --method=sft --sft_jsonl=pairs.jsonl

Shares the training flags of experiments/train.py (--steps, --learning_rate, --warmup_steps,
--end_learning_rate, --weight_decay, --clip_norm, --save_every, --eval_every, --eval_examples,
--log_every, --train_batch_size, --resume_from_last_good); given explicitly they win, otherwise
this experiment's own defaults apply (60 steps, lr 3e-4 → 3e-5, warmup 5, decay 0.01, eval every
10 steps on 64 examples per cell, 16 prompts (GRPO) or rows (SFT) per step).
--quick: 2 seeds, 16 steps, eval every 8 on 32 examples, 8 prompts × G 4, profile on 2 prompts
per category × 32 tokens, 500 bootstraps.

A re-run with the same --out resumes every run from its last checkpoint and ends with the same
results. Writes results.json, runs.csv, curves.csv, learning_curves.png, final_accuracy.png,
summary.md, runs/<condition>_seed<k>/ (checkpoints, log.csv) and, with --save_params,
params/<condition>_seed<k>/ (loadable with models.load).
"""
from absl import app
from absl import flags

from experiments import common
from experiments import train as _train  # noqa: F401  (defines the shared training flags)
from synergy_jax.pipeline import finetune, profile
from synergy_jax.training import tuning

flags.DEFINE_enum("method", "grpo", list(tuning.METHODS), "Fine-tuning objective.")
flags.DEFINE_float("fraction", 0.5, "Fraction of heads fine-tuned per condition.")
flags.DEFINE_integer("seeds", 5, "Runs per condition (random: a new head set each).")
flags.DEFINE_list("tune_families", ["add", "chain", "hop"], "Task families to fine-tune and "
                  "evaluate on.")
flags.DEFINE_list("tune_levels", ["2"], "Task levels k (values in tasks.levels) to fine-tune "
                  "and evaluate on.")
flags.DEFINE_integer("group_size", 8, "GRPO: completions sampled per prompt (G).")
flags.DEFINE_float("temperature", 1.0, "GRPO: sampling temperature.")
flags.DEFINE_float("top_p", 1.0, "GRPO: nucleus sampling mass.")
flags.DEFINE_float("clip_eps", 0.2, "GRPO: ratio clipping ε.")
flags.DEFINE_float("kl_beta", 0.0, "GRPO: coefficient β of the k3 KL penalty to the base model.")
flags.DEFINE_bool("std_normalize", True, "GRPO: divide advantages by the group std "
                  "(DeepSeekMath); --nostd_normalize gives Dr. GRPO's advantages.")
flags.DEFINE_enum("aggregation", "token", list(tuning.AGGREGATIONS), "GRPO: loss aggregation "
                  "over tokens.")
flags.DEFINE_integer("updates_per_batch", 1, "GRPO: optimizer steps per sampled batch (μ).")
flags.DEFINE_float("format_reward", 0.0, "GRPO: reward added when a completion ends its line.")
flags.DEFINE_string("sft_jsonl", None, "SFT: JSONL of {\"prompt\", \"completion\"} pairs to train "
                    "on instead of task solutions (evaluation stays on the tasks).")
flags.DEFINE_float("window_start", 0.0, "Best-in-window accuracy: evaluations at steps >= this "
                   "fraction of --steps (step 0 excluded).")
flags.DEFINE_bool("save_params", False, "Write each run's tuned parameters to "
                  "params/<condition>_seed<k>/ (HF layout).")

FLAGS = flags.FLAGS


def config_from_flags() -> finetune.FinetuneConfig:
  q = common.quick_or
  own = common.own_default  # train's flags with this experiment's defaults
  tune = tuning.TuneConfig(
      method=FLAGS.method, steps=own("steps", 60, 16),
      learning_rate=own("learning_rate", 3e-4), warmup_steps=own("warmup_steps", 5, 2),
      end_learning_rate=own("end_learning_rate", 3e-5),
      weight_decay=own("weight_decay", 0.01), clip_norm=own("clip_norm", 1.0),
      families=tuple(FLAGS.tune_families), levels=tuple(int(k) for k in FLAGS.tune_levels),
      batch_size=own("train_batch_size", 16, 8), seed=FLAGS.seed, jsonl=FLAGS.sft_jsonl,
      group_size=q("group_size", 4), temperature=FLAGS.temperature, top_p=FLAGS.top_p,
      clip_eps=FLAGS.clip_eps, beta=FLAGS.kl_beta, std_normalize=FLAGS.std_normalize,
      aggregation=FLAGS.aggregation, updates_per_batch=FLAGS.updates_per_batch,
      format_reward=FLAGS.format_reward, eval_every=own("eval_every", 10, 8),
      eval_examples=own("eval_examples", 64, 32), save_every=own("save_every", 10, 8),
      log_every=own("log_every", 5, 4))
  return finetune.FinetuneConfig(
      tune=tune, fraction=FLAGS.fraction, seeds=q("seeds", 2), window_start=FLAGS.window_start,
      ranking=FLAGS.ranking, per_category=2 if FLAGS.quick else None,
      max_new_tokens=q("max_new_tokens", 32), batch_size=q("batch_size", 12),
      phiid=common.phiid_config(), n_boot=q("n_boot", 500), ci_level=FLAGS.ci_level,
      save_params=FLAGS.save_params)


def main(argv):
  del argv
  from absl import logging
  logging.set_verbosity(logging.WARNING)  # orbax reports every save at INFO
  config = config_from_flags()
  prompts = profile.profile_prompts(FLAGS.prompts, per_category=config.per_category)
  path = common.run_dir(f"finetune_{config.tune.method}")
  finetune.run_finetune(FLAGS.model, prompts, config, path, cache_dir=common.cache_dir(),
                        dtype=FLAGS.dtype, resume_from_last_good=FLAGS.resume_from_last_good,
                        progress=common.progress_fn(),
                        log=lambda s: print(s, flush=True))
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
