"""Decoding speed of DeepSeek-V2's multi-head latent attention: the expanded form (kv_b applied
to every cached latent at every step) against the absorbed form (kv_b folded into the query and
the output; deepseek_v2.Attention), same random model, same process.

  python -m experiments.bench_mla_decode [--prompt_len=128] [--decode_tokens=128] [--batch=4]
      [--reps=3] [--hidden=256] [--kv_lora_rank=128] [--heads=8] [--layers=4]

A seeded random deepseek_v2 config (one dense layer, then MoE layers; full q_proj; default
rope) generates greedily from random prompts of --prompt_len tokens; the cache holds
bucket(prompt_len) + decode_tokens slots, and every decoding step attends over all of them.
Decoding tokens/s = batch · (decode_tokens - 1) / (t(decode_tokens) - t(1)) (the prompt pass
and the first token cancel), median over --reps; the two forms' timed runs alternate so that a
change in the machine's load hits both alike. Also printed: whether the tokens are identical and
the largest head-norm difference between the forms, the machine and the 1-minute load before
and after.
"""
from __future__ import annotations

import statistics
import time

from absl import app
from absl import flags

from experiments.bench_capture import _load1, _machine

flags.DEFINE_integer("prompt_len", 128, "Prompt tokens per row.")
flags.DEFINE_integer("decode_tokens", 128, "New tokens per row.")
flags.DEFINE_integer("batch", 4, "Rows.")
flags.DEFINE_integer("reps", 3, "Timed repetitions per form (median reported).")
flags.DEFINE_integer("hidden", 256, "hidden_size.")
flags.DEFINE_integer("kv_lora_rank", 128, "Latent width C.")
flags.DEFINE_integer("heads", 8, "Attention heads N.")
flags.DEFINE_integer("layers", 4, "Decoder layers (the first dense, the others MoE).")
FLAGS = flags.FLAGS


def hf_config(hidden: int, kv_lora_rank: int, heads: int, layers: int, max_pos: int) -> dict:
  """A small deepseek_v2 config.json dict (head sizes a quarter of DeepSeek-V2-Lite's)."""
  return dict(
      model_type="deepseek_v2", vocab_size=1024, hidden_size=hidden,
      intermediate_size=2 * hidden, moe_intermediate_size=hidden // 4,
      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
      n_shared_experts=1, n_routed_experts=8, num_experts_per_tok=2, topk_method="greedy",
      routed_scaling_factor=1.0, first_k_dense_replace=1, kv_lora_rank=kv_lora_rank,
      q_lora_rank=None, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
      max_position_embeddings=max_pos, rope_theta=10000.0, rms_norm_eps=1e-6,
      hidden_act="silu", bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)


def _time(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def main(argv):
  del argv
  import jax
  import numpy as np
  from synergy_jax import models as M
  from synergy_jax.models import deepseek_v2
  from synergy_jax.models.generation import bucket

  slots = bucket(FLAGS.prompt_len) + FLAGS.decode_tokens
  cfg = M.ModelConfig.from_hf(hf_config(FLAGS.hidden, FLAGS.kv_lora_rank, FLAGS.heads,
                                        FLAGS.layers, slots))
  base = M.init(cfg, seed=0)
  forms = {kind: deepseek_v2.with_decode(base, kind) for kind in ("expanded", "absorbed")}
  ids = np.random.default_rng(0).integers(3, cfg.vocab_size, (FLAGS.batch, FLAGS.prompt_len))
  when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
  print(f"{_machine()} | {jax.default_backend()} | {when} | load {_load1()} | batch {FLAGS.batch}, prompt {FLAGS.prompt_len}, "
        f"{slots} cache slots, C={FLAGS.kv_lora_rank}, N={FLAGS.heads}, D={FLAGS.hidden}, "
        f"{FLAGS.layers} layers", flush=True)

  def run(kind, n):
    r = M.generate(forms[kind], ids, max_new_tokens=n)
    jax.block_until_ready(r.tokens)
    return r

  results = {kind: run(kind, FLAGS.decode_tokens) for kind in forms}  # compiles
  for kind in forms:
    run(kind, 1)
  times = {kind: [] for kind in forms}
  for _ in range(FLAGS.reps):
    for kind in forms:
      full = _time(lambda: run(kind, FLAGS.decode_tokens))
      first = _time(lambda: run(kind, 1))
      times[kind].append(full - first)
  speed = {k: FLAGS.batch * (FLAGS.decode_tokens - 1) / statistics.median(v)
           for k, v in times.items()}
  same = bool(np.array_equal(np.asarray(results["expanded"].tokens),
                             np.asarray(results["absorbed"].tokens)))
  diff = float(np.max(np.abs(np.asarray(results["expanded"].head_norms)
                             - np.asarray(results["absorbed"].head_norms))))
  print(f"decode tok/s: expanded {speed['expanded']:.0f}, absorbed {speed['absorbed']:.0f}, "
        f"ratio absorbed/expanded {speed['absorbed'] / speed['expanded']:.2f} | tokens "
        f"identical {same} | max head-norm diff {diff:.2e} | load after {_load1()}", flush=True)


if __name__ == "__main__":
  app.run(main)
