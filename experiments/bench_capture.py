"""Speed of generation with per-head capture: synergy_jax vs transformers (PyTorch, eager).

  python -m experiments.bench_capture [--models=stories260k,random20m] [--prompts=8]
      [--new_tokens=100] [--repeats=3] [--out=runs/bench_capture.json]

For each model, both implementations greedily generate --new_tokens tokens for the same
--prompts left-padded prompts with the per-head output norms captured at every generated token
(PyTorch: forward pre-hooks on every o_proj). Same weights, same machine, same process. Reports
tokens/s (steady state, median over --repeats), JAX compile time separately, the fraction of
identical tokens and the largest difference between the two sets of head norms.
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import tempfile
import time

from absl import app
from absl import flags

flags.DEFINE_list("models", ["stories260k", "random20m"],
                  "Models: stories260k (../shared/models/stories260k), random20m (a seeded random "
                  "~20M-parameter Llama) or a local HF directory.")
flags.DEFINE_integer("prompts", 8, "Prompts per batch.")
flags.DEFINE_integer("new_tokens", 100, "New tokens per prompt.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions (median reported).")
flags.DEFINE_string("out", None, "Optional JSON file for the figures (written atomically).")
FLAGS = flags.FLAGS

ROOT = pathlib.Path(__file__).resolve().parents[1]
STORIES = ROOT.parent / "shared" / "models" / "stories260k"


def _random20m(directory):
  from synergy_jax import models as M
  cfg = M.ModelConfig(family="llama", model_type="llama", vocab_size=4096, hidden_size=512,
                      intermediate_size=1376, num_layers=6, num_heads=8, num_kv_heads=8,
                      head_dim=64, max_position_embeddings=1024, norm_eps=1e-5,
                      tie_word_embeddings=True, bos_token_id=1, eos_token_ids=(2,),
                      initializer_range=0.02)
  M.save(M.init(cfg, seed=0), directory)
  return directory


def _prompts(vocab, n, seed=0):
  import numpy as np
  rs = np.random.RandomState(seed)
  lengths = rs.randint(4, 17, size=n)
  width = lengths.max()
  ids = np.zeros((n, width), np.int64)
  mask = np.zeros((n, width), np.int64)
  for i, l in enumerate(lengths):
    ids[i, width - l:] = np.concatenate([[1], rs.randint(3, vocab, size=l - 1)])
    mask[i, width - l:] = 1
  return ids, mask


def bench_jax(directory, ids, mask, new_tokens, repeats):
  import jax
  import numpy as np
  from synergy_jax import models as M
  model = M.load(directory)

  def run():
    r = M.generate(model, ids, mask, max_new_tokens=new_tokens)
    jax.block_until_ready((r.tokens, r.head_norms))
    return r

  t0 = time.perf_counter()
  result = run()
  first = time.perf_counter() - t0
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    result = run()
    times.append(time.perf_counter() - t0)
  steady = statistics.median(times)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(model.params))
  return {"seconds": steady, "first_call_seconds": first, "compile_seconds": first - steady,
          "tokens_per_s": ids.shape[0] * new_tokens / steady, "params": n_params,
          "backend": jax.default_backend()}, np.asarray(result.tokens), np.asarray(
              result.head_norms)


def bench_torch(directory, ids, mask, new_tokens, repeats):
  import torch
  import transformers
  tm = transformers.AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager",
                                                         dtype=torch.float32).eval()
  n = tm.config.num_attention_heads
  k = tm.model.layers[0].self_attn.head_dim
  captured = [[] for _ in tm.model.layers]

  def hook_for(layer):
    def hook(module, args):
      # the head outputs at the position whose logits give the next token (the last one)
      captured[layer].append(args[0][:, -1].reshape(-1, n, k).norm(dim=-1))
    return hook

  hooks = [layer.self_attn.o_proj.register_forward_pre_hook(hook_for(i))
           for i, layer in enumerate(tm.model.layers)]

  def run():
    for c in captured:
      c.clear()
    with torch.no_grad():
      out = tm.generate(torch.tensor(ids), attention_mask=torch.tensor(mask),
                        max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                        pad_token_id=0, eos_token_id=None)
      norms = torch.stack([torch.stack(c, dim=-1) for c in captured], dim=1)  # (B, L, N, T)
    return out[:, ids.shape[1]:].numpy(), norms.numpy()

  run()  # warm-up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    tokens, norms = run()
    times.append(time.perf_counter() - t0)
  for h in hooks:
    h.remove()
  steady = statistics.median(times)
  return {"seconds": steady, "tokens_per_s": ids.shape[0] * new_tokens / steady,
          "torch_threads": torch.get_num_threads()}, tokens, norms


def main(argv):
  del argv
  import numpy as np
  figures = {"machine": f"{platform.machine()} {os.cpu_count()} CPUs", "date_utc":
             time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "prompts": FLAGS.prompts,
             "new_tokens": FLAGS.new_tokens, "models": {}}
  with tempfile.TemporaryDirectory() as tmp:
    for name in FLAGS.models:
      if name == "stories260k":
        if not STORIES.exists():
          print(f"skipping stories260k: {STORIES} is absent")
          continue
        directory = str(STORIES)
      elif name == "random20m":
        directory = _random20m(os.path.join(tmp, "random20m"))
      else:
        directory = name
      with open(os.path.join(directory, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
      ids, mask = _prompts(vocab, FLAGS.prompts)
      jx, jt, jn = bench_jax(directory, ids, mask, FLAGS.new_tokens, FLAGS.repeats)
      pt, tt, tn = bench_torch(directory, ids, mask, FLAGS.new_tokens, FLAGS.repeats)
      same = jt == tt
      # compare norms only up to each row's first disagreement (the sequences differ after it)
      upto = [int(np.argmin(row)) if not row.all() else len(row) for row in same]
      diff = max((float(np.abs(jn[b, ..., :u] - tn[b, ..., :u]).max()) for b, u in
                  enumerate(upto) if u > 0), default=float("nan"))
      row = {"jax": jx, "torch": pt, "speedup": jx["tokens_per_s"] / pt["tokens_per_s"],
             "identical_token_fraction": float(same.mean()),
             "max_head_norm_diff": diff}
      figures["models"][name] = row
      print(f"{name}: {jx['params'] / 1e6:.2f}M params | JAX {jx['tokens_per_s']:.0f} tok/s "
            f"(compile {jx['compile_seconds']:.1f}s, backend {jx['backend']}) | PyTorch eager "
            f"{pt['tokens_per_s']:.0f} tok/s ({pt['torch_threads']} threads) | speedup "
            f"{row['speedup']:.2f}x | identical tokens {row['identical_token_fraction']:.3f} | "
            f"max |norm diff| {diff:.2e}")
  if FLAGS.out:
    from synergy_jax import results
    results.write_json(FLAGS.out, figures)
  print(json.dumps(figures, indent=2))


if __name__ == "__main__":
  app.run(main)
