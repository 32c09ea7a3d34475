"""A ΦID training term: the synergy–redundancy balance of the heads of each training batch.

Definition (what ``SynergyObjective.loss_fn`` differentiates). For a batch of training rows
``inputs`` (B, T) and parameters θ:

1. Teacher-forced head activity: one forward pass of the model on the rows (all positions
   valid, as in pre-training) with per-head capture; a[b, u, t] = ‖head output‖₂ of unit
   u = layer · num_heads + head at position t, for the first ``series_len`` positions of the
   first ``rows`` rows (0: all rows). The norm is computed here with a safe square root (value
   0 and gradient 0 where the output is exactly zero, e.g. a masked head), so the gradient is
   finite everywhere; the capture definition (``models.layers.head_norm``) is unchanged.
2. Pairwise ΦID: Gaussian, MMI redundancy, τ = 1, per prompt (= batch row) and averaged over
   rows (``PhiidConfig()``: the project's default estimator), for every unordered pair of distinct
   units {i, j}, i < j (an explicit index list; the diagonal is never formed, so the estimator's
   i == j degeneracy cannot poison the gradient). sts and rtr are symmetric in the two series, so
   the ordered pairs (i, j) and (j, i) carry the same value.
3. Head scores: syn_u = mean over partners v ≠ u of sts(u, v), red_u = the same of rtr (nats);
   layer balance β_l = mean over the heads of layer l of (syn_u − red_u) (nats).
4. Objective J (nats):
   - target "core" (default): J = mean of β_l over the middle layers − mean over the outer
     layers, where middle = normalised depth l / (L − 1) in the closed third [1/3, 2/3]
     (``analysis.middle_layers``) and outer = the other layers. Needs L ≥ 3 layers. J > 0: the
     middle of the network is more synergistic (relative to redundancy) than its ends.
   - target "k1,k2,...,kn" (n ≥ 2 numbers, nats): a target balance profile over depth, knots
     at equally spaced normalised depths from 0 to 1, linearly interpolated to the L layers
     (t_l); J = −mean_l (β_l − t_l)², so raising J moves the balance profile towards the target.

The training loss is task loss − λ · tanh(J) (λ = ``weight``): λ > 0 pushes towards a
synergistic core (or the target profile), λ < 0 away from it. The tanh bounds the term's pull
(|λ tanh J| < |λ|, and its gradient fades once |J| exceeds ~2 nats): J itself is unbounded —
an MMI atom grows without limit as series become deterministic or copies of one another — and
an unbounded pull drove a quick default-model run at λ = −1 to J ≈ −4 and a singular covariance
(NaN loss) within 32 steps. The log records J itself ("synergy"). λ = 0 is not this code path
at all: ``loss_fn`` returns the plain next-token loss (``loop.next_token_loss``), so such a run
is today's training bit for bit.

A (row, pair) whose estimate is not finite (e.g. two heads whose norm series are nearly
identical, a singular covariance in float32: what ended both quick λ = +1 runs before this rule)
is left out of the means (``unit_sts_rtr``); the training loop still stops with an error naming
the step if the loss itself becomes NaN.

Axis letters: B batch rows (= prompts of the estimator), T positions, L layers, N heads per
layer, U = L · N units, Q unordered unit pairs, K head dim, V vocabulary.
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Callable

import jax.numpy as jnp
import numpy as np

from synergy_jax.analysis.profile import middle_layers
from synergy_jax.models import decoder, ops
from synergy_jax.phiid import one_pair
from synergy_jax.phiid.config import PhiidConfig

CORE = "core"
# Aux metrics of the loss (logged next to loss, lr and grad_norm when the term is on).
METRICS = ("task_loss", "synergy")


def parse_target(target: str, num_layers: int) -> np.ndarray | None:
  """None for "core", else the (L,) target balance profile t_l in nats (see module docstring).

  Raises ValueError naming the target when it is neither "core" nor ≥ 2 finite numbers, or when
  "core" is asked of a model with fewer than 3 layers.
  """
  text = str(target).strip()
  if text == CORE:
    if num_layers < 3:
      raise ValueError(f"synergy target 'core' needs >= 3 layers (middle and outer thirds), the "
                       f"model has {num_layers}")
    return None
  try:
    knots = np.array([float(v) for v in text.split(",")], np.float64)
  except ValueError:
    raise ValueError(f"synergy target {target!r} must be 'core' or comma-separated numbers "
                     "(a balance profile over depth, nats)") from None
  if knots.size < 2 or not np.all(np.isfinite(knots)):
    raise ValueError(f"synergy target {target!r}: a profile needs >= 2 finite numbers")
  depth = np.linspace(0.0, 1.0, num_layers) if num_layers > 1 else np.zeros(1)
  return np.interp(depth, np.linspace(0.0, 1.0, knots.size), knots)


def safe_norm(heads):
  """‖·‖₂ over the last axis, float32, with value and gradient 0 at an exactly zero vector: the
  capture's own norm (``models.ops.head_norm``), which is differentiable everywhere."""
  return ops.head_norm(heads)


def forward_with_activity(model, inputs, *, series_len: int, rows: int = 0):
  """One teacher-forced forward pass of the module: logits (B, T, V) float32 and head activity
  acts (B', U, T') float32 (B' = rows or B, T' = series_len), differentiable w.r.t. the
  module's nnx.Param state."""
  ids = jnp.asarray(inputs)
  valid = jnp.ones(ids.shape, bool)
  positions = decoder.positions_from_mask(valid)
  logits, _, _, heads, _ = decoder.run(model, ids, positions, valid, capture="all",
                                       capture_outputs=True)
  heads = heads[:rows] if rows else heads                                   # (B', L, T, N, K)
  norms = safe_norm(heads[:, :, :series_len])                               # (B', L, T', N)
  b, l, t, n = norms.shape
  acts = jnp.transpose(norms, (0, 1, 3, 2)).reshape(b, l * n, t)            # (B', U, T')
  return logits, acts


def pair_index(num_units: int) -> tuple[np.ndarray, np.ndarray]:
  """(Q,), (Q,) int32: the unordered pairs i < j of distinct units, Q = U (U − 1) / 2."""
  i, j = np.triu_indices(num_units, k=1)
  return i.astype(np.int32), j.astype(np.int32)



def unit_sts_rtr(acts, config: PhiidConfig = PhiidConfig()):
  """Partner-mean sts and rtr per unit: acts (B, U, T) → (U,), (U,) nats (module docstring,
  steps 2–3): the mean over rows and partners of the per-row pair estimates.

  A (row, pair) whose estimate is not finite (e.g. two heads' series so alike in float32 that
  their joint covariance is singular) is left out of both means, as the profile leaves out
  degenerate pairs: its weight is 0, and phiid's own guard keeps its gradient finite (zero).
  (A unit left with no valid entry gets NaN.)
  """
  if config.pool != "mean":
    raise ValueError(f"the synergy objective estimates per row and averages (pool='mean'), got "
                     f"pool={config.pool!r}")
  u = acts.shape[1]
  if u < 2:
    raise ValueError(f"the synergy objective needs >= 2 units, got {u}")
  i, j = pair_index(u)
  x, y = acts[:, i], acts[:, j]                                             # (B, Q, T)
  with warnings.catch_warnings():  # eager calls warn about the entries masked here, by design
    warnings.simplefilter("ignore")
    # one estimate: phiid guards singular pairs and swaps degenerate series for fillers inside,
    # so a masked (NaN) entry has a finite, zero gradient (the second where is below)
    atoms = one_pair.phiid(x, y, config=config, on_degenerate="mask")      # each (B, Q)
  ok = jnp.isfinite(atoms["sts"]) & jnp.isfinite(atoms["rtr"])             # (B, Q)
  w = ok.astype(acts.dtype)

  def per_unit(v):
    v = jnp.where(ok, v, 0.0)
    total = jnp.zeros(u, v.dtype).at[i].add(v.sum(0)).at[j].add(v.sum(0))
    count = jnp.zeros(u, v.dtype).at[i].add(w.sum(0)).at[j].add(w.sum(0))
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
  return per_unit(atoms["sts"]), per_unit(atoms["rtr"])


def layer_balance(syn, red, num_layers: int, num_heads: int):
  """(L,) mean over each layer's heads of syn_u − red_u (nats)."""
  return (syn - red).reshape(num_layers, num_heads).mean(1)


def objective_value(balance, target: np.ndarray | None):
  """J of a (L,) layer balance: the core contrast (target None) or −mean squared distance to
  the target profile (module docstring, step 4)."""
  if target is None:
    mid = middle_layers(balance.shape[0])
    return balance[mid].mean() - balance[~mid].mean()
  return -jnp.mean((balance - jnp.asarray(target, balance.dtype)) ** 2)


def objective_of_acts(acts, num_layers: int, num_heads: int, target: str = CORE,
                      config: PhiidConfig = PhiidConfig()):
  """J of activity (B, U, T) (jit/grad-able; also usable on recorded or profiled activity)."""
  syn, red = unit_sts_rtr(acts, config)
  return objective_value(layer_balance(syn, red, num_layers, num_heads),
                         parse_target(target, num_layers))


@dataclasses.dataclass(frozen=True)
class SynergyObjective:
  """The ΦID training term (module docstring). weight: λ; target: "core" or a profile;
  series_len: positions per row entering the series; rows: batch rows used (0: all)."""
  weight: float
  target: str = CORE
  series_len: int = 64
  rows: int = 0
  phiid: PhiidConfig = PhiidConfig()

  def __post_init__(self):
    if not np.isfinite(self.weight):
      raise ValueError(f"synergy weight must be finite, got {self.weight}")
    if self.series_len < 3:
      raise ValueError(f"synergy series_len must be >= 3 (τ = 1 lag plus a spread), got "
                       f"{self.series_len}")
    if self.rows < 0:
      raise ValueError(f"synergy rows must be >= 0 (0: all rows), got {self.rows}")
    if str(self.target).strip() != CORE:
      parse_target(self.target, 3)  # the syntax; the layer count is checked in loss_fn

  @property
  def metrics(self) -> tuple[str, ...]:
    """Aux columns of the training log (none at λ = 0, where the term is skipped)."""
    return () if self.weight == 0 else METRICS

  def record(self) -> dict:
    """What the run's numbers depend on (run_config.json's "synergy" section)."""
    return {"weight": float(self.weight), "target": str(self.target),
            "series_len": self.series_len, "rows": self.rows, "phiid": self.phiid.as_dict(),
            "degenerate_pairs": "left out"}

  def loss_fn(self, model_config) -> Callable:
    """loss(model, (inputs, targets, weights)) -> (task − λ tanh J, {"task_loss", "synergy"}); for
    λ = 0 exactly ``loop.next_token_loss()`` (no capture, no ΦID)."""
    from synergy_jax.training import loop
    if self.weight == 0:
      return loop.next_token_loss()
    loss = weighted_loss(model_config, self.target, series_len=self.series_len, rows=self.rows,
                         config=self.phiid)
    lam = float(self.weight)
    return lambda model, batch: loss(model, batch, lam)


def weighted_loss(model_config, target: str = CORE, *, series_len: int = 64, rows: int = 0,
                  config: PhiidConfig = PhiidConfig()) -> Callable:
  """loss(model, (inputs, targets, weights), lam) -> (task − lam · tanh(J), {"task_loss",
  "synergy": J}) with lam a scalar (may be traced: one compiled program for every λ)."""
  from synergy_jax.training import loop
  target_profile = parse_target(target, model_config.num_layers)
  if model_config.num_units < 2:
    raise ValueError("the synergy objective needs a model with >= 2 heads in total")
  L, N = model_config.num_layers, model_config.num_heads

  def loss(model, batch, lam):
    inputs, targets, weights = batch
    logits, acts = forward_with_activity(model, inputs, series_len=series_len,
                                         rows=rows)
    task = loop.weighted_nll(logits, targets, weights)
    syn, red = unit_sts_rtr(acts, config)
    j = objective_value(layer_balance(syn, red, L, N), target_profile)
    return task - lam * jnp.tanh(j), {"task_loss": task, "synergy": j}
  return loss


def from_flags(weight: float, target: str, num_layers: int) -> SynergyObjective | None:
  """The objective of --synergy_weight / --synergy_target, or None when the weight is 0 (the
  plain run). ValueError naming the flag on a bad value."""
  try:
    obj = SynergyObjective(weight=float(weight), target=target)
    if obj.weight != 0:  # at weight 0 the target is unused (e.g. "core" on a 2-layer model)
      parse_target(target, num_layers)
  except ValueError as e:
    flag = "synergy_weight" if "weight" in str(e) else "synergy_target"
    raise ValueError(f"--{flag}: {e}") from None
  return None if obj.weight == 0 else obj
