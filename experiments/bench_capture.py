"""Speed of generation with per-head capture: synergy_jax vs transformers (PyTorch, eager).

  python -m experiments.bench_capture [--models=stories260k,random20m,random_moe] [--batches=8,64]
      [--dtypes=float32,bfloat16] [--new_tokens=100] [--repeats=3] [--cache_phases=auto] [--quick]
      [--out=runs/bench_capture.json]

For each model, dtype and batch size, both implementations greedily generate --new_tokens tokens
for the same left-padded prompts with the per-head output norms captured at every generated
token (PyTorch: forward pre-hooks on every o_proj). Same weights, same machine, same process.
The mixture-of-experts model (random_moe, Mixtral-style) also captures every expert's output
norm at every generated token, ‖E_u(x)‖ of all experts whether routed or not (JAX:
expert_activity="dense", one einsum over the expert axis; PyTorch: a forward pre-hook on each
layer's sparse MoE block evaluating every expert of its fused expert weights on the block's
input), and compares those too.
The two sides' timed repetitions alternate (JAX, PyTorch, JAX, ...) so that a change in the
machine's load hits both alike; each reports tokens/s (median over --repeats, compile and
warm-up excluded; JAX compile time separately), the fraction of identical tokens and the largest
head-norm difference.

Memory-bandwidth limit: at small batches a decode step is bound by reading every weight once.
The benchmark measures the machine's read bandwidth (a sum over a buffer far larger than the
caches, NumPy on one thread and jitted JAX on all threads; the faster counts) and prints
  limit tok/s = batch × bandwidth / weight bytes,  fraction = tok/s / limit
(weight bytes: every parameter, in its dtype, read once per step; the key/value cache reads come
on top, so a fraction near 1 is the best possible, not a bug). `--batches=auto` lets the benchmark
pick the JAX batch size with the highest throughput among powers of two up to --max_batch
(a short sweep) and compares at that size.

Ceiling of the ratio: every decode step of either side must at least run the model's weight
products (every nn.Linear of the PyTorch model, lm head included: q, k, v, o, gate, up, down per
layer). Each row also times those products alone at the row's batch and dtype (one input row per
prompt, nothing else: no attention, cache, norms or capture), in JAX (one jitted program, weights
as (in, out) arrays through `ops.linear` as the model runs them, all products independent so XLA
may run them at once) and in PyTorch
(`F.linear` on each module's own weight), and prints
  ceiling = PyTorch's time per decode step / JAX's weight products alone,
the ratio JAX would reach if its step were nothing but its weight products. A target above the
ceiling cannot be met by anything outside the matrix-product kernels. It is an estimate, not a
bound: the products alone run as a separate program (timed after each pair of generation runs,
median of 7 calls per side each time, so that both see the same state of the machine), and
where the step overlaps products or hides them behind other work the products alone can come
out near JAX's whole step (then the ceiling is near the measured ratio; read several rounds).
For a mixture-of-experts model the fused expert weights are not nn.Linear modules and are left
out, so its ceiling is overstated.
A second, lower ceiling adds what attention must read: every decode step reads each key and value
already in the cache at least once, so with a growing cache a step reads on average
  kv bytes = batch × (prompt width + (new tokens + 1) / 2) × layers × 2 × kv heads × head dim
             × cache itemsize    (a sliding layer's slots capped at its window)
(what PyTorch's growing cache reads; synergy_jax reads somewhat more: each phase's whole cache,
models.generation.cache_phase_stops), and
  ceiling with cache = PyTorch's time per step / (JAX's weight products + kv bytes / bandwidth),
the ratio if JAX's step were its products plus that read at the measured bandwidth, nothing else
(not printed for caches other than plain keys and values, e.g. MLA's latent one).

The lines printed are self-describing (batch, dtype, tok/s each side, ratio, bandwidth fraction,
tokens identical, 1-minute load before and after); --out writes them as JSON.
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
                  "~21M-parameter Llama), random_moe (a seeded random Mixtral: 4 layers, hidden "
                  "256, 8 experts of width 512, top-2) or a local HF directory.")
flags.DEFINE_list("batches", ["8", "64"], "Prompts per batch (one row each), or 'auto'.")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "Weight dtypes (both sides).")
flags.DEFINE_integer("new_tokens", 100, "New tokens per prompt.")
flags.DEFINE_integer("repeats", 3, "Timed repetitions per side (median reported).")
flags.DEFINE_integer("max_batch", 256, "Largest batch the 'auto' sweep tries.")
flags.DEFINE_integer("torch_threads", 0, "PyTorch intra-op threads (0: its default, one per core). "
                     "Its OpenMP workers spin-wait, so on a machine loaded by other jobs it "
                     "slows far more than XLA's pool; 1 is then the fairer baseline.")
flags.DEFINE_bool("quick", False, "A fast check: random20m, batch 8, float32, 32 new tokens, "
                  "2 repeats (overrides those flags).")
flags.DEFINE_integer("bandwidth_mib", 512, "Buffer size (MiB) of the read-bandwidth measurement; "
                     "keep it far above the last-level cache.")
flags.DEFINE_enum("per_layer", "auto", ["auto", "on", "off"],
                  "JAX decoding over per-layer weight and cache buffers (models.generate "
                  "per_layer=; auto: its default, on for the CPU backend while the weight "
                  "copy fits a quarter of the physical memory) or over the scanned stack (off).")
flags.DEFINE_string("cache_phases", "auto",
                    "Phases JAX's decoding cache grows in (models.generate cache_phases=; auto: "
                    "its default, one per 32 new tokens, at most 4; 1: one cache throughout).")
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


def _random_moe(directory):
  """A seeded random Mixtral (~15M parameters, 13M of them in 32 experts): 4 layers, hidden
  256, 8 query / 4 key-value heads of 32, 8 experts of width 512 per layer, top-2 routing."""
  import transformers
  from synergy_jax import models as M
  transformers.MixtralConfig(
      vocab_size=4096, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
      num_attention_heads=8, num_key_value_heads=4, head_dim=32, num_local_experts=8,
      num_experts_per_tok=2, max_position_embeddings=1024, rms_norm_eps=1e-5,
      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
      initializer_range=0.02).save_pretrained(directory)
  M.save(M.init(M.load_config(directory), seed=0), directory)
  return directory


BUILT = {"random20m": _random20m, "random_moe": _random_moe}


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


def _machine() -> str:
  name = platform.processor()
  try:
    with open("/proc/cpuinfo") as f:
      name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                  name)
  except OSError:
    pass
  return f"{platform.machine()} {os.cpu_count()} CPUs ({name or 'unknown CPU'})"


def _load1():
  return round(os.getloadavg()[0], 2)


def _repeat_seconds(fn, repeats: int) -> list[float]:
  """Wall seconds of `repeats` calls of fn() after one warm-up call (for JAX: the compile)."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return times


def measure_bandwidth(nbytes: int, repeats: int = 5) -> dict:
  """Read bandwidth (GB/s, 1e9 bytes) of a sum over an nbytes float32 buffer, best of repeats:
  NumPy (one thread) and jitted JAX (XLA's thread pool); `gb_per_s` is the larger."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  buf = np.ones(nbytes // 4, np.float32)
  best = {}
  for name, fn, arg in (("numpy", np.sum, buf), ("jax", jax.jit(jnp.sum), jnp.asarray(buf))):
    times = _repeat_seconds(lambda: jax.block_until_ready(fn(arg)), repeats)
    best[name] = nbytes / min(times) / 1e9
  return {"numpy_gb_per_s": best["numpy"], "jax_gb_per_s": best["jax"],
          "gb_per_s": max(best.values()), "buffer_bytes": nbytes}


class JaxSide:
  """synergy_jax generation with capture, one model in one dtype."""

  def __init__(self, directory, dtype, per_layer: bool | None, cache_phases: int | None = None):
    import jax
    import numpy as np
    from synergy_jax import models as M
    from synergy_jax.models import decoder, generation
    self.M, self.jax = M, jax
    self.model = M.load(directory, dtype=dtype)
    self.dtype = dtype
    self.cache_phases = cache_phases  # None: generate's default for the call's new tokens
    # None: generate's own default for this model, resolved once here for the row label
    self.per_layer = (generation.per_layer_default(decoder.layer_weight_bytes(self.model))
                      if per_layer is None else bool(per_layer))
    leaves = jax.tree_util.tree_leaves(self.model.params)
    self.params = sum(int(np.prod(x.shape)) for x in leaves)
    self.weight_bytes = sum(int(x.size) * x.dtype.itemsize for x in leaves)
    cache = decoder.cache_dtype(self.model.config, jax.numpy.dtype(dtype))
    self.cache_itemsize = np.dtype(cache).itemsize  # keys and values as the decoder stores them

  def run(self, ids, mask, new_tokens):
    """-> tokens (B, T), head norms (B, L, N, T), expert norms (B, L_moe, E, T) or None."""
    import numpy as np
    r = self.M.generate(self.model, ids, mask, max_new_tokens=new_tokens,
                        expert_activity="dense", per_layer=self.per_layer,
                        cache_phases=self.cache_phases)
    self.jax.block_until_ready((r.tokens, r.head_norms, r.expert_norms))
    experts = None if r.expert_norms is None else np.asarray(r.expert_norms, np.float32)
    return np.asarray(r.tokens), np.asarray(r.head_norms, np.float32), experts


def _expert_norms_hook(store):
  """A forward pre-hook for a transformers sparse MoE block (Mixtral's: `experts.gate_up_proj`
  (E, 2F, D), `experts.down_proj` (E, D, F), `experts.act_fn`) appending ‖E_e(x)‖ (B, E) of
  every expert e at the block input's last position x (B, D) to `store`. The block itself runs
  only the routed experts; this evaluates all of them, as JAX's dense capture does."""
  import torch

  def hook(module, args):
    x = args[0][:, -1]  # (B, D)
    ex = module.experts
    gate, up = torch.einsum("bd,efd->bef", x, ex.gate_up_proj).chunk(2, dim=-1)  # (B, E, F)
    out = torch.einsum("bef,edf->bed", ex.act_fn(gate) * up, ex.down_proj)  # (B, E, D)
    store.append(out.float().norm(dim=-1))
  return hook


class TorchSide:
  """transformers generation (eager attention) with o_proj pre-hooks capturing head norms and,
  for a mixture-of-experts model, pre-hooks on each sparse MoE block capturing expert norms."""

  def __init__(self, directory, dtype):
    import torch
    import transformers
    if FLAGS.torch_threads:
      torch.set_num_threads(FLAGS.torch_threads)
    self.torch = torch
    self.tm = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager", dtype=getattr(torch, dtype)).eval()
    n = self.tm.config.num_attention_heads
    k = self.tm.model.layers[0].self_attn.head_dim
    self.captured = [[] for _ in self.tm.model.layers]

    def hook_for(layer):
      def hook(module, args):
        # the head outputs at the position whose logits give the next token (the last one)
        self.captured[layer].append(args[0][:, -1].reshape(-1, n, k).float().norm(dim=-1))
      return hook

    self.hooks = [layer.self_attn.o_proj.register_forward_pre_hook(hook_for(i))
                  for i, layer in enumerate(self.tm.model.layers)]
    moe = [layer.mlp for layer in self.tm.model.layers if hasattr(layer.mlp, "experts")]
    self.expert_captured = [[] for _ in moe]
    self.hooks += [block.register_forward_pre_hook(_expert_norms_hook(store))
                   for block, store in zip(moe, self.expert_captured)]
    self.threads = torch.get_num_threads()
    # how transformers runs the routed experts ("eager" loop, "batched_mm", "grouped_mm")
    self.experts_impl = getattr(self.tm.config, "_experts_implementation", None) if moe else None

  def run(self, ids, mask, new_tokens):
    torch = self.torch
    for c in self.captured + self.expert_captured:
      c.clear()
    with torch.no_grad():
      out = self.tm.generate(torch.tensor(ids), attention_mask=torch.tensor(mask),
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=0, eos_token_id=None)
      norms = torch.stack([torch.stack(c, dim=-1) for c in self.captured], dim=1)  # (B, L, N, T)
      experts = (torch.stack([torch.stack(c, dim=-1) for c in self.expert_captured], dim=1)
                 .numpy() if self.expert_captured else None)  # (B, L_moe, E, T)
    return out[:, ids.shape[1]:].numpy(), norms.numpy(), experts

  def close(self):
    for h in self.hooks:
      h.remove()


def linear_shapes(tm) -> list[tuple[str, int, int]]:
  """(module name, in features, out features) of every torch.nn.Linear of a transformers model,
  in module order (the tied lm head included: it is a Linear sharing the embedding's weight)."""
  import torch
  return [(name, m.in_features, m.out_features) for name, m in tm.named_modules()
          if isinstance(m, torch.nn.Linear)]


class WeightProducts:
  """The weight products of one decode step alone, both sides, ready to time: for each
  (name, in, out) of `shapes`, x (batch, in) times a weight, in JAX (one jitted program over
  (in, out) arrays, through `ops.linear` as the model's layers: float32 accumulation, the model's
  precision) and PyTorch (F.linear on (out, in) weights, as nn.Linear holds them). The weights
  are random (the time does not depend on their values)."""

  def __init__(self, shapes, batch: int, dtype: str):
    import jax
    import jax.numpy as jnp
    import numpy as np
    import torch
    if not shapes:
      raise ValueError("the model has no nn.Linear modules: nothing to time")
    rs = np.random.RandomState(0)
    ins = sorted({i for _, i, _ in shapes})
    xs = {i: rs.standard_normal((batch, i)).astype(np.float32) for i in ins}
    ws = [rs.standard_normal((o, i)).astype(np.float32) * 0.02 for _, i, o in shapes]
    jdt = jnp.dtype(dtype)
    jx = {i: jnp.asarray(x, jdt) for i, x in xs.items()}
    jw = [jnp.asarray(w.T, jdt) for w in ws]  # (in, out), contiguous
    keys = [i for _, i, _ in shapes]
    from synergy_jax.models import ops  # the projection the model's layers run (float32 sums)
    products = jax.jit(lambda x, w: [ops.linear("XC,CY->XY", x[k], m) for k, m in zip(keys, w)])
    self.jax_call = lambda: jax.block_until_ready(products(jx, jw))
    tdt = getattr(torch, dtype)
    tx = {i: torch.from_numpy(x).to(tdt) for i, x in xs.items()}
    tw = [torch.from_numpy(w).to(tdt) for w in ws]

    def torch_call():
      with torch.no_grad():
        return [torch.nn.functional.linear(tx[k], m) for k, m in zip(keys, tw)]
    self.torch_call = torch_call
    self.count = len(shapes)
    self.weight_elements = int(sum(i * o for _, i, o in shapes))

  def seconds(self, repeats: int) -> tuple[float, float]:
    """(JAX, PyTorch) median seconds of `repeats` calls each, after a warm-up call."""
    return (statistics.median(_repeat_seconds(self.jax_call, repeats)),
            statistics.median(_repeat_seconds(self.torch_call, repeats)))


def cache_phases_flag(value: str, new_tokens: int) -> int | None:
  """--cache_phases as generate's cache_phases: None for "auto", else an int from 1 to
  new_tokens (ValueError naming the flag)."""
  from synergy_jax.models import generation
  if value == "auto":
    return None
  try:
    phases = int(value)
    generation.cache_phase_stops(new_tokens, phases)
  except ValueError:
    raise ValueError(f"--cache_phases={value!r}: expected auto or an int from 1 to "
                     f"--new_tokens={new_tokens}") from None
  return phases


def kv_read_bytes_per_step(cfg, cache_itemsize: int, batch: int, prompt_width: int,
                           new_tokens: int) -> float | None:
  """Bytes of keys and values a decode step must read, averaged over the new tokens (step t
  attends over prompt_width + t + 1 slots, at most a sliding layer's window); None for a cache
  that is not plain keys and values."""
  import numpy as np
  from synergy_jax.models import decoder
  if set(decoder.cache_layout(cfg)) != {"k", "v"}:
    return None
  slots = prompt_width + np.arange(1, new_tokens + 1)
  per_layer = [np.minimum(slots, w).mean() if w else slots.mean() for w in cfg.layer_windows]
  return float(batch * sum(per_layer) * 2 * cfg.num_kv_heads * cfg.head_dim * cache_itemsize)


PRODUCT_CALLS = 7  # calls per side and repetition when timing the weight products alone


def _timed(fn, *args):
  t0 = time.perf_counter()
  out = fn(*args)
  return time.perf_counter() - t0, out


def pick_batch(jx: JaxSide, vocab: int, max_batch: int, new_tokens: int) -> tuple[int, dict]:
  """The JAX batch size (a power of two, 8..max_batch) with the highest tokens/s in a short
  sweep (one warm and one timed run of min(new_tokens, 32) tokens each); stops early once
  doubling the batch gains under 10%."""
  steps = min(new_tokens, 32)
  rates, best = {}, 8
  b = 8
  while b <= max_batch:
    ids, mask = _prompts(vocab, b)
    jx.run(ids, mask, steps)
    seconds, _ = _timed(jx.run, ids, mask, steps)
    rates[b] = b * steps / seconds
    if rates[b] > rates[best]:
      gain, best = rates[b] / rates[best], b
      if gain < 1.10:
        break
    elif b > best:
      break
    b *= 2
  return best, rates


def compare(jx: JaxSide, pt: TorchSide, vocab: int, batch: int, new_tokens: int, repeats: int,
            bandwidth: float) -> dict:
  """One row: both sides on the same prompts, timed repetitions alternating."""
  import numpy as np
  ids, mask = _prompts(vocab, batch)
  load_before = _load1()
  first, _ = _timed(jx.run, ids, mask, new_tokens)  # compiles
  pt.run(ids, mask, new_tokens)  # warm-up
  products = WeightProducts(linear_shapes(pt.tm), batch, jx.dtype)
  jt, pt_times, jd, td = [], [], [], []
  for _ in range(repeats):
    s, (j_tokens, j_norms, j_experts) = _timed(jx.run, ids, mask, new_tokens)
    jt.append(s)
    s, (t_tokens, t_norms, t_experts) = _timed(pt.run, ids, mask, new_tokens)
    pt_times.append(s)
    # the products alone between the generation runs, so that they see the same machine
    j_d, t_d = products.seconds(PRODUCT_CALLS)
    jd.append(j_d)
    td.append(t_d)
  j_s, t_s = statistics.median(jt), statistics.median(pt_times)
  same = j_tokens == t_tokens
  if (j_experts is None) != (t_experts is None):
    raise ValueError(f"expert capture on one side only (JAX: {j_experts is not None}, "
                     f"PyTorch: {t_experts is not None}): is the model's MoE block hooked?")
  # compare norms only up to each row's first disagreement (the sequences differ after it)
  upto = [int(np.argmin(row)) if not row.all() else len(row) for row in same]

  def max_diff(a, b):
    return max((float(np.abs(a[r, ..., :u] - b[r, ..., :u]).max()) for r, u in
                enumerate(upto) if u > 0), default=float("nan"))

  diff = max_diff(j_norms, t_norms)
  expert_diff = None if j_experts is None else max_diff(j_experts, t_experts)
  j_rate, t_rate = batch * new_tokens / j_s, batch * new_tokens / t_s
  limit = batch * bandwidth * 1e9 / jx.weight_bytes
  dots = {"jax_dots_seconds_per_step": statistics.median(jd),
          "torch_dots_seconds_per_step": statistics.median(td), "dot_count": products.count,
          "dot_weight_elements": products.weight_elements, "jax_dots_times": jd,
          "torch_dots_times": td}
  # the prompt pass is spread over the steps: a slight overestimate of PyTorch's per-step time
  ceiling = (t_s / new_tokens) / dots["jax_dots_seconds_per_step"]
  kv = kv_read_bytes_per_step(jx.model.config, jx.cache_itemsize, batch, ids.shape[1],
                              new_tokens)
  with_cache = (None if kv is None else
                (t_s / new_tokens) / (dots["jax_dots_seconds_per_step"] + kv / (bandwidth * 1e9)))
  return {**dots, "ratio_ceiling": ceiling, "kv_read_bytes_per_step": kv,
          "ratio_ceiling_with_cache": with_cache, "batch": batch,
          "prompt_width": int(ids.shape[1]), "new_tokens": new_tokens, "jax_tokens_per_s": j_rate,
          "torch_tokens_per_s": t_rate, "ratio": j_rate / t_rate, "jax_seconds": j_s,
          "torch_seconds": t_s, "jax_compile_seconds": max(first - j_s, 0.0),
          "bandwidth_limit_tokens_per_s": limit, "jax_bandwidth_fraction": j_rate / limit,
          "torch_bandwidth_fraction": t_rate / limit,
          "identical_token_fraction": float(same.mean()), "tokens_identical": bool(same.all()),
          "max_head_norm_diff": diff, "max_expert_norm_diff": expert_diff,
          "torch_experts_implementation": pt.experts_impl, "load_1min_before": load_before,
          "load_1min_after": _load1(), "jax_times": jt, "torch_times": pt_times}


def _line(name, dtype, jx, pt, r):
  return (f"{name} {dtype} batch {r['batch']}: {jx.params / 1e6:.2f}M params, "
          f"{jx.weight_bytes / 1e6:.0f} MB | JAX {r['jax_tokens_per_s']:.0f} tok/s "
          f"(compile {r['jax_compile_seconds']:.1f}s, per-layer {r.get('jax_per_layer', '?')}, "
          f"cache phases {r.get('jax_cache_phases', '?')}) "
          f"| PyTorch eager "
          f"{r['torch_tokens_per_s']:.0f} tok/s ({pt.threads} threads) | ratio {r['ratio']:.2f}x "
          f"| bandwidth limit {r['bandwidth_limit_tokens_per_s']:.0f} tok/s: JAX at "
          f"{r['jax_bandwidth_fraction']:.2f}, PyTorch at {r['torch_bandwidth_fraction']:.2f} | "
          f"tokens identical {'yes' if r['tokens_identical'] else 'no'} "
          f"({r['identical_token_fraction']:.3f}) | max |norm diff| {r['max_head_norm_diff']:.1e} "
          f"| weight products alone: JAX {1e3 * r['jax_dots_seconds_per_step']:.2f} ms, PyTorch "
          f"{1e3 * r['torch_dots_seconds_per_step']:.2f} ms per step; ratio ceiling "
          f"{r['ratio_ceiling']:.2f}x"
          + ("" if r["ratio_ceiling_with_cache"] is None else
             f", with the cache read ({r['kv_read_bytes_per_step'] / 1e6:.1f} MB per step at the "
             f"read bandwidth) {r['ratio_ceiling_with_cache']:.2f}x")
          + " "
          + ("" if r["max_expert_norm_diff"] is None else
             f"| max |expert norm diff| {r['max_expert_norm_diff']:.1e} (PyTorch experts "
             f"{r['torch_experts_implementation']}) ")
          + f"| load {r['load_1min_before']} -> {r['load_1min_after']}")


def _check_flags(batches, dtypes, new_tokens, repeats):
  """Raises absl's UsageError (one line, no traceback) naming the first bad flag value.
  (experiments.common.UserError would import the experiments' shared flags, which clash with
  this script's --out.)"""
  UserError = app.UsageError  # noqa: N806
  for b in batches:
    if b != "auto" and not (b.isdigit() and int(b) > 0):
      raise UserError(f"--batches entry {b!r} is neither a positive integer nor 'auto'")
  for d in dtypes:
    if d not in ("float32", "bfloat16"):
      raise UserError(f"--dtypes entry {d!r} is not 'float32' or 'bfloat16'")
  for name, value in (("--new_tokens", new_tokens), ("--repeats", repeats),
                      ("--bandwidth_mib", FLAGS.bandwidth_mib), ("--max_batch", FLAGS.max_batch)):
    if value < 1:
      raise UserError(f"{name}={value} must be >= 1")
  if FLAGS.torch_threads < 0:
    raise UserError(f"--torch_threads={FLAGS.torch_threads} must be >= 0 (0: PyTorch's default)")
  try:
    cache_phases_flag(FLAGS.cache_phases, new_tokens)
  except ValueError as e:
    raise UserError(str(e)) from None


def main(argv):
  del argv
  import jax
  if FLAGS.quick:
    models, batches, dtypes, new_tokens, repeats = ["random20m"], ["8"], ["float32"], 32, 2
  else:
    models, batches, dtypes = FLAGS.models, FLAGS.batches, FLAGS.dtypes
    new_tokens, repeats = FLAGS.new_tokens, FLAGS.repeats
  _check_flags(batches, dtypes, new_tokens, repeats)
  bw = measure_bandwidth(FLAGS.bandwidth_mib * 2 ** 20)
  figures = {"machine": _machine(),
             "backend": jax.default_backend(), "date_utc": time.strftime("%Y-%m-%d %H:%M",
                                                                          time.gmtime()),
             "new_tokens": new_tokens, "repeats": repeats, "bandwidth": bw, "rows": []}
  print(f"read bandwidth: {bw['gb_per_s']:.1f} GB/s (NumPy 1 thread {bw['numpy_gb_per_s']:.1f}, "
        f"JAX {bw['jax_gb_per_s']:.1f}; {bw['buffer_bytes'] >> 20} MiB buffer) | load "
        f"{_load1()} | {figures['machine']}", flush=True)
  if _load1() > 0.5 * (os.cpu_count() or 1):
    print(f"warning: 1-minute load {_load1()} on {os.cpu_count()} CPUs: other jobs share the "
          "machine; PyTorch's spin-waiting threads slow far more than XLA's under load, so the "
          "ratios overstate the idle case (try --torch_threads=1, or re-measure when idle)",
          flush=True)
  per_layer = {"auto": None, "on": True, "off": False}[FLAGS.per_layer]
  cache_phases = cache_phases_flag(FLAGS.cache_phases, new_tokens)  # checked in _check_flags
  from synergy_jax.models import generation
  with tempfile.TemporaryDirectory() as tmp:
    for name in models:
      if name == "stories260k":
        if not STORIES.exists():
          print(f"skipping stories260k: {STORIES} is absent")
          continue
        directory = str(STORIES)
      elif name in BUILT:
        directory = BUILT[name](os.path.join(tmp, name))
      else:
        directory = name
      with open(os.path.join(directory, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
      for dtype in dtypes:
        jx, pt = JaxSide(directory, dtype, per_layer, cache_phases), TorchSide(directory, dtype)
        for batch in batches:
          sweep = None
          if batch == "auto":
            b, sweep = pick_batch(jx, vocab, FLAGS.max_batch, new_tokens)
            print(f"{name} {dtype}: auto batch {b} (JAX tok/s by batch: "
                  f"{ {k: round(v) for k, v in sweep.items()} })", flush=True)
          else:
            b = int(batch)
          row = compare(jx, pt, vocab, b, new_tokens, repeats, bw["gb_per_s"])
          row.update(model=name, dtype=dtype, params=jx.params, weight_bytes=jx.weight_bytes,
                     torch_threads=pt.threads, auto_sweep=sweep,
                     jax_per_layer="on" if jx.per_layer else "off",
                     jax_cache_phases=len(generation.cache_phase_stops(new_tokens,
                                                                       jx.cache_phases)))
          figures["rows"].append(row)
          print(_line(name, dtype, jx, pt, row), flush=True)
        pt.close()
  if FLAGS.out:
    from synergy_jax import results
    results.write_json(FLAGS.out, figures)


if __name__ == "__main__":
  app.run(main)
