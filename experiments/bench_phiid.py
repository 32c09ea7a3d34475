"""Benchmark: all-pairs ΦID (synergy_jax.phiid.all_pairs) of each estimator kind against the
per-pair reference loop.

  python -m experiments.bench_phiid                      # float64, N = 256 and 1152, P=60, T=100
  python -m experiments.bench_phiid --nox64 --num_units=4096 --kinds=gaussian

For each kind (--kinds: gaussian, copula, discrete) and each N: all_pairs is called once to
compile (reported separately as "compile"), then timed over --repeats runs (median). The plain
NumPy/SciPy reference (tests/phiid/phiid_reference.py: a Python loop over pairs and prompts,
per-sample Gaussian log-densities or plug-in counts, rank and binarisation transforms written
from their definitions) is timed in the same run on --reference_pairs random pairs and its time
is extrapolated linearly to all N(N−1) ordered pairs (marked "extrapolated"); the max
|difference| is taken over those pairs.
"""
import pathlib
import platform
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "phiid"))
import phiid_reference  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

from synergy_jax import phiid  # noqa: E402  pylint: disable=g-import-not-at-top

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_prompts", 60, "Prompts P.")
flags.DEFINE_list("num_units", ["256", "1152"], "Unit counts N to benchmark.")
flags.DEFINE_integer("num_steps", 100, "Time steps T per prompt.")
flags.DEFINE_integer("tau", 1, "Lag.")
flags.DEFINE_bool("x64", True, "Compute in float64 (else float32).")
flags.DEFINE_enum("redundancy", "mmi", ["mmi", "ccs"], "Redundancy function.")
flags.DEFINE_enum("pool", "mean", ["mean", "concat"], "Pooling over prompts.")
flags.DEFINE_integer("reference_pairs", 20, "Pairs timed with the reference loop (0: skip).")
flags.DEFINE_integer("repeats", 3, "Timed all_pairs runs (median reported).")
flags.DEFINE_integer("block_size", 0, "Rows per block (0: automatic).")
flags.DEFINE_enum("mesh", "none", ["none", "auto"], "'auto': shard over all local devices.")
flags.DEFINE_integer("seed", 0, "Data seed.")
flags.DEFINE_list("kinds", ["gaussian", "copula", "discrete"], "Estimator kinds to time.")
flags.DEFINE_enum("preprocess", "none", ["none", "detrend", "diff"], "Series preprocessing.")
flags.DEFINE_bool("bias_correction", False, "Analytic Gaussian bias correction.")


def synthetic_acts(p, n, t, seed):
  """(P, N, T) positive, autocorrelated, partly coupled series (like attention-output norms)."""
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((p, n, t))
  for s in range(1, t):
    a[:, :, s] += 0.6 * a[:, :, s - 1]
  a[:, 1::2, 1:] += 0.5 * a[:, 0::2, :-1][:, : a[:, 1::2].shape[1]]
  return 5.0 + np.abs(a)


def _config(kind):
  return phiid.PhiidConfig(tau=FLAGS.tau, redundancy=FLAGS.redundancy, pool=FLAGS.pool,
                           kind=kind, preprocess=FLAGS.preprocess,
                           bias_correction=FLAGS.bias_correction and kind != "discrete")


def _reference(acts, config, pairs):
  """Per-pair reference atoms at ``pairs`` (dict (i, j) → (16,))."""
  if config.kind == "gaussian" and config.preprocess == "none" and not config.bias_correction:
    out = phiid_reference.reference_all_pairs(acts, config.tau, config.redundancy, config.pool,
                                              pairs=pairs)
    return {pair: out[pair] for pair in pairs}
  if config.bias_correction:
    return {}  # the reference has no bias correction: timing only
  p = acts.shape[0]
  one = lambda xs, ys: phiid_reference.reference_variant(xs, ys, config.tau, config.redundancy,
                                                         config.kind, prep=config.preprocess)
  if config.pool == "concat":
    return {(i, j): one(acts[:, i], acts[:, j]) for i, j in pairs}
  return {(i, j): np.mean([one(acts[q:q + 1, i], acts[q:q + 1, j]) for q in range(p)], axis=0)
          for i, j in pairs}


def bench_one(n, kind):
  p, t = FLAGS.num_prompts, FLAGS.num_steps
  acts = synthetic_acts(p, n, t, FLAGS.seed)
  config = _config(kind)
  kwargs = dict(config=config, block_size=FLAGS.block_size or None,
                mesh=None if FLAGS.mesh == "none" else "auto")
  acts_dev = jax.device_put(acts.astype(np.float64 if FLAGS.x64 else np.float32))
  start = time.perf_counter()
  out = phiid.all_pairs(acts_dev, **kwargs).block_until_ready()
  first = time.perf_counter() - start
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    out = phiid.all_pairs(acts_dev, **kwargs).block_until_ready()
    times.append(time.perf_counter() - start)
  run = float(np.median(times))
  out = np.asarray(out)
  row = {"kind": kind, "N": n, "pairs": n * (n - 1), "all_pairs_s": run,
         "compile_s": max(first - run, 0.0), "pairs_per_s": n * (n - 1) / run,
         "dtype": str(out.dtype)}
  if FLAGS.reference_pairs:
    rng = np.random.default_rng(FLAGS.seed + 1)
    pairs = set()
    while len(pairs) < min(FLAGS.reference_pairs, n * (n - 1)):
      i, j = rng.integers(0, n, 2)
      if i != j:
        pairs.add((int(i), int(j)))
    pairs = sorted(pairs)
    start = time.perf_counter()
    expected = _reference(acts, config, pairs)
    ref_s = time.perf_counter() - start
    if expected:
      per_pair = ref_s / len(pairs)
      row.update(ref_pairs=len(pairs), ref_s_per_pair_prompt=per_pair / p,
                 ref_total_s_extrapolated=per_pair * n * (n - 1),
                 speedup=per_pair * n * (n - 1) / run,
                 max_abs_diff=float(max(np.max(np.abs(out[pair] - expected[pair]))
                                        for pair in pairs)))
  return row


def main(argv):
  del argv
  if FLAGS.x64:
    jax.config.update("jax_enable_x64", True)
  print(f"# bench_phiid: {platform.processor() or platform.machine()}, "
        f"devices={jax.devices()}, P={FLAGS.num_prompts}, T={FLAGS.num_steps}, "
        f"tau={FLAGS.tau}, {FLAGS.redundancy}, pool={FLAGS.pool}, "
        f"preprocess={FLAGS.preprocess}, bias_correction={FLAGS.bias_correction}, "
        f"{'float64' if FLAGS.x64 else 'float32'}, mesh={FLAGS.mesh}")
  header = ("| kind | N | pairs | all_pairs (s) | compile (s) | pairs/s | "
            "reference s/pair/prompt | reference total (s, extrapolated) | speed ratio | "
            "max abs diff |")
  print(header)
  print("|---" * 10 + "|")
  for kind, n in ((k, int(v)) for k in FLAGS.kinds for v in FLAGS.num_units):
    r = bench_one(n, kind)
    ref = (f"{r['ref_s_per_pair_prompt'] * 1e3:.3f} ms | {r['ref_total_s_extrapolated']:.0f} | "
           f"{r['speedup']:.0f}x | {r['max_abs_diff']:.1e}") if "speedup" in r else "- | - | - | -"
    print(f"| {r['kind']} | {r['N']} | {r['pairs']} | {r['all_pairs_s']:.3f} | "
          f"{r['compile_s']:.2f} | {r['pairs_per_s']:.3g} | {ref} |", flush=True)


if __name__ == "__main__":
  app.run(main)
