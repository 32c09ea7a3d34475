"""Is there a phase transition? Logistic vs constant vs linear fits of an order parameter.

Data: one order-parameter value per prompt, ``y`` (n,), with the prompt's difficulty ``x`` (n,)
(numeric level labels; several prompts per level). Noise model for every fit: independent
Gaussian with one variance, so least squares = maximum likelihood.

  constant  y = c                                             k = 2 parameters (c, σ²)
  linear    y = a + b x                                       k = 3
  logistic  y = low + (high − low) · σ((x − d*) / w)          k = 5 (d*, w, low, high, σ²)

The logistic is fitted without scipy: for fixed (d*, w) the model is linear in (low, high), so
the plateaus and the residual sum of squares have a closed form (2×2 normal equations on per-level
sums). A log-spaced grid over w and a grid over d* ∈ [min x, max x] is searched, then zoomed in
around the best cell ``refine`` times. Among equally good cells (a sharp step between two levels
fits equally well anywhere between them) the threshold nearest the median of the tied cells is
taken, i.e. the middle of the gap.

Verdict: a transition is *supported* only if all of these hold (each reported separately):
  1. aic:       AIC(logistic) ≤ min(AIC(constant), AIC(linear)) − ``min_delta_aic`` (default 2);
  2. held_out:  5-fold cross-validated (prompts split within levels) predictive log-likelihood
                of the logistic exceeds both others;
  3. shuffle:   permutation p-value of the logistic's explained variance R² under shuffled level
                labels < ``alpha`` (default 0.05);
  4. interior:  the bootstrap CI of d* lies strictly inside (min level, max level);
  5. abrupt:    the 10–90 % rise, 2 ln 9 · w, spans at most ``max_rise_fraction`` (default 0.5) of
                the difficulty range.
A smooth linear trend fails 1/2 (the logistic costs two more parameters for no better fit); pure
noise fails 3; a jump at the edge of the studied range fails 4.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from synergy_jax.analysis.stats import percentile_interval, stratified_bootstrap_indices

RISE_10_90 = 2.0 * np.log(9.0)  # (x90 − x10) / w for a logistic


def logistic(x, threshold, width, low, high):
  """low + (high − low) / (1 + exp(−(x − threshold) / width)); broadcasts."""
  z = np.clip((np.asarray(x, dtype=np.float64) - threshold) / width, -500, 500)
  return low + (high - low) / (1.0 + np.exp(-z))


@dataclasses.dataclass(frozen=True)
class Fit:
  """A fitted model: name, params (dict), sse, n, k (parameter count incl. σ²), aic."""
  name: str
  params: dict
  sse: float
  n: int
  k: int

  @property
  def sigma2(self) -> float:
    return self.sse / self.n

  @property
  def aic(self) -> float:
    return 2 * self.k + _nll2(self.sse, self.n)

  def predict(self, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    p = self.params
    if self.name == "constant":
      return np.full(x.shape, p["mean"])
    if self.name == "linear":
      return p["intercept"] + p["slope"] * x
    return logistic(x, p["threshold"], p["width"], p["low"], p["high"])

  def to_dict(self) -> dict:
    return {"name": self.name, **{k: float(v) for k, v in self.params.items()},
            "sse": self.sse, "n": self.n, "k": self.k, "aic": self.aic}


def _nll2(sse: float, n: int) -> float:
  """−2 × maximised Gaussian log-likelihood: n log(2π σ̂²) + n with σ̂² = sse/n (floored)."""
  s2 = max(sse / n, 1e-300)
  return n * np.log(2 * np.pi * s2) + n


def _check_xy(x, y):
  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if x.ndim != 1 or x.shape != y.shape:
    raise ValueError(f"levels and values must be 1-D of equal length, got {x.shape}, {y.shape}")
  bad = ~(np.isfinite(x) & np.isfinite(y))
  if bad.any():
    raise ValueError(f"non-finite level or value at observations {np.flatnonzero(bad)[:10].tolist()}")
  return x, y


def fit_constant(x, y) -> Fit:
  x, y = _check_xy(x, y)
  m = float(y.mean())
  return Fit("constant", {"mean": m}, float(((y - m) ** 2).sum()), y.size, 2)


def fit_linear(x, y) -> Fit:
  x, y = _check_xy(x, y)
  xc = x - x.mean()
  sxx = float((xc * xc).sum())
  if sxx == 0:
    raise ValueError("linear fit needs at least two distinct difficulty levels")
  b = float((xc * (y - y.mean())).sum() / sxx)
  a = float(y.mean() - b * x.mean())
  return Fit("linear", {"intercept": a, "slope": b}, float(((y - a - b * x) ** 2).sum()), y.size, 3)


def _level_sums(x, y):
  lv, inv = np.unique(x, return_inverse=True)
  c = np.bincount(inv, minlength=lv.size).astype(np.float64)
  sy = np.bincount(inv, weights=y, minlength=lv.size)
  return lv, c, sy


def _grid_sse(lv, c, sy, syy, thr, wid):
  """SSE and plateaus for every (threshold, width) pair; thr, wid: (G,) arrays."""
  z = np.clip((lv[None, :] - thr[:, None]) / wid[:, None], -500, 500)
  s = 1.0 / (1.0 + np.exp(-z))  # (G, L)
  u = 1.0 - s
  suu, svv, suv = (c * u * u).sum(1), (c * s * s).sum(1), (c * u * s).sum(1)
  suy, svy = (u * sy).sum(1), (s * sy).sum(1)
  det = suu * svv - suv * suv
  ok = det > 1e-12 * np.maximum(suu * svv, 1e-300)
  dsafe = np.where(ok, det, 1.0)
  low = np.where(ok, (svv * suy - suv * svy) / dsafe, np.nan)
  high = np.where(ok, (suu * svy - suv * suy) / dsafe, np.nan)
  sse = syy - 2 * (low * suy + high * svy) + low * low * suu + 2 * low * high * suv + high * high * svv
  sse = np.where(ok, np.maximum(sse, 0.0), np.inf)
  return sse, low, high


def _pick(sse, thr, tol):
  """Index of the best cell; ties (within tol) → threshold nearest the tied cells' median."""
  best = np.min(sse)
  tied = np.flatnonzero(sse <= best + tol)
  if tied.size == 1:
    return int(tied[0])
  med = np.median(thr[tied])
  return int(tied[np.argmin(np.abs(thr[tied] - med))])


def fit_logistic(x, y, *, n_thresholds: int = 61, n_widths: int = 40, refine: int = 3) -> Fit:
  """Least-squares logistic in difficulty (see module docstring for the algorithm).

  Args:
    x: (n,) difficulty of each observation (>= 2 distinct values); y: (n,) order parameter.
  Returns:
    Fit with params threshold d*, width w (> 0, units of x), low, high (plateaus; high < low for a
    falling order parameter), jump = high − low.
  """
  x, y = _check_xy(x, y)
  lv, c, sy = _level_sums(x, y)
  if lv.size < 2:
    raise ValueError("logistic fit needs at least two distinct difficulty levels")
  ym = y.mean()
  syc = sy - c * ym  # centre y for numerical accuracy
  syy = float(((y - ym) ** 2).sum())
  span = lv[-1] - lv[0]
  w_lo, w_hi = 0.02 * np.min(np.diff(lv)), 2.0 * span
  thr1 = np.linspace(lv[0], lv[-1], n_thresholds)
  lw1 = np.linspace(np.log(w_lo), np.log(w_hi), n_widths)
  tol = 1e-9 * max(syy, 1e-300)
  dt, dl = thr1[1] - thr1[0], lw1[1] - lw1[0]
  tgrid, lgrid = thr1, lw1
  for _ in range(refine + 1):
    tt, ll = np.meshgrid(tgrid, lgrid, indexing="ij")
    tt, ll = tt.ravel(), ll.ravel()
    sse, low, high = _grid_sse(lv, c, syc, syy, tt, np.exp(ll))
    i = _pick(sse, tt, tol)
    t0, l0 = tt[i], ll[i]
    tgrid = np.clip(np.linspace(t0 - dt, t0 + dt, 21), lv[0], lv[-1])
    lgrid = np.clip(np.linspace(l0 - dl, l0 + dl, 21), np.log(w_lo), np.log(w_hi))
    dt, dl = dt / 10, dl / 10
  params = {"threshold": float(t0), "width": float(np.exp(l0)), "low": float(low[i] + ym),
            "high": float(high[i] + ym)}
  params["jump"] = params["high"] - params["low"]
  return Fit("logistic", params, float(sse[i]), y.size, 5)


_FITTERS = {"constant": fit_constant, "linear": fit_linear, "logistic": fit_logistic}


def cv_folds(x, n_folds: int, seed: int) -> np.ndarray:
  """(n,) fold labels 0..K−1 assigned at random *within* each level, so every fold's training part
  still contains every level (no extrapolation to unseen difficulties)."""
  x = np.asarray(x)
  if n_folds < 2:
    raise ValueError(f"n_folds must be >= 2, got {n_folds}")
  rng = np.random.default_rng(seed)
  folds = np.empty(x.size, dtype=np.int64)
  for level in np.unique(x):
    members = np.flatnonzero(x == level)
    folds[members[rng.permutation(members.size)]] = np.arange(members.size) % n_folds
  return folds


def held_out_loglik(x, y, model: str, *, n_folds: int = 5, seed: int = 0, **fit_kwargs) -> float:
  """K-fold cross-validated predictive Gaussian log-likelihood (nats), summed over observations.

  Prompts are split into ``n_folds`` folds within each level (:func:`cv_folds`); each fold is
  scored by the model fitted on the others, with σ² = training SSE / n_train. Leave-one-*level*-out
  was tried first and rejected: a sharp step between two levels is then unidentifiable whenever one
  of them is held out, which penalises exactly the hypothesis under test.
  Returns NaN when some level has fewer than 2 prompts (a fold would lose that level).
  """
  x, y = _check_xy(x, y)
  if model not in _FITTERS:
    raise ValueError(f"unknown model {model!r}; choose one of {sorted(_FITTERS)}")
  _, counts = np.unique(x, return_counts=True)
  if counts.min() < 2:
    return float("nan")
  folds = cv_folds(x, n_folds, seed)
  total = 0.0
  for k in range(n_folds):
    te = folds == k
    if not te.any():
      continue
    tr = ~te
    f = _FITTERS[model](x[tr], y[tr], **(fit_kwargs if model == "logistic" else {}))
    s2 = max(f.sse / f.n, 1e-300)
    r = y[te] - f.predict(x[te])
    total += float(np.sum(-0.5 * np.log(2 * np.pi * s2) - r * r / (2 * s2)))
  return total


def susceptibility(x, y):
  """(levels (L,), variance across prompts per level (ddof=1; NaN for a single prompt), peak level)."""
  x, y = _check_xy(x, y)
  lv, inv = np.unique(x, return_inverse=True)
  var = np.array([np.var(y[inv == i], ddof=1) if np.sum(inv == i) > 1 else np.nan
                  for i in range(lv.size)])
  peak = float(lv[np.nanargmax(var)]) if np.isfinite(var).any() else float("nan")
  return lv, var, peak


def level_means(x, y):
  """(levels (L,), mean per level, count per level)."""
  x, y = _check_xy(x, y)
  lv, c, sy = _level_sums(x, y)
  return lv, sy / c, c


@dataclasses.dataclass(frozen=True)
class TransitionAnalysis:
  """Everything :func:`analyze_transition` computed; ``to_dict()`` for results.json."""
  fits: dict
  held_out: dict
  levels: np.ndarray
  means: np.ndarray
  susceptibility: np.ndarray
  susceptibility_peak: float
  threshold_ci: tuple
  width_ci: tuple
  jump_ci: tuple
  r2: float
  p_value: float
  criteria: dict
  supported: bool
  explanation: str
  boot_thresholds: np.ndarray

  @property
  def threshold(self):
    """The fitted d* if a transition is supported, else None."""
    return self.fits["logistic"].params["threshold"] if self.supported else None

  def to_dict(self) -> dict:
    lg = self.fits["logistic"].params
    return {
        "supported": self.supported,
        "explanation": self.explanation,
        "threshold": ({"estimate": lg["threshold"], "ci": list(self.threshold_ci),
                       "p_value": self.p_value} if self.supported else None),
        "logistic_threshold_unconfirmed": lg["threshold"],
        "threshold_ci": list(self.threshold_ci), "width_ci": list(self.width_ci),
        "jump_ci": list(self.jump_ci), "p_value": self.p_value, "r2_logistic": self.r2,
        "fits": {k: f.to_dict() for k, f in self.fits.items()},
        "held_out_loglik": self.held_out,
        "levels": self.levels, "level_means": self.means,
        "susceptibility": self.susceptibility, "susceptibility_peak": self.susceptibility_peak,
        "criteria": self.criteria,
    }


def analyze_transition(x, y, *, n_boot: int = 1000, n_perm: int = 1000, seed: int = 0,
                       alpha: float = 0.05, min_delta_aic: float = 2.0,
                       max_rise_fraction: float = 0.5, ci_level: float = 0.95,
                       n_folds: int = 5, fit_kwargs: dict | None = None) -> TransitionAnalysis:
  """Fits, compares and tests a transition (criteria in the module docstring).

  Args:
    x: (n,) difficulty level per prompt; y: (n,) order parameter per prompt.
    n_boot: bootstrap replicates (prompts resampled within each level) for the CIs of d*, w, jump.
    n_perm: shuffled-label replicates for the p-value of the logistic's R².
    n_folds: folds of the cross-validated likelihood.
  Returns:
    TransitionAnalysis; ``.supported`` is the plain answer, ``.criteria`` says why.
  """
  x, y = _check_xy(x, y)
  fk = fit_kwargs or {}
  lv = np.unique(x)
  if lv.size < 3:
    raise ValueError(f"a transition analysis needs >= 3 difficulty levels, got {lv.size}")
  fits = {"constant": fit_constant(x, y), "linear": fit_linear(x, y),
          "logistic": fit_logistic(x, y, **fk)}
  lg = fits["logistic"]
  sst = fits["constant"].sse
  r2 = 1.0 - lg.sse / sst if sst > 0 else 0.0
  held = {m: held_out_loglik(x, y, m, n_folds=n_folds, seed=seed, **fk) for m in fits}

  rng = np.random.default_rng(seed)
  null_r2 = np.empty(n_perm)
  for b in range(n_perm):
    yp = y[rng.permutation(y.size)]
    null_r2[b] = 1.0 - fit_logistic(x, yp, **fk).sse / sst if sst > 0 else 0.0
  p_value = float((1 + np.sum(null_r2 >= r2 - 1e-12)) / (1 + n_perm))

  idx = stratified_bootstrap_indices(x, n_boot, seed + 1)
  boot = np.array([[f.params["threshold"], f.params["width"], f.params["jump"]]
                   for f in (fit_logistic(x[i], y[i], **fk) for i in idx)])
  lo, hi = percentile_interval(boot, ci_level)
  tci, wci, jci = (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1])), (float(lo[2]),
                                                                               float(hi[2]))
  levels, var, peak = susceptibility(x, y)
  _, means, _ = level_means(x, y)

  span = lv[-1] - lv[0]
  best_other_aic = min(fits["constant"].aic, fits["linear"].aic)
  rise = RISE_10_90 * lg.params["width"]
  crit = {
      "aic": {"passed": bool(lg.aic <= best_other_aic - min_delta_aic),
              "value": float(best_other_aic - lg.aic),
              "rule": f"AIC(logistic) <= min(AIC constant, linear) - {min_delta_aic}"},
      "held_out": {"passed": bool(np.isfinite(held["logistic"]) and
                                  held["logistic"] > max(held["constant"], held["linear"])),
                   "value": float(held["logistic"] - max(held["constant"], held["linear"]))
                   if np.isfinite(held["logistic"]) else float("nan"),
                   "rule": f"{n_folds}-fold cross-validated log-lik of logistic > constant "
                           "and linear"},
      "shuffle": {"passed": bool(p_value < alpha), "value": p_value,
                  "rule": f"shuffled-label permutation p of logistic R^2 < {alpha}"},
      "interior": {"passed": bool(tci[0] > lv[0] and tci[1] < lv[-1]), "value": list(tci),
                   "rule": f"{ci_level:.0%} bootstrap CI of threshold inside ({lv[0]}, {lv[-1]})"},
      "abrupt": {"passed": bool(rise <= max_rise_fraction * span), "value": float(rise / span),
                 "rule": f"10-90% rise <= {max_rise_fraction} of the difficulty range"},
  }
  supported = all(c["passed"] for c in crit.values())
  failed = [k for k, c in crit.items() if not c["passed"]]
  if supported:
    expl = (f"Transition supported: threshold d* = {lg.params['threshold']:.3g} "
            f"(CI {tci[0]:.3g}–{tci[1]:.3g}), jump {lg.params['jump']:.3g}, p = {p_value:.3g}.")
  else:
    expl = "No transition supported; failed criteria: " + ", ".join(
        f"{k} ({crit[k]['rule']}; value {_value_words(crit[k]['value'])})" for k in failed) + "."
  return TransitionAnalysis(fits, held, levels, means, var, peak, tci, wci, jci, float(r2),
                            p_value, crit, supported, expl, boot[:, 0])


def _value_words(v) -> str:
  """A criterion's value in 3 significant digits (a pair as 'a–b')."""
  if isinstance(v, (list, tuple)):
    return "–".join(f"{float(x):.3g}" for x in v)
  return f"{float(v):.3g}"
