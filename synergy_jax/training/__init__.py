"""Training the default model: corpus, tokenizer, optax loop, orbax checkpoints, export.

Public API:
  TrainConfig, train(model_config, train_config, workdir) -> TrainResult   (loop.py)
  make_optimizer, make_train_step, weighted_nll, make_eval_set, make_exact_match_fn, read_log
  batch(seed, step, batch_size, seq_len, task_fraction)                    (data.py)
  build_tokenizer(), save_tokenizer(dir)                                   (tokenizer.py)
  default_model_config(), random_model(name="default", seed=0),
  export(params, config, run_dir, out_dir), emergence_checkpoints(path)    (default.py)
  checkpoints: manager / save / restore / steps                            (checkpoints.py)
"""
from synergy_jax.training import checkpoints
from synergy_jax.training.data import batch
from synergy_jax.training.default import (ASSETS, default_model_config, emergence_checkpoints,
                                          emergence_steps, export, random_model)
from synergy_jax.training.loop import (TrainConfig, TrainResult, make_eval_set,
                                       make_exact_match_fn, make_optimizer, make_train_step,
                                       read_log, train, weighted_nll)
from synergy_jax.training.tokenizer import build_tokenizer, save_tokenizer

__all__ = [
    "ASSETS", "TrainConfig", "TrainResult", "batch", "build_tokenizer", "checkpoints",
    "default_model_config", "emergence_checkpoints", "emergence_steps", "export",
    "make_eval_set", "make_exact_match_fn", "make_optimizer", "make_train_step", "random_model",
    "read_log", "save_tokenizer", "train", "weighted_nll",
]
