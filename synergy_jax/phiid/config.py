"""One frozen description of a ΦID estimate, carried through every pipeline and cache key.

``PhiidConfig`` names everything an atom value depends on (besides the data and the compute
dtype): the lag, the redundancy function, the estimator kind, how prompts are pooled, the
preprocessing of each series and the small-sample bias correction. Pipelines build one from their
flags, pass it to ``phiid.all_pairs(acts, config=...)`` and key their caches with
``config.cache_key(dtype)``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

REDUNDANCIES = ("mmi", "ccs")
KINDS = ("gaussian", "copula", "discrete")
POOLS = ("mean", "concat")
PREPROCESS = ("none", "detrend", "diff")
# How kind="discrete" turns a real-valued series into states: "lagged" binarises each of the four
# lagged vectors (past x, past y, future x, future y) at its own mean (the study's reference
# implementation), "series" binarises the whole series at its mean, "quantile" cuts the whole
# series into ``num_states`` equally filled bins.
DISCRETISE = ("lagged", "series", "quantile")


def _choice(name, value, choices):
  if value not in choices:
    raise ValueError(f"PhiidConfig.{name}={value!r} is not one of {choices}")


@dataclasses.dataclass(frozen=True)
class PhiidConfig:
  """What a ΦID estimate depends on.

  tau: lag in steps (int ≥ 1). redundancy: "mmi" | "ccs". kind: "gaussian" | "copula" |
  "discrete". pool: "mean" (per prompt, averaged) | "concat" (lagged samples of all prompts
  pooled). preprocess: "none" | "detrend" (least-squares line removed per prompt) | "diff" (first
  differences per prompt, one step shorter). bias_correction: analytic Gaussian entropy bias
  correction for the sample size (Gaussian and copula kinds). num_states: alphabet size for
  kind="discrete" (None = 2 for the binarising schemes; required for integer input with
  discretise="given"). discretise: how kind="discrete" makes states (``DISCRETISE`` or "given" for
  integer input already in [0, num_states)). smooth_min: None (MMI takes the hard minimum of its
  candidate mutual informations) or a temperature t > 0 in nats: the minimum becomes the soft
  minimum −t·log Σ_k exp(−I_k / t), which is smooth in the activity and lies within t·log(k)
  below the hard one (k = 2 or 4 candidates). Only for redundancy="mmi" with the Gaussian and
  copula kinds and average (not local) atoms; see docs/differentiable_phiid.md.
  """
  tau: int = 1
  redundancy: str = "mmi"
  kind: str = "gaussian"
  pool: str = "mean"
  preprocess: str = "none"
  bias_correction: bool = False
  num_states: int | None = None
  discretise: str = "lagged"
  smooth_min: float | None = None

  def __post_init__(self):
    if isinstance(self.tau, bool) or not isinstance(self.tau, (int, np.integer)) or self.tau < 1:
      raise ValueError(f"PhiidConfig.tau={self.tau!r} must be an int ≥ 1")
    _choice("redundancy", self.redundancy, REDUNDANCIES)
    _choice("kind", self.kind, KINDS)
    _choice("pool", self.pool, POOLS)
    _choice("preprocess", self.preprocess, PREPROCESS)
    _choice("discretise", self.discretise, DISCRETISE + ("given",))
    if not isinstance(self.bias_correction, bool):
      raise ValueError(f"PhiidConfig.bias_correction={self.bias_correction!r} must be a bool")
    if self.bias_correction and self.kind == "discrete":
      raise ValueError("PhiidConfig.bias_correction applies to the Gaussian and copula kinds, "
                       "not kind='discrete'")
    if self.num_states is not None:
      if self.kind != "discrete":
        raise ValueError(f"PhiidConfig.num_states={self.num_states} only applies to "
                         f"kind='discrete'")
      if isinstance(self.num_states, bool) or not isinstance(self.num_states, int) \
          or self.num_states < 2:
        raise ValueError(f"PhiidConfig.num_states={self.num_states!r} must be an int ≥ 2")
    if self.discretise == "given" and self.num_states is None:
      raise ValueError("PhiidConfig.discretise='given' needs num_states")
    if self.discretise in ("lagged", "series") and self.num_states not in (None, 2):
      raise ValueError(f"PhiidConfig.num_states={self.num_states} does not fit "
                       f"discretise={self.discretise!r}, which binarises (2 states); use "
                       f"discretise='quantile' or 'given' for more states")

    self._check_smooth_min()

  def _check_smooth_min(self):
    t = self.smooth_min
    if t is None:
      return
    if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) \
        or not np.isfinite(t) or t <= 0:
      raise ValueError(f"PhiidConfig.smooth_min={t!r} must be None (hard minimum) or a finite "
                       f"temperature > 0 in nats")
    if self.redundancy != "mmi":
      raise ValueError(f"PhiidConfig.smooth_min={t} smooths the MMI minimum; "
                       f"redundancy={self.redundancy!r} has none")
    if self.kind == "discrete":
      raise ValueError(f"PhiidConfig.smooth_min={t} is for the differentiable Gaussian and "
                       f"copula kinds, not kind='discrete'")

  def replace(self, **changes) -> "PhiidConfig":
    return dataclasses.replace(self, **changes)

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)

  def cache_key(self, dtype) -> dict:
    """Every field plus the compute dtype's name: the key of any cached atom value.

    ``smooth_min`` is left out while it is None, so keys of hard-minimum estimates (all results
    cached before the field existed) stay the same.
    """
    key = self.as_dict()
    if key["smooth_min"] is None:
      del key["smooth_min"]
    else:
      key["smooth_min"] = float(key["smooth_min"])
    return {**key, "dtype": np.dtype(dtype).name}


_LEGACY_DEFAULTS = {"tau": 1, "redundancy": "mmi", "pool": "mean", "kind": "gaussian",
                    "num_states": None}


def resolve_config(config, **legacy) -> PhiidConfig:
  """The PhiidConfig of a call: ``config`` itself, or one built from the legacy keyword arguments
  (tau, redundancy, pool, kind, num_states; integer input with num_states means
  discretise="given"). Legacy arguments changed from their defaults next to a config are a
  ValueError naming them."""
  if config is None:
    kw = {k: v for k, v in legacy.items() if k in _LEGACY_DEFAULTS}
    if kw.get("num_states") is not None and kw.get("kind", "gaussian") == "discrete":
      kw["discretise"] = "given"
    return PhiidConfig(**kw)
  if not isinstance(config, PhiidConfig):
    raise ValueError(f"config must be a phiid.PhiidConfig, got {type(config).__name__}")
  clash = sorted(k for k, v in legacy.items() if v != _LEGACY_DEFAULTS[k])
  if clash:
    raise ValueError(f"pass {clash} through config=, not as separate arguments")
  return config


def resolve_phiid(config: "PhiidConfig | None", **shorthands) -> PhiidConfig:
  """``config``, or a PhiidConfig built from the shorthand fields (e.g. tau=, redundancy=) that
  are not None. A shorthand that contradicts a given ``config`` is a ValueError naming both, so a
  pipeline configuration states each estimator setting once."""
  given = {k: v for k, v in shorthands.items() if v is not None}
  if config is None:
    return PhiidConfig(**given)
  if not isinstance(config, PhiidConfig):
    raise ValueError(f"phiid must be a phiid.PhiidConfig, got {type(config).__name__}")
  clash = {k: v for k, v in given.items() if getattr(config, k) != v}
  if clash:
    raise ValueError(f"{clash} contradict phiid={config}; give each estimator setting once")
  return config
