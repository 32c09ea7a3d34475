"""Benchmark: peak memory and time of all-pairs ΦID at large unit counts, one device or sharded.

  python -m experiments.bench_phiid_memory                                  # N = 4096, 1 device
  python -m experiments.bench_phiid_memory --mode=unit_means --num_units=16384 --devices=8

Two modes, each case in a fresh subprocess (the simulated CPU devices are fixed when jax starts:
``XLA_FLAGS=--xla_force_host_platform_device_count=D``):

  pairs       ``phiid.all_pairs``: the full (N, N, 16) grid (17 GB at N = 16384 in float32), then
              ``np.asarray`` of it (the peak RSS after it shows whether a host copy was made).
  unit_means  ``phiid.unit_means.unit_means``: the same pairs in row blocks, each block reduced at
              once to per-unit partner sums (what the study reports: partner means of sts / rtr
              and ranks); the N × N grid is never held. The executed result is checked against
              ``phiid.phiid`` of every partner of units 0 and N − 1 (pair by pair).

Two memory figures are printed:

  compiled  XLA's buffer plan of the compiled program (``Compiled.memory_analysis()``): arguments
            + outputs + temporaries of one device (per device for a sharded program). This is
            what a real accelerator would have to hold; nothing is executed.
  RSS       the subprocess's peak resident set (``ru_maxrss``) over the executed calls, minus the
            RSS just before them, for the whole process (all simulated devices together), and the
            absolute peak. Each call's result is released before the next call starts, so the
            figure is one call's peak (two results held at once added 1 GiB at N = 4096).

--run_units executes at a smaller N than the compiled analysis (0: the same N; -1: none).
float32, MMI, pool="mean", block size automatic.
"""
import json
import os
import subprocess
import sys

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "pairs", ["pairs", "unit_means"], "What is compiled and executed.")
flags.DEFINE_integer("num_units", 4096, "Unit count N for the compiled memory analysis.")
flags.DEFINE_integer("run_units", 0, "Unit count executed and timed (0: --num_units; -1: none).")
flags.DEFINE_integer("num_prompts", 4, "Prompts P.")
flags.DEFINE_integer("num_steps", 24, "Time steps T.")
flags.DEFINE_integer("devices", 1, "Simulated CPU devices; > 1 shards the pair grid over them.")
flags.DEFINE_integer("repeats", 2, "Executed calls (the first includes compilation).")
flags.DEFINE_integer("timeout", 1800, "Seconds per subprocess.")

_CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp, numpy as np
from synergy_jax import phiid
from synergy_jax.phiid import pairs, unit_means as um
mode = sys.argv[1]
n, run_n, p, t, devices, repeats = map(int, sys.argv[2:8])
config = phiid.PhiidConfig()
f32 = jnp.dtype("float32")
mesh = jax.sharding.Mesh(np.array(jax.devices()), ("pairs",)) if devices > 1 else None
out = {"devices": len(jax.devices())}
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

block = pairs.auto_block_size(p, n, t - 1, itemsize=4, config=config)
acts = jax.ShapeDtypeStruct((p, n, t), jnp.float32)
if mode == "pairs":
  lowered = pairs.all_pairs_core.lower(acts, acts, config=config, same=True, mesh=mesh,
                                       block=block, dtype=f32)
else:
  lowered = um.unit_sums.lower(acts, config=config, mesh=mesh, block=block, dtype=f32)
mem = lowered.compile().memory_analysis()
out["compiled"] = {"N": n, "block": block, "argument_bytes": mem.argument_size_in_bytes,
                   "output_bytes": mem.output_size_in_bytes, "temp_bytes": mem.temp_size_in_bytes,
                   "peak_bytes": mem.argument_size_in_bytes + mem.output_size_in_bytes
                                 + mem.temp_size_in_bytes}
if run_n > 0:
  rng = np.random.default_rng(0)
  a = rng.standard_normal((p, run_n, t)).astype(np.float32)
  a[:, :, 1:] += 0.5 * a[:, :, :-1]
  a[:, 1, 1:] += 0.8 * a[:, 0, :-1]  # a coupled pair
  before = rss()
  times = []
  res = None
  for _ in range(repeats):
    res = None  # the previous call's result is released first: the peak is that of one call
    start = time.perf_counter()
    if mode == "pairs":
      res = phiid.all_pairs(a, config=config, mesh=mesh)
      res.block_until_ready()
    else:
      res = um.unit_means(a, config=config, mesh=mesh)
    times.append(time.perf_counter() - start)
  peak = rss()
  run = {"N": run_n, "call_s": times, "rss_increase_bytes": peak - before, "rss_peak_bytes": peak}
  if mode == "pairs":
    host = np.asarray(res)  # on CPU a view of the result's buffer: no second copy
    run["rss_peak_after_numpy_bytes"] = rss()
    run["finite_sample"] = bool(np.isfinite(host[0, 1:8]).all())
  else:
    # Units 0 and N − 1 against every partner, pair by pair (phiid.phiid's kernel, pool="mean":
    # the mean over prompts of per-prompt atoms), in float64.
    with jax.enable_x64(True):
      errs = []
      for u in (0, run_n - 1):
        others = np.delete(np.arange(run_n), u)
        src = np.broadcast_to(a[:, u:u + 1], (p, run_n - 1, t)).astype(np.float64)
        atoms, code = phiid.one_pair.pair_core(src, a[:, others].astype(np.float64),
                                               config=config, local=False,
                                               dtype=jnp.dtype("float64"))
        ref = float(np.mean(np.asarray(atoms).mean(0)[:, phiid.ATOMS.index("sts")]))
        got = float(res.partner_mean("sts")[u])
        errs.append(abs(got - ref) / abs(ref))
    run["check_units"] = [0, run_n - 1]
    run["check_max_rel_err_sts"] = max(errs)
    run["count_min"] = float(res.count.min())
    run["synergy_finite"] = bool(np.isfinite(res.partner_mean("sts")).all())
  out["run"] = run
print("RESULT " + json.dumps(out))
"""


def run_case(mode, n, run_n, p, t, devices, repeats, timeout):
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={devices}").strip()
  env["JAX_PLATFORMS"] = "cpu"
  args = [mode] + [str(v) for v in (n, run_n, p, t, devices, repeats)]
  proc = subprocess.run([sys.executable, "-c", _CHILD] + args, env=env, capture_output=True,
                        text=True, timeout=timeout)
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
  if proc.returncode != 0 or not lines:
    raise RuntimeError(f"case {mode} N={n} devices={devices} failed:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def main(argv):
  del argv
  run_n = FLAGS.num_units if FLAGS.run_units == 0 else FLAGS.run_units
  r = run_case(FLAGS.mode, FLAGS.num_units, run_n, FLAGS.num_prompts, FLAGS.num_steps,
               FLAGS.devices, FLAGS.repeats, FLAGS.timeout)
  gb = lambda b: f"{b / 2 ** 30:.2f} GiB"
  c = r["compiled"]
  print(f"# bench_phiid_memory --mode={FLAGS.mode}: P={FLAGS.num_prompts}, T={FLAGS.num_steps}, "
        f"float32, MMI, {r['devices']} device(s)")
  print(f"compiled N={c['N']} block={c['block']}: per-device peak {gb(c['peak_bytes'])} "
        f"(arguments {gb(c['argument_bytes'])}, output {gb(c['output_bytes'])}, temporaries "
        f"{gb(c['temp_bytes'])})")
  if "run" in r:
    u = r["run"]
    calls = ", ".join(f"{v:.1f}" for v in u["call_s"])
    line = (f"executed N={u['N']}: calls {calls} s (the first includes compilation), process "
            f"peak RSS {gb(u['rss_peak_bytes'])}, increase over the calls "
            f"{gb(u['rss_increase_bytes'])} (all devices)")
    if "finite_sample" in u:
      line += (f"; peak RSS after np.asarray of the result {gb(u['rss_peak_after_numpy_bytes'])}"
               f", finite sample {u['finite_sample']}")
    else:
      line += (f"; sts partner means all finite {u['synergy_finite']}, fewest partners "
               f"{u['count_min']:.0f}, units {u['check_units']} against phiid.phiid pair by pair: "
               f"max relative error {u['check_max_rel_err_sts']:.1e}")
    print(line)


if __name__ == "__main__":
  app.run(main)
