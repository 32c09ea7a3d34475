"""Logits of the shipped default model and two of its emergence checkpoints on fixed inputs,
with the code at commit e393db5 (before training moved onto the nnx state). From the repository
root at that commit:

  PYTHONPATH=. python tests/training/data/make_default_logits.py \
      tests/training/data/default_logits_e393db5.npz
"""
import sys
import numpy as np
from synergy_jax import models, training
tok = models.load_tokenizer("default")
ids = np.asarray([tok("add 12+7=19\nsort cab=")["input_ids"]], np.int32)
out = {"input_ids": ids}
m = models.load("default")
out["final"] = np.asarray(m(ids).logits)
steps = training.emergence_steps()
for s, mm in training.emergence_checkpoints(steps=[steps[0], steps[len(steps) // 2]]):
  out[f"step_{s}"] = np.asarray(mm(ids).logits)
np.savez_compressed(sys.argv[1], **out)
print({k: v.shape for k, v in out.items()})
