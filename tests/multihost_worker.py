"""One process of the 2-process test in tests/test_multihost.py (not a test module itself).

  python tests/multihost_worker.py PORT PROCESS_ID NUM_PROCESSES MODEL_DIR OUT.npz

Joins a CPU job of NUM_PROCESSES processes × 2 devices (gloo collectives), captures its own share
of the prompts with the public capture API, and computes through the global mesh: all-pairs MMI
atoms of the captured activity and the circular-shift null moments. Process 0 writes
the results to OUT.npz.
"""
import sys

import numpy as np

from synergy_jax import distributed

PROMPTS = ["The cat sat on", "Add 2 and 3:", "Once upon a time", "Hi there",
           "A long road", "Seven and", "Blue sky", "In the morning"]
NEW_TOKENS = 24
CPU_DEVICES = 2


def main(port, pid, nproc, model_dir, out):
  distributed.initialize(f"127.0.0.1:{port}", nproc, pid, cpu_devices=CPU_DEVICES, timeout_s=60)
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_enable_x64", True)
  from synergy_jax import models, phiid  # pylint: disable=g-import-not-at-top
  from synergy_jax.analysis import nulls  # pylint: disable=g-import-not-at-top
  from synergy_jax.pipeline import capture  # pylint: disable=g-import-not-at-top
  assert jax.process_count() == nproc and len(jax.local_devices()) == CPU_DEVICES
  share = len(PROMPTS) // nproc
  mine = PROMPTS[pid * share:(pid + 1) * share]
  model, tok = models.load(model_dir), models.load_tokenizer(model_dir)
  act = capture.collect_activity(model, tok, mine, max_new_tokens=NEW_TOKENS, batch_size=share)
  local = act.acts.astype(np.float64)
  mesh = distributed.prompt_mesh()
  acts = distributed.global_prompts(local, mesh)
  mmi = distributed.all_pairs(acts, config=phiid.PhiidConfig(), mesh=mesh)
  design = nulls.draw_design("circular", 4, len(PROMPTS), NEW_TOKENS, seed=3)
  obs = mmi[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
  mom = distributed.null_moments(local, obs, design, phiid.PhiidConfig(), mesh=mesh)
  if pid == 0:
    np.savez(out, mmi=mmi, s1=mom.s1, s2=mom.s2, cnt=mom.cnt, ge=mom.ge,
             null_head=mom.null_head)
  jax.distributed.shutdown()


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
