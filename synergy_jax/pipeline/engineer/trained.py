"""Trained models as reusable folders: train (or resume, or reuse) one run and export it with
its model card, keyed by everything the parameters depend on.

Layout under ``root``: ``<key hash>/run/`` (the training run: checkpoints, log.csv,
run_config.json) and ``<key hash>/model/`` (config.json, model.safetensors, tokenizer, key.json,
wall.json and, when asked, MODEL_CARD.md + accuracy.json), loadable with
``--model=<that folder>``. A finished
model folder is reused as it is; an interrupted run resumes from its last checkpoint (the loop's
exact resume); the model folder appears atomically (written beside, then renamed).
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import time

import numpy as np

from synergy_jax import results
from synergy_jax.training import default, loop, model_card


def model_key(model_config, train_config, objective, card_examples: int, card_seed: int) -> dict:
  return {"what": "trained_model", "model": model_config.to_hf(),
          "train": dataclasses.asdict(train_config),
          "synergy": None if objective is None else objective.record(),
          "card": {"examples": card_examples, "seed": card_seed}}


def trained_model(model_config, train_config, objective, root, *, card_examples: int = 10,
                  card_seed: int = 2024, log=print) -> pathlib.Path:
  """The folder of the model trained with this recipe (see module docstring).

  objective: ``training.synergy.SynergyObjective`` or None (the plain loop). card_examples:
  examples per family × level of the MODEL_CARD.md's generation-based accuracy table
  (``training.model_card``, with accuracy.json); 0 writes no card. The training run folder keys
  on the recipe only, so another card size reuses the trained parameters.
  """
  key = model_key(model_config, train_config, objective, card_examples, card_seed)
  base = pathlib.Path(root) / results.config_hash({k: v for k, v in key.items() if k != "card"})
  final = base / "model"
  if (final / "key.json").exists() and json.loads((final / "key.json").read_text()) == \
      json.loads(json.dumps(results.to_jsonable(key))):
    return final
  t0 = time.time()
  res = loop.train(model_config, train_config, base / "run", objective=objective, log=log)
  wall = {"steps": res.step, "loop_wall_s": res.wall_s, "process_wall_s": time.time() - t0}
  tmp = base / "model.tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  default.export(res.model, res.workdir, tmp, emergence_steps=[res.step])
  if card_examples:
    lam = "0" if objective is None else f"{objective.weight:g}, target {objective.target}"
    model_card.write(tmp, command=f"synergy_jax.pipeline.engineer.trained_model (λ = {lam})",
                     model_config=model_config, train_config=train_config, run_dir=res.workdir,
                     wall=wall, eval_examples=card_examples, eval_seed=card_seed)
  results.write_json(tmp / "wall.json", wall)
  results.write_json(tmp / "key.json", key)
  shutil.rmtree(final, ignore_errors=True)
  os.replace(tmp, final)
  return final


def parameter_count(model) -> int:
  import jax
  return int(sum(np.size(x) for x in jax.tree.leaves(model.params)))
