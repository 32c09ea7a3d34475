"""All-pairs ΦID with one process per host (TPU pod slice, multi-GPU cluster, or local CPU test).

  # on every host (process ids 0 … n − 1; see docs/multihost.md for Slurm / TPU VM forms):
  python -m experiments.multihost --coordinator=HOST0:8476 --num_processes=4 --process_id=$RANK \
      --model=default --max_new_tokens=100 --surrogates=20 --out=runs/multihost

Each process takes its share of the prompts (the built-in suite, or --prompts=FILE.jsonl, first
--num_prompts of them; the count is cut to a multiple of the number of devices), captures them
with ``pipeline.capture.collect_activity``, and the atoms come from ``distributed.all_pairs`` over
the global mesh (--pool=mean: per-prompt estimates summed over the mesh; --pool=concat: every
prompt gathered onto every device, the pairs split over the mesh); with --surrogates > 0 also the
null moments of sts and rtr under the --null design (default trial shuffling;
``distributed.null_moments`` gathers the activity and splits the surrogates over the global
mesh). Process 0 writes OUT/atoms.npz (atoms (N, N, 16) and the null moments) and
OUT/flags.json. Flags shared with the other experiments: --model, --prompts, --max_new_tokens,
--batch_size, --tau, --redundancy, --kind, --preprocess, --bias_correction, --surrogates, --null,
--seed, --out, --pool (as for the profile); --coordinator, --num_processes, --process_id and
--cpu_devices are this script's. Without --coordinator, jax.distributed detects the cluster
itself (Cloud TPU, Slurm, Open MPI).
"""
import json
import os

from absl import app
from absl import flags
import numpy as np

from experiments import common
from synergy_jax import distributed

FLAGS = flags.FLAGS
flags.DEFINE_string("coordinator", None, "host:port of process 0 (None: detect the cluster).")
flags.DEFINE_integer("num_processes", None, "Processes in the job (one per host).")
flags.DEFINE_integer("process_id", None, "This process's id, 0 … num_processes − 1.")
flags.DEFINE_integer("cpu_devices", 0, "CPU-only job: devices per process, gloo collectives "
                     "(0: use the accelerators).")
flags.DEFINE_integer("num_prompts", 0, "Use the first N prompts (0: all).")
flags.DEFINE_enum("pool", "mean", ["mean", "concat"],
                  "mean: estimate per prompt and average (each process its own prompts, summed "
                  "over the mesh); concat: pool the samples of all prompts (all prompts gathered "
                  "onto every device, pairs split over the mesh).")


def main(argv):
  del argv
  given = [FLAGS.coordinator is not None, FLAGS.num_processes is not None,
           FLAGS.process_id is not None]
  if any(given) and not all(given):
    raise common.UserError("--coordinator, --num_processes and --process_id go together (or "
                           "leave all three out to let jax.distributed detect the cluster)")
  distributed.initialize(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id,
                         cpu_devices=FLAGS.cpu_devices or None)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_x64", True)
  from synergy_jax import models, phiid  # pylint: disable=g-import-not-at-top
  from synergy_jax.analysis import nulls  # pylint: disable=g-import-not-at-top
  from synergy_jax.pipeline import capture  # pylint: disable=g-import-not-at-top
  from synergy_jax.tasks import prompts as prompt_lib  # pylint: disable=g-import-not-at-top

  texts = [p.text for p in (prompt_lib.load_prompts(FLAGS.prompts) if FLAGS.prompts
                            else prompt_lib.prompt_suite())]
  if FLAGS.num_prompts:
    texts = texts[:FLAGS.num_prompts]
  devices = len(jax.devices())
  used = len(texts) - len(texts) % devices
  if used == 0:
    raise common.UserError(f"{len(texts)} prompts are fewer than the {devices} devices")
  share = used // jax.process_count()
  mine = texts[jax.process_index() * share:(jax.process_index() + 1) * share]
  model = models.load(FLAGS.model, dtype=FLAGS.dtype)
  act = capture.collect_activity(model, models.load_tokenizer(FLAGS.model), mine,
                                 max_new_tokens=FLAGS.max_new_tokens,
                                 batch_size=FLAGS.batch_size)
  local = act.acts.astype(np.float64)
  config = common.phiid_config()
  mesh = distributed.prompt_mesh()
  atoms = distributed.all_pairs(distributed.global_prompts(local, mesh), config=config, mesh=mesh)
  out = {"atoms": atoms}
  if FLAGS.surrogates:
    design = nulls.draw_design(FLAGS.null, FLAGS.surrogates, used, FLAGS.max_new_tokens,
                               tau=FLAGS.tau, seed=FLAGS.seed)
    obs = atoms[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
    mom = distributed.null_moments(local, obs, design, config, mesh=mesh)
    out.update(s1=mom.s1, s2=mom.s2, cnt=mom.cnt, ge=mom.ge, null_head=mom.null_head)
  if jax.process_index() == 0:
    path = FLAGS.out or "runs/multihost"
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, "atoms.npz"), **out)
    with open(os.path.join(path, "flags.json"), "w", encoding="utf-8") as f:
      json.dump({"prompts_used": used, "processes": jax.process_count(), "devices": devices,
                 "config": config.as_dict(), "model": FLAGS.model,
                 "max_new_tokens": FLAGS.max_new_tokens, "surrogates": FLAGS.surrogates,
                 "null": FLAGS.null}, f, indent=1)
    print(f"wrote {path}/atoms.npz: atoms {atoms.shape} from {used} prompts on "
          f"{jax.process_count()} processes × {len(jax.local_devices())} devices")
  jax.distributed.shutdown()


if __name__ == "__main__":
  common.quiet_startup()
  app.run(main)
