"""Training: pre-training the default model, and SFT / GRPO fine-tuning of chosen heads, all
through one shared loop (runner.py: resume, checksummed orbax checkpoints, log, evaluation).

Every objective trains the module's nnx.Param state: the model is split once
(``modelstate.split(model) -> (Split, params)``, i.e. ``nnx.split(model, nnx.Param, ...)``),
a jitted step runs over that state with optax, and the result is merged back into the module.

Public API:
  TrainConfig, train(model_config, train_config, workdir, *, init_model=None,
      resume_from_last_good=False) -> TrainResult (.model: the trained module)  (loop.py)
  make_optimizer, make_train_step, next_token_loss, weighted_nll, make_eval_set,
  exact_match(model, ids, answer_mask), read_log
  run_loop(workdir, state0, step_fn, evaluate, Schedule, ...) -> LoopResult (runner.py)
  make_step(loss_fn(model, batch), optimizer, graphdef)                    (steps.py)
  modelstate: split / Split.merge / params_of / like / to_pure / from_pure  (modelstate.py)
  TuneConfig, finetune.finetune(model, tokenizer, heads, cfg, workdir) -> TuneResult
      (tuning.py, finetune.py; objectives in sft.py and grpo.py; the head freeze in freeze.py)
  batch(seed, step, batch_size, seq_len, task_fraction)                    (data.py)
  build_tokenizer(), save_tokenizer(dir)                                   (tokenizer.py)
  default_model_config(), random_model(name="default", seed=0),
  export(model, run_dir, out_dir), emergence_checkpoints(path)             (default.py)
  checkpoints: manager / save / restore / latest_good / steps / checksum,
      DamagedCheckpoint, LayoutMismatch                                    (checkpoints.py)
"""
from synergy_jax.training import (checkpoints, finetune, freeze, grpo, modelstate, runner, sft,
                                  steps, tuning)
from synergy_jax.training.data import batch
from synergy_jax.training.default import (ASSETS, default_model_config, emergence_checkpoints,
                                          emergence_steps, export, random_model)
from synergy_jax.training.finetune import TuneResult
from synergy_jax.training.loop import (TrainConfig, TrainResult, exact_match, make_eval_set,
                                       make_optimizer, make_train_step, next_token_loss,
                                       read_log, train, weighted_nll)
from synergy_jax.training.runner import LoopResult, Schedule, run_loop
from synergy_jax.training.tuning import TuneConfig
from synergy_jax.training.tokenizer import build_tokenizer, save_tokenizer

__all__ = [
    "ASSETS", "LoopResult", "Schedule", "TrainConfig", "TrainResult", "TuneConfig", "TuneResult",
    "batch", "build_tokenizer", "checkpoints", "default_model_config", "emergence_checkpoints",
    "emergence_steps", "exact_match", "export", "finetune", "freeze", "grpo", "make_eval_set",
    "make_optimizer", "make_train_step", "modelstate", "next_token_loss", "random_model",
    "read_log", "run_loop", "runner", "save_tokenizer", "sft", "steps", "train", "tuning",
    "weighted_nll",
]
