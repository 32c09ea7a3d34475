"""Slow, plain NumPy/SciPy ΦID written straight from the definitions: the independent reference.

Used by the tests in this folder and by experiments/bench_phiid.py (which inserts this folder into
sys.path). It shares no code with synergy_jax.phiid: the lattice is built from the "is below"
relation written out by hand and solved with np.linalg.solve, local entropies come from
scipy.stats.multivariate_normal.logpdf, and pairs are visited in a Python loop.
"""
import numpy as np
from scipy import stats

NODES = "rxys"
NAMES = [a + "t" + b for a in NODES for b in NODES]
# Nodes at or below each node of the two-source redundancy lattice {1}{2} < {1}, {2} < {12}.
BELOW = {"r": "r", "x": "rx", "y": "ry", "s": "rxys"}


def lattice_matrix():
  """M[k, m] = 1 when atom m lies at or below lattice node k (product order): R = M @ atoms."""
  m = np.zeros((16, 16))
  for k, node in enumerate(NAMES):
    for j, atom in enumerate(NAMES):
      if atom[0] in BELOW[node[0]] and atom[2] in BELOW[node[2]]:
        m[k, j] = 1.0
  return m


def _std(v):
  return (v - v.mean()) / v.std(ddof=1)


def local_mi_table(x, y, tau):
  """Local MIs of one pair: dict "ab" → (n,) for a, b ∈ {x, y, s} (past a, future b)."""
  z = np.stack([_std(x[:-tau]), _std(y[:-tau]), _std(x[tau:]), _std(y[tau:])])
  past = {"x": [0], "y": [1], "s": [0, 1]}
  fut = {"x": [2], "y": [3], "s": [2, 3]}

  def logp(idx):
    sub = z[idx]
    cov = np.atleast_2d(np.cov(sub, ddof=1))
    return stats.multivariate_normal(mean=np.zeros(len(idx)), cov=cov).logpdf(sub.T)

  return {a + b: logp(past[a] + fut[b]) - logp(past[a]) - logp(fut[b])
          for a in "xys" for b in "xys"}


def discrete_local_mi_table(x, y, tau):
  """Plug-in local MIs of integer series: dict "ab" → (n,), log p(a,b) / (p(a) p(b)) per sample."""
  cols = {"xp": x[:-tau], "yp": y[:-tau], "xf": x[tau:], "yf": y[tau:]}
  past = {"x": ["xp"], "y": ["yp"], "s": ["xp", "yp"]}
  fut = {"x": ["xf"], "y": ["yf"], "s": ["xf", "yf"]}
  n = len(cols["xp"])

  def logp(names):
    keys = list(zip(*[cols[k] for k in names]))
    counts = {}
    for key in keys:
      counts[key] = counts.get(key, 0) + 1
    return np.log(np.array([counts[key] / n for key in keys]))

  return {a + b: logp(past[a] + fut[b]) - logp(past[a]) - logp(fut[b])
          for a in "xys" for b in "xys"}


def _mmi(*cands):
  means = [c.mean() for c in cands]
  return cands[int(np.argmin(means))]


def _ccs(i1, i2, i12):
  c = i1 + i2 - i12
  ok = (np.sign(i1) == np.sign(c)) & (np.sign(i2) == np.sign(c)) & (np.sign(i12) == np.sign(c))
  return np.where(ok, c, 0.0)


def reference_pair(x, y, tau=1, redundancy="mmi", kind="gaussian"):
  """ΦID of one pair. Returns (average atoms (16,), local atoms (n, 16)) in NAMES order, nats.

  kind="discrete": x and y are integer states (plug-in probabilities).
  """
  i = (local_mi_table if kind == "gaussian" else discrete_local_mi_table)(x, y, tau)
  local = local_atoms_from_mis(i, redundancy)
  return local.mean(axis=0), local


def local_atoms_from_mis(i, redundancy):
  """The lattice solved from given local MIs (dict "ab" → (n,)): local atoms (n, 16)."""
  r = {}
  for a in "xys":
    for b in "xys":
      r[a + b] = i[a + b]
  if redundancy == "mmi":
    red = lambda c1, c2, joint: _mmi(c1, c2)
  else:
    red = _ccs
  # Past sources (x_p, y_p) about a future target, and future sources about a past target.
  r["rx"] = red(i["xx"], i["yx"], i["sx"])
  r["ry"] = red(i["xy"], i["yy"], i["sy"])
  r["rs"] = red(i["xs"], i["ys"], i["ss"])
  r["xr"] = red(i["xx"], i["xy"], i["xs"])
  r["yr"] = red(i["yx"], i["yy"], i["ys"])
  r["sr"] = red(i["sx"], i["sy"], i["ss"])
  if redundancy == "mmi":
    r["rr"] = _mmi(i["xx"], i["xy"], i["yx"], i["yy"])
  else:
    # Double co-information (= rtr − sts with the other lattice values fixed), Mediano et al.
    co = (-(i["xx"] + i["xy"] + i["yx"] + i["yy"]) + i["xs"] + i["ys"] + i["sx"] + i["sy"]
          - i["ss"] + r["rx"] + r["ry"] - r["rs"] + r["xr"] + r["yr"] - r["sr"])
    ok = np.ones_like(co, dtype=bool)
    for k in ("xx", "xy", "yx", "yy"):
      ok &= np.sign(i[k]) == np.sign(co)
    r["rr"] = np.where(ok, co, 0.0)
  rhs = np.stack([r[name[0] + name[2]] for name in NAMES])  # (16, n)
  return np.linalg.solve(lattice_matrix(), rhs).T  # (n, 16)


def reference_all_pairs(acts, tau=1, redundancy="mmi", pool="mean", acts_y=None, pairs=None):
  """Python loop over pairs (and prompts). acts (P, U, T) → (U, U, 16) with NaN where not computed.

  pairs: optional list of (i, j) to compute (others stay NaN); default all i ≠ j (all i, j when
  acts_y is given).
  """
  acts = np.asarray(acts, dtype=np.float64)
  ys = acts if acts_y is None else np.asarray(acts_y, dtype=np.float64)
  p, n, t = acts.shape
  if pairs is None:
    pairs = [(i, j) for i in range(n) for j in range(n) if acts_y is not None or i != j]
  out = np.full((n, n, 16), np.nan)
  for i, j in pairs:
    if pool == "mean":
      out[i, j] = np.mean([reference_pair(acts[q, i], ys[q, j], tau, redundancy)[0]
                           for q in range(p)], axis=0)
    else:
      out[i, j] = _concat_pair(acts[:, i], ys[:, j], tau, redundancy)
  return out


def _concat_pair(xs, ys, tau, redundancy):
  """Pooled estimate: lagged samples of every prompt side by side, never across a boundary.

  Builds a series whose past/future split reproduces exactly the per-prompt lagged pairs: the
  reference works on explicit (past, future) columns instead of one long series.
  """
  past_x = np.concatenate([x[:-tau] for x in xs])
  past_y = np.concatenate([y[:-tau] for y in ys])
  fut_x = np.concatenate([x[tau:] for x in xs])
  fut_y = np.concatenate([y[tau:] for y in ys])
  # A series s with s[:-1] = past and s[1:] = future only exists when they overlap, so call the
  # pair routine on a two-sample "lag" layout instead: interleave nothing, pass columns directly.
  return reference_columns(past_x, past_y, fut_x, fut_y, redundancy)[0]


def reference_columns(px, py, fx, fy, redundancy="mmi"):
  """Like reference_pair, but from explicit past and future columns (each (n,))."""
  # Lag-1 layout trick: x = [px..., ?] would not work; instead compute with tau = n on a series
  # [px, fx] of length 2n, whose x[:-n] = px and x[n:] = fx exactly.
  n = px.shape[0]
  return reference_pair(np.concatenate([px, fx]), np.concatenate([py, fy]), n, redundancy)


# ------------------------------------------------------------------ estimator variants
# Written from the definitions (Ince et al. 2017 for the copula; the study's reference code for
# the lagged binarisation), with SciPy where a standard routine exists.


def preprocess(v, how):
  """Per-series preprocessing along the last axis: scipy's linear detrend or np.diff."""
  from scipy import signal
  if how == "none":
    return np.asarray(v, float)
  if how == "detrend":
    return signal.detrend(np.asarray(v, float), axis=-1, type="linear")
  return np.diff(np.asarray(v, float), axis=-1)


def copula_scores(v):
  """Normal scores of a 1-D sample: Φ⁻¹((r + 1)/(n + 1)), r = ordinal rank from 0."""
  r = stats.rankdata(v, method="ordinal") - 1
  return stats.norm.ppf((r + 1) / (len(v) + 1))


def quantile_bins(v, k):
  """States 0..k−1: ⌊k · (number of values strictly below) / n⌋."""
  r = stats.rankdata(v, method="min") - 1
  return (k * r) // len(v)


def lagged_columns(xs, ys, tau, kind="gaussian", discretise="lagged", num_states=2,
                   prep="none"):
  """Past and future columns (px, py, fx, fy) of one pair, pooled over the prompts given.

  xs, ys: (P, T) series (P = 1 for one prompt). Statistics (means, ranks, bins) are over all
  P prompts' samples, as for pool="concat" (a single prompt for pool="mean").
  """
  xs, ys = preprocess(xs, prep), preprocess(ys, prep)
  cols = []
  for v in (xs, ys):
    if kind == "discrete" and discretise != "lagged":
      flat = v.reshape(-1)
      if discretise == "series":
        states = (flat > flat.mean()).astype(int)
      else:
        states = quantile_bins(flat, num_states)
      v = states.reshape(v.shape)
    past = np.concatenate([row[:-tau] for row in v])
    fut = np.concatenate([row[tau:] for row in v])
    if kind == "copula":
      past, fut = copula_scores(past), copula_scores(fut)
    elif kind == "discrete" and discretise == "lagged":
      past, fut = (past > past.mean()).astype(int), (fut > fut.mean()).astype(int)
    cols.append((past, fut))
  (px, fx), (py, fy) = cols
  return px, py, fx, fy


def reference_variant(xs, ys, tau, redundancy="mmi", kind="gaussian", **kw):
  """Average atoms (16,) of one pooled estimate from explicit lagged columns."""
  px, py, fx, fy = lagged_columns(xs, ys, tau, kind, **kw)
  n = px.shape[0]
  if kind == "discrete":
    return reference_pair(np.concatenate([px, fx]), np.concatenate([py, fy]), n, redundancy,
                          "discrete")[0]
  return reference_columns(px, py, fx, fy, redundancy)[0]
