"""Trains the default model (or any Llama-style size) on the task + category-text corpus.

  python -m experiments.train --workdir=runs/train_default --export=default
  python run.py --experiment=train --quick      # a smoke run (under 3 min on 2 cores) into runs/train_quick

Resumes from the last checkpoint in --workdir when re-run with the same flags (after a crash or a
kill -9), ending with the same parameters as an uninterrupted run. With --export, writes the model,
tokenizer, emergence checkpoints and MODEL_CARD.md (accuracy of greedy generation per family ×
level, measured with tasks.evaluate) into the folder ("default": synergy_jax/assets/default/).
"""
from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

from experiments import common  # shared flags: --seed, --quick

_T0 = time.time()

flags.DEFINE_string("workdir", "runs/train_default", "Run folder (checkpoints, log.csv).")
flags.DEFINE_integer("steps", 3000, "Optimizer steps.")
flags.DEFINE_integer("train_batch_size", 32, "Rows per training batch.")
flags.DEFINE_integer("seq_len", 128, "Tokens per row.")
flags.DEFINE_float("learning_rate", 3e-3, "Peak learning rate.")
flags.DEFINE_integer("warmup_steps", 150, "Linear warmup steps.")
flags.DEFINE_float("end_learning_rate", 3e-4, "Learning rate at the end of the cosine decay.")
flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay (matrices only).")
flags.DEFINE_float("clip_norm", 1.0, "Global gradient-norm clipping.")
flags.DEFINE_float("task_fraction", 0.75, "Fraction of corpus lines that are task examples.")
flags.DEFINE_integer("save_every", 300, "Checkpoint interval in steps (plus step 0 and the end).")
flags.DEFINE_integer("eval_every", 500, "Teacher-forced task accuracy interval in steps.")
flags.DEFINE_integer("eval_examples", 32, "Examples per family × level in periodic evaluation.")
flags.DEFINE_integer("log_every", 25, "Loss logging interval in steps.")
flags.DEFINE_integer("hidden_size", 64, "Model width D.")
flags.DEFINE_integer("intermediate_size", 192, "MLP width F.")
flags.DEFINE_integer("num_layers", 6, "Decoder layers L.")
flags.DEFINE_integer("num_heads", 8, "Attention heads N per layer.")
flags.DEFINE_integer("head_dim", 8, "Head dimension K.")
flags.DEFINE_integer("stop_after", 0, "Stop (with a checkpoint) at this step, keeping the "
                     "--steps schedule; 0: run all --steps. The parameters at step s do not "
                     "depend on where the run stops.")
flags.DEFINE_bool("resume_from_last_good", False, "When the newest checkpoint of a run "
                  "(--workdir; finetune: each run under --out) is damaged (its content "
                  "checksum does not verify), move it aside into "
                  "damaged_checkpoints/ and resume from the newest good one; without this flag "
                  "a damaged checkpoint stops the run with an error naming its step.")
flags.DEFINE_string("export", "", "Folder to export the trained model into ('default': the "
                    "shipped assets); empty: no export.")
flags.DEFINE_integer("final_eval_examples", 200, "Examples per family × level for the final "
                     "generation-based accuracy table (with --export).")
flags.DEFINE_integer("final_eval_seed", 2024, "Seed of the final evaluation examples.")
flags.DEFINE_float("synergy_weight", 0.0, "λ of the ΦID training term (training/synergy.py): "
                   "loss = task loss − λ·tanh(J); λ > 0 pushes towards a synergistic core (or the "
                   "--synergy_target profile), λ < 0 away; 0: today's training, bit for bit.")
flags.DEFINE_string("synergy_target", "core", "J of the ΦID term: 'core' (mean sts − rtr of "
                    "middle-third layers minus the outer layers) or comma-separated balance "
                    "values (nats) over depth, e.g. '0,0.5,0' (J = −mean squared distance).")

FLAGS = flags.FLAGS

# --quick: a smoke run of the whole pipeline (train, checkpoints, evaluation), meant to take
# under three minutes on 2 CPU cores; each flag given explicitly still wins.
QUICK = {"workdir": "runs/train_quick", "steps": 120, "train_batch_size": 16,
         "warmup_steps": 12, "save_every": 40, "eval_every": 60, "eval_examples": 8,
         "log_every": 20, "final_eval_examples": 10}


def _flag(name):
  return common.quick_or(name, QUICK[name]) if name in QUICK else FLAGS[name].value


def train_config_from_flags():
  from synergy_jax import training
  return training.TrainConfig(
      steps=_flag("steps"), batch_size=_flag("train_batch_size"), seq_len=_flag("seq_len"),
      learning_rate=FLAGS.learning_rate, warmup_steps=_flag("warmup_steps"),
      end_learning_rate=FLAGS.end_learning_rate, weight_decay=FLAGS.weight_decay,
      clip_norm=FLAGS.clip_norm, seed=FLAGS.seed, task_fraction=FLAGS.task_fraction,
      save_every=_flag("save_every"), eval_every=_flag("eval_every"),
      eval_examples=_flag("eval_examples"), log_every=_flag("log_every"))


def reproduce_command(argv) -> str:
  """The command line that reruns this training, as the model card prints it."""
  rest = [a for a in argv[1:] if not a.startswith("--experiment")]
  via_run_py = os.path.basename(argv[0]) == "run.py"
  return ("python run.py --experiment=train " if via_run_py else "python -m experiments.train ") \
      + " ".join(rest)


def synergy_objective():
  """The --synergy_weight / --synergy_target term (None at weight 0), validated before any work
  (UserError naming the flag)."""
  from synergy_jax.training import synergy
  try:
    return synergy.from_flags(FLAGS.synergy_weight, FLAGS.synergy_target, FLAGS.num_layers)
  except ValueError as e:
    raise common.UserError(str(e)) from None


def main(argv):
  del argv
  objective = synergy_objective()
  logging.set_verbosity(logging.WARNING)  # orbax reports every save at INFO
  from synergy_jax import training
  from synergy_jax.training import default, model_card

  model_config = training.default_model_config(
      hidden_size=FLAGS.hidden_size, intermediate_size=FLAGS.intermediate_size,
      num_layers=FLAGS.num_layers, num_heads=FLAGS.num_heads, head_dim=FLAGS.head_dim)
  cfg = train_config_from_flags()
  from synergy_jax import results
  result = training.train(model_config, cfg, _flag("workdir"),
                          stop_after=FLAGS.stop_after or None,
                          resume_from_last_good=FLAGS.resume_from_last_good,
                          log=lambda s: print(s, flush=True), objective=objective)
  wall = time.time() - _T0
  summary = {"steps": result.step, "loop_wall_s": result.wall_s, "process_wall_s": wall}
  results.write_json(os.path.join(result.workdir, "train_wall.json"), summary)
  print(f"trained {result.step} steps in {wall:.0f} s (loop {result.wall_s:.0f} s)")
  if FLAGS.export:
    out = default.ASSETS if FLAGS.export == "default" else FLAGS.export
    steps = default.export(result.model, result.workdir, out)
    print(f"exported model and {len(steps)} emergence checkpoints {steps} to {out}")
    model_card.write(out, command=reproduce_command(sys.argv), model_config=model_config,
                     train_config=cfg, run_dir=result.workdir, wall=summary,
                     eval_examples=_flag("final_eval_examples"), eval_seed=FLAGS.final_eval_seed)
    print(f"wrote {os.path.join(out, 'MODEL_CARD.md')}")


if __name__ == "__main__":
  app.run(main)
