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

  python -m experiments.bench_phiid --redundancy=ccs --num_units=256 --kinds=gaussian \
      --ccs_baseline --reference_pairs=0

--ccs_baseline (redundancy=ccs, kind gaussian/copula, pool and preprocessing as given, no bias
correction) also times, in the same run and on the same data, the CCS all-pairs kernel this
project had before 2026-12-02 (``previous_ccs_all_pairs``: per-sample forward substitution of
every correlation sub-matrix via ``gaussian.local_lattice_values``, 16 sums over samples, its
block size of 2 GiB of temporaries) and prints the ratio and the max |difference|.

  python -m experiments.bench_phiid --nox64 --kinds=gaussian --num_units=256 --surrogates=100 \
      --reference_pairs=0

--surrogates=S also times ``analysis.nulls.null_moments`` for S trial-shuffling surrogates (sts
and rtr; the compiled Gaussian MMI kernel where it applies) against the all_pairs time of the
same row, and checks it against the straightforward computation (one all_pairs call per
surrogate, timed once) on the same design. With --pool=concat the default path is the spectral
one (``analysis.nulls_spectral``: all rotations of a prompt relabelling at once); the
per-surrogate kernel is then timed too, on the same design:

  python -m experiments.bench_phiid --kinds=gaussian --num_units=256 --surrogates=100 \
      --reference_pairs=0 --pool=concat
"""
import functools
import pathlib
import platform
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "phiid"))
import phiid_reference  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

from synergy_jax import phiid  # noqa: E402  pylint: disable=g-import-not-at-top
from synergy_jax.phiid import blocks_gaussian  # noqa: E402  pylint: disable=g-import-not-at-top
from synergy_jax.phiid import gaussian  # noqa: E402  pylint: disable=g-import-not-at-top
from synergy_jax.phiid import grid  # noqa: E402  pylint: disable=g-import-not-at-top
from synergy_jax.phiid import pairs  # noqa: E402  pylint: disable=g-import-not-at-top
from synergy_jax.phiid import units  # noqa: E402  pylint: disable=g-import-not-at-top

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
flags.DEFINE_bool("ccs_baseline", False, "Also time the previous CCS kernel (same run, same data).")
flags.DEFINE_integer("surrogates", 0, "Also time the surrogate null of this many trial-shuffling "
                     "surrogates (0: no) against one all_pairs call, and check it against the "
                     "straightforward computation (one all_pairs call per surrogate).")


def _previous_ccs_block(xs, ys, pool):
  """The CCS row block as it was before the Cholesky-chain kernel (kept here as the baseline)."""
  xp, xf = xs
  yp, yf = ys
  p, block, s = xp.shape
  shape = (block, yp.shape[1])
  corrs, _ = blocks_gaussian.correlation_source(xp, xf, yp, yf, pool)
  tol = blocks_gaussian.pivot_tolerance(xp.dtype)

  def step(q, carry):
    acc, first = carry
    cq = corrs(q)
    zs = (xp[q][:, None, :], yp[q][None, :, :], xf[q][:, None, :], yf[q][None, :, :])
    vals = gaussian.local_lattice_values(cq, zs, "ccs")  # 16 × (B, M, S)
    bad = ~(gaussian.smallest_pivot(*cq) > tol)
    return (tuple(t + jnp.sum(v, axis=-1) for t, v in zip(acc, vals)),
            jnp.where((first < 0) & bad, q, first))

  init = (tuple(jnp.zeros(shape, xp.dtype) for _ in range(16)), -jnp.ones(shape, jnp.int32))
  acc, first = lax.fori_loop(0, p, step, init)
  return jnp.stack(acc, axis=-1) / (p * s), first


@functools.partial(jax.jit, static_argnames=("config", "block", "dtype"))
def previous_ccs_all_pairs(acts, *, config, block, dtype):
  """(P, U, T) → (U, U, 16) CCS atoms with the previous kernel (NaN where all_pairs masks)."""
  u = acts.shape[1]
  past, future, _, _, bad = units.prepared(acts, config, dtype)
  atoms, _ = grid.pair_grid(lambda xb, yw: _previous_ccs_block(xb, yw, config.pool),
                            (past, future), (past, future), u=u, block=block, same=True,
                            mesh=None, finish=functools.partial(pairs.finish_rows, same=True),
                            aux=(bad, bad))
  return atoms


def previous_ccs_block_size(p, n, s, itemsize, memory_bytes=2 ** 31):
  """The previous memory model's rows per CCS block: ~64 arrays of (B, N, S), no row cap."""
  return int(max(1, min(n, memory_bytes // (n * s * 64 * itemsize))))


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
  if FLAGS.ccs_baseline:
    row.update(_time_previous_ccs(acts_dev, config, out))
    row["speedup_vs_previous"] = row["previous_s"] / run
  if FLAGS.surrogates:
    row.update(_time_null(np.asarray(acts_dev), config, out))
    row["null_calls"] = row["null_s"] / run
  if FLAGS.reference_pairs:
    rng = np.random.default_rng(FLAGS.seed + 1)
    chosen = set()
    while len(chosen) < min(FLAGS.reference_pairs, n * (n - 1)):
      i, j = rng.integers(0, n, 2)
      if i != j:
        chosen.add((int(i), int(j)))
    chosen = sorted(chosen)
    start = time.perf_counter()
    expected = _reference(acts, config, chosen)
    ref_s = time.perf_counter() - start
    if expected:
      per_pair = ref_s / len(chosen)
      row.update(ref_pairs=len(chosen), ref_s_per_pair_prompt=per_pair / p,
                 ref_total_s_extrapolated=per_pair * n * (n - 1),
                 speedup=per_pair * n * (n - 1) / run,
                 max_abs_diff=float(max(np.max(np.abs(out[pair] - expected[pair]))
                                        for pair in chosen)))
  return row


def _time_null(acts, config, out):
  """Median time of ``nulls.null_moments`` (sts, rtr; its compiled kernel where it applies) for
  --surrogates trial surrogates, the time of the straightforward computation (one
  ``all_pairs(acts, acts_y=surrogate)`` call per surrogate) and the largest difference."""
  from synergy_jax.analysis import nulls  # pylint: disable=g-import-not-at-top
  p, _, t = acts.shape
  design = nulls.draw_design("trial", FLAGS.surrogates, p, t, tau=config.tau, seed=FLAGS.seed)
  obs = out[..., [phiid.ATOMS.index("sts"), phiid.ATOMS.index("rtr")]]
  call = lambda **kw: nulls.null_moments(acts, obs, design, config, dtype=acts.dtype, **kw)

  def timed(**kw):
    call(**kw)
    times = []
    for _ in range(FLAGS.repeats):
      start = time.perf_counter()
      res = call(**kw)
      times.append(time.perf_counter() - start)
    return res, float(np.median(times))

  from synergy_jax.analysis import nulls_spectral  # pylint: disable=g-import-not-at-top
  spectral = nulls_spectral.applies(design, config, ("sts", "rtr"), acts.dtype.itemsize,
                                    acts.shape[1])
  fast, fast_s = timed()
  extra = {}
  if spectral:
    kern, kern_s = timed(spectral=False)
    extra = {"null_kernel_s": kern_s, "null_kernel_max_abs_diff": max(
        float(np.nanmax(np.abs(getattr(fast, k) - getattr(kern, k))))
        for k in ("s1", "s2", "null_head"))}
  start = time.perf_counter()
  slow = call(force_slow=True)
  slow_s = time.perf_counter() - start
  diff = max(float(np.nanmax(np.abs(getattr(fast, k) - getattr(slow, k))))
             for k in ("s1", "s2", "null_head"))
  # counts of surrogates ≥ observed can differ where a value is within rounding of the observed
  counts = sum(int(np.sum(getattr(fast, k) != getattr(slow, k))) for k in ("cnt", "ge"))
  path = ("spectral" if spectral else "compiled kernel" if nulls.kernel_applies(
      config, ("sts", "rtr")) else "estimator per surrogate")
  return {"null_s": fast_s, "null_slow_s": slow_s, "null_max_abs_diff": diff,
          "null_counts_differ": counts, "null_path": path, **extra}


def _time_previous_ccs(acts_dev, config, out):
  """Median time of the previous CCS kernel on the same data, and its max |difference|."""
  if config.redundancy != "ccs" or config.kind == "discrete" or config.bias_correction:
    raise ValueError("--ccs_baseline needs --redundancy=ccs, a Gaussian or copula kind and no "
                     "bias correction")
  p, n, t = acts_dev.shape
  s = t - config.tau - (1 if config.preprocess == "diff" else 0)
  dtype = np.dtype(acts_dev.dtype)
  block = previous_ccs_block_size(p, n, s, dtype.itemsize)
  call = lambda: previous_ccs_all_pairs(acts_dev, config=config, block=block,
                                        dtype=dtype).block_until_ready()
  call()
  times = []
  for _ in range(FLAGS.repeats):
    start = time.perf_counter()
    prev = call()
    times.append(time.perf_counter() - start)
  prev = np.asarray(prev)
  if not np.array_equal(np.isnan(prev), np.isnan(out)):
    raise AssertionError("previous and current CCS kernels mask different pairs")
  prev_s = float(np.median(times))
  return {"previous_s": prev_s, "previous_block": block,
          "previous_max_abs_diff": float(np.nanmax(np.abs(prev - out)))}


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
    if "previous_s" in r:
      print(f"#   previous CCS kernel (block {r['previous_block']}): {r['previous_s']:.3f} s, "
            f"this one {r['all_pairs_s']:.3f} s: {r['speedup_vs_previous']:.1f}x faster, "
            f"max abs diff {r['previous_max_abs_diff']:.1e}", flush=True)
    if "null_s" in r:
      print(f"#   surrogate null, {FLAGS.surrogates} trial surrogates of sts and rtr "
            f"({r['null_path']}): "
            f"{r['null_s']:.3f} s = {r['null_calls']:.1f} all_pairs calls; straightforward "
            f"(one all_pairs call per surrogate) {r['null_slow_s']:.2f} s; max abs diff of sums "
            f"and null head means {r['null_max_abs_diff']:.1e}, counts (finite, ≥ observed) "
            f"that differ: {r['null_counts_differ']} of {2 * r['N'] ** 2 * 2}", flush=True)
    if "null_kernel_s" in r:
      print(f"#   per-surrogate compiled kernel on the same design: {r['null_kernel_s']:.3f} s = "
            f"{r['null_kernel_s'] / r['all_pairs_s']:.1f} all_pairs calls; spectral "
            f"{r['null_kernel_s'] / r['null_s']:.1f}x faster; max abs diff "
            f"{r['null_kernel_max_abs_diff']:.1e}", flush=True)


if __name__ == "__main__":
  app.run(main)
