"""The shipped default model: its architecture, export into synergy_jax/assets/default/, the
emergence checkpoints, and the random-init baseline.

Layout of ``synergy_jax/assets/default/`` (Hugging Face style, loaded by ``models.load("default")``
and ``models.load_tokenizer("default")``)::

  config.json, model.safetensors        the trained model (float32)
  tokenizer.json, tokenizer_config.json the character tokenizer (training/tokenizer.py)
  MODEL_CARD.md                         command, architecture, data, wall time, accuracy table
  checkpoints/step_NNNNNN/              emergence checkpoints: config.json + model.safetensors
                                        stored in float16 (half the bytes; loaded as float32)
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil

import jax
import numpy as np

from synergy_jax import models
from synergy_jax.training import checkpoints, modelstate, tokenizer

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "assets" / "default"
_STEP_DIR = re.compile(r"^step_(\d{6})$")


def default_model_config(*, hidden_size: int = 64, intermediate_size: int = 192,
                         num_layers: int = 6, num_heads: int = 8, head_dim: int = 8,
                         max_position_embeddings: int = 512) -> "models.ModelConfig":
  """The default model's Llama-style architecture (the keyword values are the shipped ones)."""
  return models.ModelConfig(
      family="llama", model_type="llama", vocab_size=tokenizer.VOCAB_SIZE,
      hidden_size=hidden_size, intermediate_size=intermediate_size, num_layers=num_layers,
      num_heads=num_heads, num_kv_heads=num_heads, head_dim=head_dim,
      max_position_embeddings=max_position_embeddings, norm_eps=1e-5, rope_theta=10000.0,
      hidden_act="silu", tie_word_embeddings=False, bos_token_id=tokenizer.BOS_ID,
      eos_token_ids=(tokenizer.EOS_ID,), pad_token_id=tokenizer.PAD_ID)


def random_model(name: str = "default", seed: int = 0) -> "models.Model":
  """Same architecture as model ``name`` (a name ``models.load`` accepts), fresh seeded weights.

  This is what ``--model=random:default`` means: the baseline that has never been trained.
  """
  return models.init(models.load_config(name), seed)


def _write_fp16(model, directory: str) -> None:
  """Saves ``model`` with every nnx.Param stored in float16 (loaded back as float32)."""
  split, params = modelstate.split(model)
  half = jax.tree.map(lambda x: np.asarray(x, np.float16), params)
  models.save(split.merge(half), directory)


def export(model, run_dir: str | os.PathLike, out_dir: str | os.PathLike = ASSETS,
           *, emergence_steps: list[int] | None = None) -> list[int]:
  """Writes the trained model, tokenizer and emergence checkpoints into ``out_dir``.

  model: the trained module (float32; ``TrainResult.model``). run_dir: the training run whose
  orbax checkpoints give the emergence checkpoints (default: all of its steps), each restored
  into the module's nnx.Param state. Returns the exported steps. Existing
  ``out_dir/checkpoints`` is replaced.
  """
  out_dir = os.fspath(out_dir)
  os.makedirs(out_dir, exist_ok=True)
  split, params = modelstate.split(model)
  models.save(split.merge(jax.tree.map(lambda x: np.asarray(x, np.float32), params)), out_dir)
  tokenizer.save_tokenizer(out_dir)
  ckpt_dir = os.path.join(os.fspath(run_dir), "checkpoints")
  steps = checkpoints.steps(ckpt_dir) if emergence_steps is None else list(emergence_steps)
  if not steps:
    raise ValueError(f"run {run_dir!r} has no checkpoints to export")
  tmp_root = os.path.join(out_dir, ".checkpoints.tmp")
  shutil.rmtree(tmp_root, ignore_errors=True)
  for step in steps:
    _write_fp16(split.merge(_restore_params(ckpt_dir, step, params)),
                os.path.join(tmp_root, f"step_{step:06d}"))
  final = os.path.join(out_dir, "checkpoints")
  shutil.rmtree(final, ignore_errors=True)
  os.replace(tmp_root, final)
  return steps


def _restore_params(ckpt_dir: str, step: int, like_params):
  """Only the nnx.Param state of a training checkpoint (the optimizer state is read and
  dropped); like_params: the module's nnx.Param state (gives the structure)."""
  from synergy_jax.training import loop  # the state's structure comes from the run's optimizer

  with open(os.path.join(os.path.dirname(ckpt_dir), "run_config.json")) as f:
    cfg = loop.TrainConfig(**json.load(f)["train"])
  opt_state = jax.eval_shape(loop.make_optimizer(cfg).init, like_params)
  state = checkpoints.restore(ckpt_dir, step, {"params": like_params, "opt_state": opt_state})
  return state["params"]


def emergence_steps(path: str | os.PathLike = ASSETS) -> list[int]:
  """Steps of the exported emergence checkpoints under ``path/checkpoints``, ascending."""
  root = os.path.join(os.fspath(path), "checkpoints")
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root!r} does not exist (no emergence checkpoints were exported)")
  found = sorted(int(m.group(1)) for m in map(_STEP_DIR.match, os.listdir(root)) if m)
  if not found:
    raise FileNotFoundError(f"{root!r} holds no step_NNNNNN checkpoint folders")
  return found


def emergence_checkpoints(path: str | os.PathLike = ASSETS, *, steps: list[int] | None = None,
                          dtype: str = "float32") -> list[tuple[int, "models.Model"]]:
  """[(step, Model), ...] ascending by step, from ``path/checkpoints/step_NNNNNN/``.

  path: an exported model folder (default: the shipped one; "default" is accepted too).
  steps: a subset to load (each must exist).
  """
  path = ASSETS if os.fspath(path) == "default" else path
  available = emergence_steps(path)
  chosen = available if steps is None else list(steps)
  missing = sorted(set(chosen) - set(available))
  if missing:
    raise FileNotFoundError(f"no emergence checkpoint for steps {missing} under {path}; "
                            f"available: {available}")
  root = os.path.join(os.fspath(path), "checkpoints")
  return [(s, models.load(os.path.join(root, f"step_{s:06d}"), dtype=dtype)) for s in chosen]
