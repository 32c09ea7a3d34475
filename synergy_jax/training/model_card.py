"""MODEL_CARD.md of an exported model: measured, not hand-typed.

The accuracy table comes from ``tasks.evaluate`` (greedy generation through ``models.generate``,
exact match) on the exported model as loaded back from disk; the sample continuations come from
the prompt suite.
"""
from __future__ import annotations

import datetime
import os
import platform

import jax
import numpy as np

from synergy_jax import models, results, tasks
from synergy_jax.training import default, modelstate, tokenizer as tok


def accuracy_table(model, hf_tokenizer, n: int, seed: int) -> dict[tuple[str, int], float]:
  """{(family, level): exact-match accuracy} over ``n`` examples each."""
  return {(f, k): tasks.evaluate(model, hf_tokenizer, f, k, n, seed)
          for f in tasks.FAMILIES for k in tasks.levels(f)}


def continuation(model, hf_tokenizer, text: str, n_tokens: int = 100) -> str:
  """Greedy continuation of ``text`` (``n_tokens`` tokens), decoded."""
  ids = np.asarray([hf_tokenizer(text)["input_ids"]], np.int32)
  out = models.generate(model, ids, np.ones_like(ids, bool), max_new_tokens=n_tokens, greedy=True)
  return hf_tokenizer.decode(np.asarray(out.tokens)[0, -n_tokens:].tolist(),
                             skip_special_tokens=True)


def _size_mb(path: str) -> float:
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total / 2 ** 20


def write(out_dir, *, command: str, model_config, train_config, run_dir: str, wall: dict,
          eval_examples: int, eval_seed: int) -> str:
  """Measures the exported model in ``out_dir`` and writes ``out_dir/MODEL_CARD.md``."""
  out_dir = os.fspath(out_dir)
  model = models.load(out_dir)
  hf_tok = models.load_tokenizer(out_dir)
  acc = accuracy_table(model, hf_tok, eval_examples, eval_seed)
  results.write_json(os.path.join(out_dir, "accuracy.json"),
                     {f"{fam}/{k}": v for (fam, k), v in acc.items()})
  n_params = int(sum(np.size(x) for x in jax.tree.leaves(modelstate.params_of(model))))
  steps = default.emergence_steps(out_dir)
  levels_max = max(len(tasks.levels(f)) for f in tasks.FAMILIES)
  lines = [
      "# synergy_jax default model",
      "",
      "A small Llama-style character-level language model trained by `synergy_jax.training` on "
      "difficulty-graded task families and templated text in the style of the six prompt "
      "categories. It is the offline default (`models.load(\"default\")`) and the laboratory for "
      "the emergence study (checkpoints below).",
      "",
      "## Reproduce",
      "",
      "```",
      command,
      "```",
      "",
      f"Wall time: {wall['process_wall_s'] / 60:.1f} min for the whole training process "
      f"({wall['loop_wall_s'] / 60:.1f} min in the training loop), measured on "
      f"{platform.machine()} with {os.cpu_count()} CPU cores (a shared 2-core sandbox; other jobs "
      f"ran at the same time), {datetime.date.today().isoformat()}. The run is deterministic: "
      "the same command gives the same parameters, also after a kill and resume.",
      "",
      "## Architecture",
      "",
      f"Llama (`model_type` llama): {model_config.num_layers} layers × {model_config.num_heads} "
      f"heads (= {model_config.num_units} units), head_dim {model_config.head_dim}, hidden "
      f"{model_config.hidden_size}, gated SiLU MLP width {model_config.intermediate_size}, "
      f"RMSNorm, rotary embeddings (theta {model_config.rope_theta:g}), untied embeddings, "
      f"vocabulary {model_config.vocab_size}; {n_params:,} parameters.",
      "",
      f"Tokenizer: characters (`tokenizer.json`, {tok.VOCAB_SIZE} ids): `<pad>`=0, `<s>`=1 "
      "(prepended when encoding), `</s>`=2, `<unk>`=3, newline and printable ASCII.",
      "",
      "## Data",
      "",
      f"Rows of {train_config.seq_len} characters: BOS, then newline-terminated lines until four "
      f"draws in a row do not fit. A line is a task example with probability "
      f"{train_config.task_fraction} (uniform over families and levels: "
      + ", ".join(f"{f} k∈{list(tasks.levels(f))}" for f in tasks.FAMILIES)
      + "), otherwise a templated sentence of one of the six prompt categories "
      "(`synergy_jax/training/text.py`). Loss is on task answers (+ newline) and on every "
      "character of text lines. Batches are a pure function of (seed, step).",
      "",
      "## Training",
      "",
      f"{train_config.steps} steps × batch {train_config.batch_size}; AdamW (b1 "
      f"{train_config.b1}, b2 {train_config.b2}, weight decay {train_config.weight_decay} on "
      f"matrices), peak learning rate {train_config.learning_rate:g} after "
      f"{train_config.warmup_steps} warmup steps, cosine decay to "
      f"{train_config.end_learning_rate:g}, gradient clipping at {train_config.clip_norm}. "
      f"Seed {train_config.seed}. Log: `{os.path.basename(run_dir)}/log.csv` of the run folder.",
      "",
      "## Accuracy (exact match of greedy generation, `tasks.evaluate`)",
      "",
      f"{eval_examples} examples per cell, seed {eval_seed}. Columns are the levels in ascending "
      "order; the value of k is given per cell.",
      "",
      "| family | " + " | ".join(f"level {i + 1}" for i in range(levels_max)) + " |",
      "|---|" + "---|" * levels_max,
  ]
  for f in tasks.FAMILIES:
    cells = [f"k={k}: {acc[(f, k)]:.2f}" for k in tasks.levels(f)]
    lines.append(f"| {f} | " + " | ".join(cells) + " |")
  lines += [
      "",
      "## Emergence checkpoints",
      "",
      f"`checkpoints/step_NNNNNN/` for steps {steps}: the same architecture, weights stored in "
      "float16 (half the bytes; `training.emergence_checkpoints()` loads them as float32). Step 0 "
      "is the random initialisation.",
      "",
      f"Size of this folder: {_size_mb(out_dir):.1f} MB.",
      "",
      "## Sample continuations (greedy, 100 tokens)",
      "",
  ]
  for category in tasks.CATEGORIES:
    p = tasks.prompt_suite(category)[0]
    text = continuation(model, hf_tok, p.text)
    lines += [f"- *{category}*: `{p.text}` → `{text!r}`", ""]
  card = "\n".join(lines) + "\n"
  tmp = os.path.join(out_dir, ".MODEL_CARD.md.tmp")
  with open(tmp, "w") as f:
    f.write(card)
  os.replace(tmp, os.path.join(out_dir, "MODEL_CARD.md"))
  return card
