"""How the synergistic core depends on model size: the default recipe at several sizes, each
saved with its model card and profiled against its random-init baseline.

  python run.py --experiment=scale --quick           # 3 tiny sizes, 40 steps each
  python run.py --experiment=scale --sizes=2x4x64,6x8x64,12x16x256 --train_steps=3000

Models are cached under --cache_dir/trained_models/ (reused by later runs; each folder loads as
--model=FOLDER). Writes results.json, sizes.csv, scale.png (depth trend, core contrast,
reliability and accuracy against parameter count, log x) and summary.md. Training and
measurement flags (--train_steps, --train_rows, --accuracy_examples, --profile_prompts) are the
engineer experiment's.
"""
from absl import app
from absl import flags
from absl import logging

from experiments import common
from experiments import engineer  # the shared training and measurement flags

flags.DEFINE_list("sizes", ["2x4x64", "4x4x64", "6x8x64", "8x8x128", "12x16x256"],
                  "Architectures LAYERSxHEADSxWIDTH (head_dim = WIDTH/HEADS, MLP 3·WIDTH).")
flags.DEFINE_integer("card_examples", 20, "Examples per family × level of each model card's "
                     "generation-based accuracy table (0: no card).")

FLAGS = flags.FLAGS
common.RANGES["card_examples"] = (lambda v: v >= 0, ">= 0")
QUICK = {"sizes": ["3x2x16", "3x4x32", "4x4x64"], "card_examples": 1}


def scale_config():
  from synergy_jax.pipeline.engineer import parse_architecture
  from synergy_jax.pipeline.scale import ScaleConfig
  sizes = common.quick_or("sizes", QUICK["sizes"])
  for s in sizes:
    try:
      parse_architecture(s)
    except ValueError as e:
      raise common.UserError(f"--sizes: {e}") from None
  try:
    return ScaleConfig(
        sizes=tuple(sizes), card_examples=common.quick_or("card_examples", QUICK["card_examples"]),
        train=engineer.train_config(engineer._q("train_steps"), engineer._q("train_rows")),
        measure=engineer.measure_config(with_ablation=False))
  except ValueError as e:
    raise common.UserError(f"scale flags: {e}") from None


def main(argv):
  del argv
  config = scale_config()
  logging.set_verbosity(logging.WARNING)
  from synergy_jax.pipeline import scale
  path = common.run_dir("scale")
  scale.run_scale(config, path, cache_dir=common.cache_dir(), progress=common.progress_fn(),
                  log=lambda s: print(s, flush=True))
  common.finish(path)


if __name__ == "__main__":
  app.run(main)
