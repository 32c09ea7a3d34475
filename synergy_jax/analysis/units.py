"""The table of units: what each index of an activity array's U axis is.

A unit is an attention head or, in mixture-of-experts (MoE) models, an expert. ``Units`` holds,
for each unit u of a (P, U, T) activity array, its decoder layer, its index inside that layer
(head h, or expert e with the E routed experts first in router order and the S shared experts
after them), its kind ("head" or "expert"), whether it is a shared expert, and the model's depth
``num_layers`` (for normalised depth l / (L − 1)). Order of a model's units:

  heads            unit = layer · H + head                        (the L × H grid)
  experts          unit = m · (E + S) + e,  layer = moe_layers[m]  (MoE layer m)
  heads+experts    the heads, then the experts (unit L · H + m · (E + S) + e)

Analysis groups units by ``layer`` (a layer without units has no profile value); nothing else
about a unit matters to the estimators. Recorded activity from elsewhere uses ``Units.grid``.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

WHICH = ("heads", "experts", "heads+experts")
KINDS = ("head", "expert")
ARRAY_KEYS = ("unit_layer", "unit_index", "unit_kind", "unit_shared", "num_layers")


def check_which(which: str) -> str:
  """``which`` if it is one of WHICH, else ValueError naming it."""
  if which not in WHICH:
    raise ValueError(f"units must be one of {'|'.join(WHICH)}, got {which!r}")
  return which


@dataclasses.dataclass(frozen=True, eq=False)
class Units:
  """layer, index (U,) int64; kind (U,) str "head"/"expert"; shared (U,) bool (False for heads);
  num_layers: the model's decoder depth L (every layer index lies in 0..L-1)."""
  layer: np.ndarray
  index: np.ndarray
  kind: np.ndarray
  shared: np.ndarray
  num_layers: int

  def __post_init__(self):
    layer = np.asarray(self.layer, np.int64).reshape(-1)
    n = layer.size
    index = np.asarray(self.index, np.int64).reshape(-1)
    kind = np.asarray(self.kind, dtype=str).reshape(-1)
    shared = np.asarray(self.shared, bool).reshape(-1)
    for name, a in (("index", index), ("kind", kind), ("shared", shared)):
      if a.size != n:
        raise ValueError(f"Units.{name} has {a.size} entries but Units.layer has {n}")
    if int(self.num_layers) < 1:
      raise ValueError(f"Units.num_layers must be >= 1, got {self.num_layers}")
    bad = np.flatnonzero((layer < 0) | (layer >= int(self.num_layers)))
    if bad.size:
      raise ValueError(f"unit {bad[0]} sits in layer {layer[bad[0]]}, outside 0..{self.num_layers - 1}")
    bad = np.flatnonzero(index < 0)
    if bad.size:
      raise ValueError(f"unit {bad[0]} has a negative index {index[bad[0]]}")
    bad = np.flatnonzero(~np.isin(kind, KINDS))
    if bad.size:
      raise ValueError(f"unit {bad[0]} has kind {str(kind[bad[0]])!r}; kinds are {KINDS}")
    bad = np.flatnonzero(shared & (kind == "head"))
    if bad.size:
      raise ValueError(f"unit {bad[0]} is a head marked shared (only experts can be shared)")
    pairs = set()
    for u, key in enumerate(zip(layer.tolist(), kind.tolist(), index.tolist())):
      if key in pairs:
        raise ValueError(f"unit {u} ({key[1]} {key[2]} of layer {key[0]}) appears twice")
      pairs.add(key)
    for name, a in (("layer", layer), ("index", index), ("kind", kind), ("shared", shared)):
      a.setflags(write=False)
      object.__setattr__(self, name, a)
    object.__setattr__(self, "num_layers", int(self.num_layers))

  # -- construction ---------------------------------------------------------------------------

  @classmethod
  def grid(cls, num_layers: int, num_heads: int) -> "Units":
    """The L × H head grid, unit = layer · num_heads + head."""
    if int(num_layers) < 1 or int(num_heads) < 1:
      raise ValueError(f"num_layers and num_heads must be >= 1, got {num_layers}, {num_heads}")
    layer, head = np.divmod(np.arange(int(num_layers) * int(num_heads)), int(num_heads))
    return cls(layer, head, np.full(layer.size, "head"), np.zeros(layer.size, bool), num_layers)

  @classmethod
  def experts(cls, num_layers: int, moe_layers, num_routed: int, num_shared: int = 0) -> "Units":
    """Experts of MoE layers ``moe_layers``: per layer the routed ones, then the shared ones."""
    per = int(num_routed) + int(num_shared)
    if int(num_routed) < 1 or int(num_shared) < 0:
      raise ValueError(f"need >= 1 routed and >= 0 shared experts, got {num_routed}, {num_shared}")
    moe = np.asarray(tuple(moe_layers), np.int64)
    if moe.size == 0:
      raise ValueError("the model has no MoE layers, so it has no experts to use as units")
    layer = np.repeat(moe, per)
    index = np.tile(np.arange(per), moe.size)
    return cls(layer, index, np.full(layer.size, "expert"), index >= int(num_routed), num_layers)

  @classmethod
  def of_config(cls, cfg, which: str = "heads") -> "Units":
    """The units of a model config (``models.ModelConfig``): heads, experts or both.

    Raises ValueError when ``which`` asks for experts of a dense model (naming its model type).
    """
    check_which(which)
    heads = cls.grid(cfg.num_layers, cfg.num_heads)
    if which == "heads":
      return heads
    moe = getattr(cfg, "moe", None)
    if moe is None:
      raise ValueError(f"units={which!r} needs a mixture-of-experts model; the "
                       f"{getattr(cfg, 'model_type', '?')} model has no experts (use units=heads)")
    experts = cls.experts(cfg.num_layers, moe.moe_layers, moe.num_experts, moe.num_shared_experts)
    return experts if which == "experts" else concat(heads, experts)

  # -- reading --------------------------------------------------------------------------------

  @property
  def size(self) -> int:
    return int(self.layer.size)

  def __len__(self) -> int:
    return self.size

  def __eq__(self, other) -> bool:
    return (isinstance(other, Units) and self.num_layers == other.num_layers
            and all(np.array_equal(getattr(self, k), getattr(other, k))
                    for k in ("layer", "index", "kind", "shared")))

  def __hash__(self):
    return hash((self.num_layers, self.layer.tobytes(), self.index.tobytes(),
                 self.kind.tobytes(), self.shared.tobytes()))

  @functools.cached_property
  def grid_shape(self) -> tuple[int, int] | None:
    """(L, H) when these units are exactly the full head grid in grid order, else None
    (computed once per table: profile bootstraps ask for it per replicate)."""
    layers = self.num_layers
    if self.size == 0 or self.size % layers or np.any(self.kind != "head"):
      return None
    return (layers, self.size // layers) if self == Units.grid(layers, self.size // layers) \
        else None

  def heads_per_layer(self, owner: str) -> int:
    """H of a full head grid (grid_shape), else a ValueError naming `owner` (what holds these
    units: a file, a profile) and what its units are."""
    grid = self.grid_shape
    if grid is None:
      raise ValueError(f"{owner}: its units are {self.describe()}, not the full head grid")
    return grid[1]

  @property
  def depth(self) -> np.ndarray:
    """(U,) normalised depth layer / (L − 1) of each unit (0 for a one-layer model)."""
    if self.num_layers == 1:
      return np.zeros(self.size)
    return self.layer / (self.num_layers - 1)

  def name(self, u: int) -> str:
    """'L3 H2' (head 2 of layer 3), 'L3 E5' (routed expert 5), 'L3 S0' (the first shared one)."""
    if not 0 <= int(u) < self.size:
      raise ValueError(f"unit {u} is out of range for {self.size} units")
    l, i = int(self.layer[u]), int(self.index[u])
    if self.kind[u] == "head":
      return f"L{l} H{i}"
    if self.shared[u]:
      first_shared = int(self.index[(self.layer == l) & (self.kind == "expert")
                                    & self.shared].min())
      return f"L{l} S{i - first_shared}"
    return f"L{l} E{i}"

  @property
  def names(self) -> list[str]:
    return [self.name(u) for u in range(self.size)]

  def subset(self, idx) -> "Units":
    """The units at positions ``idx`` (in that order)."""
    idx = np.asarray(idx, np.int64).reshape(-1)
    bad = idx[(idx < 0) | (idx >= self.size)]
    if bad.size:
      raise ValueError(f"unit {bad[0]} is out of range for {self.size} units")
    return Units(self.layer[idx], self.index[idx], self.kind[idx], self.shared[idx],
                 self.num_layers)

  def by_layer(self, values) -> np.ndarray:
    """(L, W) the (U,) ``values`` laid out by layer: row l holds the values of layer l's units in
    unit order, NaN-padded to W = the most units of any layer (a layer without units is all NaN).
    For the head grid this is ``values.reshape(L, H)``."""
    v = np.asarray(values, np.float64)
    if v.shape != (self.size,):
      raise ValueError(f"values must have shape ({self.size},) for {self.layout()}, "
                       f"got {v.shape}")
    if self.grid_shape is not None:
      return v.reshape(self.grid_shape)
    counts = np.bincount(self.layer, minlength=self.num_layers)
    out = np.full((self.num_layers, max(int(counts.max(initial=0)), 1)), np.nan)
    slot = np.zeros(self.size, np.int64)
    for l in range(self.num_layers):
      at = np.flatnonzero(self.layer == l)
      slot[at] = np.arange(at.size)
    out[self.layer, slot] = v
    return out

  def counts(self) -> dict:
    """{"head": n, "expert": n, "shared": n}: units of each kind (shared ⊂ expert)."""
    return {"head": int(np.sum(self.kind == "head")), "expert": int(np.sum(self.kind == "expert")),
            "shared": int(self.shared.sum())}

  def record(self, u: int, prefix: str = "") -> dict:
    """JSON-able description of unit u: unit, name, kind, layer, index, shared (keys prefixed
    by ``prefix``, e.g. "partner_"); a head also gets its ``head`` index."""
    name = self.name(u)
    rec = {"unit": int(u), "name": name, "kind": str(self.kind[u]), "layer": int(self.layer[u]),
           "index": int(self.index[u]), "shared": bool(self.shared[u])}
    if self.kind[u] == "head":
      rec["head"] = int(self.index[u])
    return {prefix + k: v for k, v in rec.items()}

  def summary(self) -> dict:
    """results.json's record of the table: which ("heads", "experts", "heads+experts"),
    description, counts by kind, depth, and for the head grid num_heads and the numbering."""
    c = self.counts()
    which = "+".join(k for k, n in (("heads", c["head"]), ("experts", c["expert"])) if n)
    out = {"n_units": self.size, "which": which or "none", "description": self.describe(),
           "counts": c, "num_layers": self.num_layers}
    grid = self.grid_shape
    if grid is not None:
      out.update(num_heads=grid[1], numbering="unit = layer * num_heads + head")
    else:
      out["numbering"] = "see head_scores.csv (unit, name, kind, layer, index, shared)"
    return out

  def describe(self) -> str:
    """'48 heads' / '36 experts (6 shared)' / '48 heads + 36 experts (6 shared)'."""
    parts = []
    n_heads = int(np.sum(self.kind == "head"))
    n_exp = self.size - n_heads
    if n_heads:
      parts.append(f"{n_heads} heads")
    if n_exp:
      sh = int(self.shared.sum())
      parts.append(f"{n_exp} experts" + (f" ({sh} shared)" if sh else ""))
    return " + ".join(parts) or "no units"

  def layout(self) -> str:
    """'3 layers × 2 heads' for the head grid, else '8 experts (2 shared) in 3 layers' (for
    messages)."""
    grid = self.grid_shape
    if grid is not None:
      return f"{grid[0]} layers × {grid[1]} heads"
    return f"{self.describe()} in {self.num_layers} layers"

  # -- files ----------------------------------------------------------------------------------

  def columns(self) -> dict:
    """Per-unit columns for CSV tables: unit, name, kind, layer, index, shared."""
    return {"unit": np.arange(self.size), "name": np.array(self.names), "kind": self.kind,
            "layer": self.layer, "index": self.index, "shared": self.shared}

  def to_arrays(self) -> dict:
    """{name: array} for an .npz file (``from_arrays`` reads it back)."""
    return {"unit_layer": self.layer, "unit_index": self.index, "unit_kind": self.kind,
            "unit_shared": self.shared, "num_layers": np.int64(self.num_layers)}

  @classmethod
  def from_arrays(cls, arrays, where: str = "units") -> "Units":
    """Inverse of ``to_arrays``; ``where`` (e.g. a file name) prefixes a missing-key error."""
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
      raise ValueError(f"{where}: unit table lacks key(s) {missing} (need {list(ARRAY_KEYS)})")
    return cls(arrays["unit_layer"], arrays["unit_index"], arrays["unit_kind"],
               arrays["unit_shared"], int(np.asarray(arrays["num_layers"])))


def as_units(units_or_num_layers, num_heads: int | None = None) -> Units:
  """A unit table from either form analysis functions accept: a ``Units`` (then ``num_heads``
  must be None) or the head grid's ``(num_layers, num_heads)``."""
  if isinstance(units_or_num_layers, Units):
    if num_heads is not None:
      raise ValueError(f"give a Units table or (num_layers, num_heads), not both (num_heads="
                       f"{num_heads})")
    return units_or_num_layers
  if num_heads is None:
    raise ValueError(f"num_layers={units_or_num_layers!r} needs num_heads (or pass a Units table)")
  return Units.grid(units_or_num_layers, num_heads)


def concat(*tables: Units) -> Units:
  """The units of several tables, in order (all of one model: same num_layers)."""
  if not tables:
    raise ValueError("concat needs at least one unit table")
  depths = {t.num_layers for t in tables}
  if len(depths) != 1:
    raise ValueError(f"unit tables of different depths cannot be joined: {sorted(depths)}")
  return Units(np.concatenate([t.layer for t in tables]),
               np.concatenate([t.index for t in tables]),
               np.concatenate([t.kind for t in tables]),
               np.concatenate([t.shared for t in tables]), depths.pop())
