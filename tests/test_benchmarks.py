"""Smoke runs of the benchmark scripts at toy sizes: they run, compare against their baselines
and print the figures they promise (speed targets live in the scripts, never in tests)."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(args, timeout=600):
  proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout + proc.stderr


def test_bench_phiid_toy():
  out = run(["experiments.bench_phiid", "--num_prompts=3", "--num_units=12", "--num_steps=40",
             "--reference_pairs=4", "--repeats=1"])
  assert "pairs/s" in out and "max" in out.lower()
  rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and
          line.split("|")[1].strip() in ("gaussian", "copula", "discrete")]
  assert [r[1].strip() for r in rows] == ["gaussian", "copula", "discrete"]
  for r in rows:  # every kind timed and matching its reference
    assert float(r[4]) > 0 and float(r[-2]) < 1e-9, r


def test_bench_phiid_surrogates_toy():
  """The surrogate-null rows: pooled atoms take the spectral path and print the per-surrogate
  kernel beside it; both agree with one all_pairs call per surrogate."""
  out = run(["experiments.bench_phiid", "--num_prompts=8", "--num_units=10", "--num_steps=30",
             "--kinds=gaussian", "--reference_pairs=0", "--repeats=1", "--surrogates=9",
             "--pool=concat"])
  (line,) = [l for l in out.splitlines() if "surrogate null" in l]
  assert "(spectral)" in line
  diff = float(line.split("null head means ")[1].split(",")[0])
  assert diff < 1e-10, line
  (kern,) = [l for l in out.splitlines() if "per-surrogate compiled kernel" in l]
  assert float(kern.split("max abs diff ")[1]) < 1e-10, kern


def test_bench_capture_toy(tmp_path, stories260k_dir):
  figures = tmp_path / "figures.json"
  out = run(["experiments.bench_capture", "--models=stories260k", "--batches=2",
             "--dtypes=float32", "--new_tokens=8", "--repeats=1", "--bandwidth_mib=64",
             f"--out={figures}"])
  assert "tok/s" in out and "bandwidth" in out
  fig = json.loads(figures.read_text())
  assert fig["bandwidth"]["gb_per_s"] > 0
  (row,) = fig["rows"]
  assert (row["model"], row["dtype"], row["batch"]) == ("stories260k", "float32", 2)
  # Same tokens and the same captured norms as the PyTorch baseline measured in the same run.
  assert row["tokens_identical"] and row["identical_token_fraction"] == 1.0
  assert row["max_head_norm_diff"] < 1e-4
  assert row["jax_tokens_per_s"] > 0 and row["torch_tokens_per_s"] > 0
  assert 0 < row["jax_bandwidth_fraction"] < float("inf")
  assert row["jax_per_layer"] == "on"  # the default on the CPU backend
  assert row["jax_cache_phases"] == 1  # generate's default for 8 new tokens
  # the weight products alone, timed on both sides, and the ceiling they put on the ratio
  assert row["dot_count"] == 5 * 7 + 1  # q, k, v, o, gate, up, down per layer + lm head
  assert row["jax_dots_seconds_per_step"] > 0 and row["torch_dots_seconds_per_step"] > 0
  # timed once per repetition, between the generation runs
  assert len(row["jax_dots_times"]) == len(row["torch_dots_times"]) == len(row["jax_times"]) == 1
  assert 0 < row["ratio_ceiling"] < float("inf") and "ratio ceiling" in out
  # the cache read a step must make: 2 prompts x (width + 4.5 slots on average over 8 new tokens)
  # x 5 layers x (k, v) x 4 kv heads x head dim 8 x 4 bytes (config.json, by hand)
  width = row["prompt_width"]
  assert row["kv_read_bytes_per_step"] == 2 * (width + 4.5) * 5 * 2 * 4 * 8 * 4
  assert 0 < row["ratio_ceiling_with_cache"] < row["ratio_ceiling"]
  assert "with the cache read" in out


def test_linear_shapes_of_stories260k(stories260k_dir):
  """Every nn.Linear of the Llama, with the sizes its config.json gives (hidden 64, 8 query and
  4 key/value heads of 8, MLP 172, vocabulary 512, 5 layers, tied lm head)."""
  import transformers
  from experiments.bench_capture import linear_shapes
  tm = transformers.AutoModelForCausalLM.from_pretrained(stories260k_dir)
  per_layer = [("q_proj", 64, 64), ("k_proj", 64, 32), ("v_proj", 64, 32), ("o_proj", 64, 64),
               ("gate_proj", 64, 172), ("up_proj", 64, 172), ("down_proj", 172, 64)]
  got = linear_shapes(tm)
  assert [(n.rsplit(".", 1)[-1], i, o) for n, i, o in got] == per_layer * 5 + [
      ("lm_head", 64, 512)]
  assert got[0][0] == "model.layers.0.self_attn.q_proj"


def test_bench_capture_moe_toy(tmp_path):
  """The mixture-of-experts row: the random Mixtral, expert norms of every expert captured on
  both sides (JAX dense capture; PyTorch hooks evaluating every expert of each MoE block)."""
  figures = tmp_path / "figures.json"
  out = run(["experiments.bench_capture", "--models=random_moe", "--batches=2",
             "--dtypes=float32", "--new_tokens=6", "--repeats=1", "--bandwidth_mib=64",
             "--per_layer=off", "--cache_phases=3", f"--out={figures}"])
  assert "expert norm diff" in out and "cache phases 3" in out
  (row,) = json.loads(figures.read_text())["rows"]
  assert (row["model"], row["batch"], row["jax_per_layer"]) == ("random_moe", 2, "off")
  assert row["jax_cache_phases"] == 3
  assert row["tokens_identical"]
  assert row["max_head_norm_diff"] < 1e-4
  assert 0 <= row["max_expert_norm_diff"] < 1e-4
  assert row["jax_tokens_per_s"] > 0 and row["torch_tokens_per_s"] > 0


def test_kv_read_bytes_caps_sliding_layers_at_their_window(stories260k_dir):
  """Prompt width 6, 8 new tokens: step t reads 7 + t slots (mean 10.5) in a full layer, 4 in a
  layer with window 4; 3 full + 2 sliding layers, 2 rows, (k, v) x 4 kv heads x 8 x 4 bytes."""
  import dataclasses
  from experiments.bench_capture import kv_read_bytes_per_step
  from synergy_jax import models as M
  cfg = M.load_config(stories260k_dir)
  assert kv_read_bytes_per_step(cfg, 4, 2, 6, 8) == 2 * 5 * 10.5 * 2 * 4 * 8 * 4
  slid = dataclasses.replace(cfg, layer_windows=(0, 4, 0, 4, 0))
  assert kv_read_bytes_per_step(slid, 4, 2, 6, 8) == 2 * (3 * 10.5 + 2 * 4) * 2 * 4 * 8 * 4


def test_bench_capture_names_a_bad_cache_phases():
  """A user error: one line naming the flag, no traceback, before any model is built."""
  proc = subprocess.run([sys.executable, "-m", "experiments.bench_capture", "--new_tokens=8",
                         "--cache_phases=9"], cwd=ROOT, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode != 0
  assert "--cache_phases='9': expected auto or an int from 1 to --new_tokens=8" in proc.stderr
  assert "Traceback" not in proc.stderr
