"""Benchmark: peak memory of ``phiid.all_pairs`` at large unit counts, on one device and sharded.

  python -m experiments.bench_phiid_memory                       # N = 4096 on one device
  python -m experiments.bench_phiid_memory --num_units=16384 --devices=8 --run_units=8192

Each case runs in a fresh subprocess (the simulated CPU devices are fixed when jax starts:
``XLA_FLAGS=--xla_force_host_platform_device_count=D``). Two memory figures are printed:

  compiled  XLA's buffer plan of the compiled program (``Compiled.memory_analysis()``): arguments
            + outputs + temporaries of one device (per device for a sharded program). This is
            what a real accelerator would have to hold; nothing is executed.
  RSS       the subprocess's peak resident set (``ru_maxrss``) over an executed call, minus the
            RSS just before it, for the whole process (all simulated devices together).

--run_units executes the sharded case at a smaller N when the full output does not fit this
machine (the (N, N, 16) float32 output alone is 17 GB at N = 16384); the compiled figure is
always for --num_units. float32, MMI, pool="mean", block size automatic.
"""
import json
import os
import subprocess
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_units", 4096, "Unit count N for the compiled memory analysis.")
flags.DEFINE_integer("run_units", 0, "Unit count executed and timed (0: --num_units; -1: none).")
flags.DEFINE_integer("num_prompts", 4, "Prompts P.")
flags.DEFINE_integer("num_steps", 24, "Time steps T.")
flags.DEFINE_integer("devices", 1, "Simulated CPU devices; > 1 shards the pair grid over them.")
flags.DEFINE_integer("timeout", 1200, "Seconds per subprocess.")

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from synergy_jax import phiid
from synergy_jax.phiid import pairs
n, run_n, p, t, devices = map(int, sys.argv[1:6])
config = phiid.PhiidConfig()
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("pairs",)) if devices > 1 else None
out = {"devices": len(jax.devices())}

def core_args(n):
  block = pairs.auto_block_size(p, n, t - 1, itemsize=4, config=config)
  acts = jax.ShapeDtypeStruct((p, n, t), jnp.float32)
  return acts, dict(config=config, same=True, mesh=mesh, block=block, dtype=jnp.dtype("float32"))

acts, kw = core_args(n)
compiled = pairs.all_pairs_core.lower(acts, acts, **kw).compile()
mem = compiled.memory_analysis()
out["compiled"] = {"N": n, "block": kw["block"], "argument_bytes": mem.argument_size_in_bytes,
                   "output_bytes": mem.output_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
                   "peak_bytes": mem.argument_size_in_bytes + mem.output_size_in_bytes
                                 + mem.temp_size_in_bytes}
if run_n > 0:
  rng = np.random.default_rng(0)
  a = rng.standard_normal((p, run_n, t)).astype(np.float32)
  a[:, :, 1:] += 0.5 * a[:, :, :-1]
  before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  start = time.perf_counter()
  res = phiid.all_pairs(a, config=config, mesh=mesh)
  res.block_until_ready()
  first = time.perf_counter() - start
  start = time.perf_counter()
  res = phiid.all_pairs(a, config=config, mesh=mesh)
  res.block_until_ready()
  run = time.perf_counter() - start
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  finite = bool(np.isfinite(np.asarray(res[0, 1:8])).all())
  out["run"] = {"N": run_n, "first_call_s": first, "second_call_s": run,
                "rss_increase_bytes": (peak - before) * 1024, "finite_sample": finite}
print("RESULT " + json.dumps(out))
"""


def run_case(n, run_n, p, t, devices, timeout):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(run_n), str(p), str(t),
                         str(devices)], env=env, capture_output=True, text=True, timeout=timeout)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"case N={n} devices={devices} failed:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def main(argv):
  del argv
  run_n = FLAGS.num_units if FLAGS.run_units == 0 else FLAGS.run_units
  r = run_case(FLAGS.num_units, run_n, FLAGS.num_prompts, FLAGS.num_steps, FLAGS.devices,
               FLAGS.timeout)
  gb = lambda b: f"{b / 2 ** 30:.2f} GiB"
  c = r["compiled"]
  print(f"# bench_phiid_memory: P={FLAGS.num_prompts}, T={FLAGS.num_steps}, float32, MMI, "
        f"{r['devices']} device(s)")
  print(f"compiled N={c['N']} block={c['block']}: per-device peak {gb(c['peak_bytes'])} "
        f"(arguments {gb(c['argument_bytes'])}, output {gb(c['output_bytes'])}, temporaries "
        f"{gb(c['temp_bytes'])})")
  if "run" in r:
    u = r["run"]
    print(f"executed N={u['N']}: first call {u['first_call_s']:.1f} s, second {u['second_call_s']:.1f} s, "
          f"process peak RSS increase {gb(u['rss_increase_bytes'])} (all devices), finite sample "
          f"{u['finite_sample']}")


if __name__ == "__main__":
  app.run(main)
