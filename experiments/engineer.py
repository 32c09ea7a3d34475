"""Synergy engineering: train the default architecture with the ΦID term at λ ∈ {−λ₀, 0, +λ₀}
for several seeds, profile and evaluate every model, and compare each λ with λ = 0 across seeds.

  python run.py --experiment=engineer --quick          # 2 seeds × 3 λ, short runs, small measures
  python run.py --experiment=engineer --lambdas=-2,0,2 --train_seeds=0,1,2,3 --train_steps=1500

Trained models are cached per (λ, seed, recipe) under --cache_dir/trained_models/ (with model
cards; a rerun reuses them, an interrupted run resumes from its last checkpoint), as are the
profiles and per-model measurements. Writes results.json, runs.csv, engineer.png, summary.md.
"""
from absl import app
from absl import flags
from absl import logging

from experiments import common

flags.DEFINE_list("lambdas", ["-1", "0", "1"], "Synergy weights λ (must include 0, the plain "
                  "run each other λ is compared with).")
flags.DEFINE_list("train_seeds", ["0", "1", "2"], "Training seeds (one run per λ × seed).")
flags.DEFINE_string("architecture", "6x8x64", "LAYERSxHEADSxWIDTH of the Llama-style model "
                    "(head_dim = WIDTH/HEADS, MLP 3·WIDTH); 6x8x64 is the default model.")
flags.DEFINE_string("target", "core", "The ΦID term's J: 'core' or a balance profile over "
                    "depth (comma-separated nats); see training/synergy.py.")
flags.DEFINE_integer("series_len", 64, "Positions per training row entering the ΦID term.")
flags.DEFINE_integer("objective_rows", 0, "Batch rows entering the ΦID term (0: all).")
flags.DEFINE_integer("train_steps", 3000, "Optimizer steps per run (the default recipe: 3000).")
flags.DEFINE_integer("train_rows", 32, "Rows per training batch.")
flags.DEFINE_integer("accuracy_examples", 50, "Examples per family × level of each model's "
                     "greedy exact-match accuracy table.")
flags.DEFINE_bool("ablation", True, "Also measure the ablation damage of synergistic vs random "
                  "heads (divergence AUC ratio) and accuracy under head noise.")
flags.DEFINE_integer("profile_prompts", 0, "Built-in suite prompts per category for the "
                     "profile and ablation (0: all).")

FLAGS = flags.FLAGS

common.RANGES.update({
    "train_steps": (lambda v: v >= 2, ">= 2"),
    "train_rows": (lambda v: v >= 1, ">= 1"),
    "series_len": (lambda v: v >= 3, ">= 3"),
    "objective_rows": (lambda v: v >= 0, ">= 0"),
    "accuracy_examples": (lambda v: v >= 1, ">= 1"),
    "profile_prompts": (lambda v: v >= 0, ">= 0"),
})

# --quick: 3 λ × 2 seeds of 40 steps on the default architecture, small measurements; each flag
# given explicitly still wins.
QUICK = {"train_seeds": ["0", "1"], "train_steps": 40, "train_rows": 8, "accuracy_examples": 4,
         "profile_prompts": 1, "max_new_tokens": 24, "surrogates": 4, "n_boot": 20}


def _q(name):
  return common.quick_or(name, QUICK[name]) if name in QUICK else FLAGS[name].value


def measure_config(with_ablation: bool | None = None):
  """The MeasureConfig of the flags (shared with the scale experiment); with_ablation
  overrides --ablation."""
  from synergy_jax.pipeline import ablation, profile
  from synergy_jax.pipeline.engineer import MeasureConfig
  per_cat = _q("profile_prompts") or None
  n_boot = _q("n_boot")
  pc = profile.ProfileConfig(
      phiid=common.phiid_config(), n_surrogates=_q("surrogates"), null=FLAGS.null,
      ranking=FLAGS.ranking, seed=FLAGS.seed, n_boot=n_boot,
      n_splits=4 if FLAGS.quick else 20, n_perm=50 if FLAGS.quick else 1000,
      local_heads=0, baseline_inputs=FLAGS.baseline_inputs, max_new_tokens=_q("max_new_tokens"),
      batch_size=FLAGS.batch_size, shard=FLAGS.shard)
  abl = None
  if FLAGS.ablation if with_ablation is None else with_ablation:
    quick = FLAGS.quick
    abl = ablation.AblationConfig(
        ranking=FLAGS.ranking if FLAGS.ranking != "excess" else "rank_difference",
        per_category=per_cat, max_new_tokens=_q("max_new_tokens"), batch_size=FLAGS.batch_size,
        phiid=common.phiid_config(),
        fractions=(0.0, 0.5, 1.0) if quick else tuple(i / 10 for i in range(11)),
        n_random=2 if quick else 5, sigmas=(0.0, 1.0) if quick else (0.0, 0.5, 1.0, 2.0),
        n_seeds=1 if quick else 3, families=("add",) if quick else ("add", "chain", "hop", "sort"),
        levels=(1,) if quick else None, n_examples=4 if quick else 16, n_boot=n_boot,
        ci_level=FLAGS.ci_level, seed=FLAGS.seed)
  return MeasureConfig(profile=pc, per_category=per_cat,
                       accuracy_examples=_q("accuracy_examples"), ablation=abl)


def train_config(steps: int, rows: int):
  """The default recipe at ``steps`` × ``rows`` (warmup 5 %, checkpoints every 10 %)."""
  from synergy_jax.training import TrainConfig
  return TrainConfig(steps=steps, batch_size=rows, warmup_steps=max(1, steps // 20),
                     save_every=max(1, steps // 10), eval_every=steps,
                     eval_examples=2 if FLAGS.quick else 8, log_every=max(1, steps // 10))


def engineer_config():
  """The EngineerConfig of the flags (UserError naming the flag on a bad value)."""
  from synergy_jax.pipeline.engineer import EngineerConfig
  lambdas = common.number_list("lambdas", float)
  seeds = common.number_list("train_seeds", int, QUICK["train_seeds"])
  if 0.0 not in lambdas:
    raise common.UserError(f"--lambdas={','.join(FLAGS.lambdas)} must include 0 (the plain run)")
  try:
    from synergy_jax.pipeline.engineer import parse_architecture
    parse_architecture(FLAGS.architecture)
  except ValueError as e:
    raise common.UserError(f"--architecture: {e}") from None
  try:
    from synergy_jax.training import synergy
    synergy.parse_target(FLAGS.target, parse_architecture(FLAGS.architecture)["num_layers"])
  except ValueError as e:
    raise common.UserError(f"--target: {e}") from None
  try:
    return EngineerConfig(
        weights=lambdas, seeds=seeds, architecture=FLAGS.architecture,
        train=train_config(_q("train_steps"), _q("train_rows")), target=FLAGS.target,
        series_len=FLAGS.series_len, rows=FLAGS.objective_rows, measure=measure_config(),
        n_boot=max(_q("n_boot"), 100), ci_level=FLAGS.ci_level)
  except ValueError as e:
    raise common.UserError(f"engineer flags: {e}") from None


def main(argv):
  del argv
  config = engineer_config()
  logging.set_verbosity(logging.WARNING)  # orbax reports every checkpoint save at INFO
  from synergy_jax.pipeline import engineer
  path = common.run_dir("engineer")
  engineer.run_engineer(config, path, cache_dir=common.cache_dir(),
                        progress=common.progress_fn(), log=lambda s: print(s, flush=True))
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
