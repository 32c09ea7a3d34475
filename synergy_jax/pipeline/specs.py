"""``--model`` strings → a model and its tokenizer.

Accepted forms:
  "default"          the model shipped in synergy_jax/assets/default/ (trained by synergy_jax)
  "PATH"             a local Hugging Face model directory (config.json + *.safetensors)
  "owner/name"       a hub id, resolved through the local Hugging Face cache
  "random:BASE"      BASE's architecture with fresh weights (seeded): the untrained baseline
"""
from __future__ import annotations

import dataclasses
import hashlib
import weakref

import jax
import numpy as np

from synergy_jax import models
from synergy_jax.analysis.units import Units, check_which

RANDOM_PREFIX = "random:"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A resolved --model: the model, its tokenizer and a label for tables and figures."""
  model: "models.Model"
  tokenizer: object
  label: str
  base: str
  random_init: bool
  seed: int


def resolve_model(spec: str, *, dtype: str = "float32", seed: int = 0) -> ModelSpec:
  """Loads the model named by ``spec`` (see module docstring).

  Raises:
    ValueError: an empty spec or an empty base after "random:".
    FileNotFoundError: the directory / hub id / shipped model cannot be found (from models.load).
  """
  if not isinstance(spec, str) or not spec.strip():
    raise ValueError(f"--model must be a non-empty string, got {spec!r}")
  spec = spec.strip()
  if spec.startswith(RANDOM_PREFIX):
    base = spec[len(RANDOM_PREFIX):]
    if not base:
      raise ValueError(f"--model={spec!r}: name a base model after 'random:', e.g. random:default")
    config = models.load_config(base)
    model = models.init(config, seed, dtype=dtype)
    return ModelSpec(model, models.load_tokenizer(base), f"random:{base}", base, True, seed)
  model = models.load(spec, dtype=dtype)
  return ModelSpec(model, models.load_tokenizer(spec), spec, spec, False, seed)


def random_counterpart(spec: str) -> str:
  """The --model string of ``spec``'s random-init baseline ("random:default" for "default")."""
  return spec if spec.startswith(RANDOM_PREFIX) else RANDOM_PREFIX + spec


def compute_dtype() -> str:
  """The float dtype JAX computes in by default here: "float64" under ``jax_enable_x64``, else
  "float32". Every cache key of a computed array includes it."""
  return "float64" if jax.config.jax_enable_x64 else "float32"


def model_fingerprint(model: "models.Model") -> str:
  """A hash of everything a model's outputs depend on, for cache keys (16 hex digits).

  SHA-256 over the config, the parameter dtype, :func:`compute_dtype`, and, leaf by leaf in tree
  order, each parameter's path, shape, dtype and every byte of its values: any single changed
  weight gives another fingerprint. Leaves are copied to the host one at a time, so the extra
  memory is one leaf; SHA-256 runs at about 0.5–2 GB/s, i.e. seconds for a multi-GB model, and the
  result is remembered while the (immutable) JAX parameter arrays live, as pipelines ask repeatedly.
  """
  leaves = jax.tree_util.tree_flatten_with_path(model.params)[0]
  memo_key = (id(model.config), getattr(model, "dtype", None), compute_dtype(),
              tuple(id(leaf) for _, leaf in leaves))
  hit = _FINGERPRINTS.get(memo_key)
  if hit is not None and all(ref() is leaf for ref, (_, leaf) in zip(hit[0], leaves)):
    return hit[1]
  h = hashlib.sha256(repr(model.config).encode())
  h.update(f"|param dtype {getattr(model, 'dtype', None)}|compute {compute_dtype()}|".encode())
  for path, leaf in leaves:
    host = np.ascontiguousarray(jax.device_get(leaf))
    h.update(f"{jax.tree_util.keystr(path)}:{host.shape}:{host.dtype.str}:".encode())
    h.update(host.reshape(-1).view(np.uint8).data)
  digest = h.hexdigest()[:16]
  if not all(isinstance(leaf, jax.Array) for _, leaf in leaves):
    return digest  # numpy leaves can change in place: never remembered
  refs = [weakref.ref(leaf) for _, leaf in leaves]
  if len(_FINGERPRINTS) > 64:
    _FINGERPRINTS.clear()
  _FINGERPRINTS[memo_key] = (refs, digest)
  return digest


_FINGERPRINTS: dict = {}


def labelled(progress, model: str, stage: str = "", unit: str = "it"):
  """``progress`` (a tqdm-like ``f(iterable, **kw)`` or None) with every bar named
  "<model> · <stage>" and counting ``unit``: a bar that sets its own ``desc`` keeps it after the
  model name. None stays None."""
  if progress is None:
    return None

  def bar(it, **kw):
    desc = kw.pop("desc", None) or stage
    kw.setdefault("unit", unit)
    return progress(it, desc=f"{model} · {desc}" if desc else model, **kw)
  return bar


def staged(progress, stage: str, unit: str = "it"):
  """``progress`` with bars that name no stage named ``stage`` and counting ``unit`` (a caller
  wraps it in ``labelled`` to prefix the model). None stays None."""
  if progress is None:
    return None

  def bar(it, **kw):
    kw.setdefault("desc", stage)
    kw.setdefault("unit", unit)
    return progress(it, **kw)
  return bar


def degenerate_records(problems, units) -> list[dict]:
  """results.json's ``degenerate`` entries from ``phiid.degenerate`` (or ``check_units``)
  problems: the unit (``Units.record``: unit, name, kind, layer, index, shared, and head for a
  head), prompt (None: pooled prompts) and reason; pair problems add the partner unit
  (``partner`` and its record's fields prefixed ``partner_``). ``units``: the unit table, or
  num_heads for the head grid (unit = layer · num_heads + head)."""
  out = []
  for p in problems:
    table = _grid_for(units, p.unit, getattr(p, "partner", None))
    rec = {**table.record(p.unit), "prompt": p.prompt, "reason": p.reason}
    partner = getattr(p, "partner", None)
    if partner is not None:
      extra = table.record(partner, "partner_")
      extra.pop("partner_unit")
      rec.update(partner=partner, **extra)
    out.append(rec)
  return out


def _grid_for(units, *unit_ids) -> "Units":
  """``units`` itself, or (given num_heads) a head grid deep enough for ``unit_ids``."""
  if isinstance(units, Units):
    return units
  top = max(int(u) for u in unit_ids if u is not None)
  return Units.grid(top // int(units) + 1, int(units))


def degenerate_summary(records: list[dict]) -> dict:
  """{"n_units", "units", "n_pairs", "pairs"}: the units with a degenerate series in some prompt
  (masked: NaN rows and columns of the atoms, left out of the ranking) by name in unit order,
  and the singular pairs ("L0 H1 × L2 E3", only that pair masked)."""
  units, pairs = {}, {}
  for r in records:
    if r.get("partner") is None:
      units[r["unit"]] = _record_name(r)
    else:
      pairs[(r["unit"], r["partner"])] = f"{_record_name(r)} × {_record_name(r, 'partner_')}"
  return {"n_units": len(units), "units": [units[u] for u in sorted(units)],
          "n_pairs": len(pairs), "pairs": [pairs[k] for k in sorted(pairs)]}


def _record_name(rec: dict, prefix: str = "") -> str:
  """A record's unit name; records of earlier versions (heads only) have layer and head."""
  name = rec.get(prefix + "name")
  return name if name is not None else f"L{rec[prefix + 'layer']} H{rec[prefix + 'head']}"


def check_units(model: str, which: str) -> None:
  """ValueError (naming the model type) before any work when ``which`` asks for experts of a
  dense model; ``model`` is a --model string (its config is read, no weights)."""
  if check_which(which) == "heads":
    return
  base = model[len(RANDOM_PREFIX):] if model.startswith(RANDOM_PREFIX) else model
  Units.of_config(models.load_config(base), which)
