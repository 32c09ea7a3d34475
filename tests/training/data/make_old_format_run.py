"""How old_format_run/ was made: a training run in the previous checkpoint format (optax over the
plain params dict), stopped at step 2 of 4, the params at step 2, and the final params of the
same run uninterrupted, written with the code at commit e393db5 (before training moved onto the
nnx.Param state). Run from the repository root at that commit:

  PYTHONPATH=. python tests/training/data/make_old_format_run.py tests/training/data/old_format_run
  rm -r tests/training/data/old_format_run/run/checkpoints/0   # (size: step 2 suffices)
"""
import os, shutil, sys
import numpy as np, jax
from synergy_jax import training
out = sys.argv[1]
mc = training.default_model_config(hidden_size=8, intermediate_size=16, num_layers=2, num_heads=2, head_dim=4)
cfg = training.TrainConfig(steps=4, batch_size=2, seq_len=128, learning_rate=1e-2, warmup_steps=1,
                           end_learning_rate=1e-3, save_every=2, eval_every=4, eval_examples=1, log_every=1)
shutil.rmtree(out, ignore_errors=True)
part = training.train(mc, cfg, os.path.join(out, "run"), stop_after=2, log=lambda s: None)
full = training.train(mc, cfg, os.path.join(out, "..", "full_tmp"), log=lambda s: None)
flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(full.params)[0]}
np.savez(os.path.join(out, "final_params_step4.npz"), **flat)
flat2 = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(part.params)[0]}
np.savez(os.path.join(out, "params_step2.npz"), **flat2)
