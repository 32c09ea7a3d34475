"""The profile with MoE experts as units (issue 11) on a tiny random Qwen2-MoE directory: unit
names in head_scores.csv, the unit table in atoms.npz, layer profiles over all layers, the
random baseline on the same units, and routed activity's degenerate experts reported by name
(checked against the activity itself)."""
import csv

import numpy as np
import pytest

from synergy_jax import models
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import profile as prof
from tests.pipeline import moe_dirs

PROMPTS = ["The cat sat on", "Add 2 and 3:", "Once upon a time", "Hi there", "A B C"]


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
  return moe_dirs.write_tiny_moe(tmp_path_factory.mktemp("moe") / "model")


def _config(units, activity="dense", greedy=False):
  # sampling by default: greedy decoding of a random model repeats tokens, so many pairs are
  # collinear (and a routed expert is often never chosen during a prompt)
  return prof.ProfileConfig(n_surrogates=4, n_boot=10, n_perm=20, n_splits=2, local_heads=1,
                            max_new_tokens=12, batch_size=5, greedy=greedy, units=units,
                            expert_activity=activity)


def _rows(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def _expected(moe_dir, which):
  return Units.of_config(models.load_config(str(moe_dir)), which)


def test_experts_profile_files(moe_dir, tmp_path):
  out = prof.run_profile(str(moe_dir), PROMPTS, _config("experts"), tmp_path / "run",
                         cache_dir=tmp_path / "cache")
  units = _expected(moe_dir, "experts")
  assert units.size == len(moe_dirs.MOE_LAYERS) * (moe_dirs.NUM_EXPERTS + moe_dirs.NUM_SHARED)
  run = tmp_path / "run"
  for suffix in ("", "_random"):  # the random-init baseline profiles the same units
    rows = _rows(run / f"head_scores{suffix}.csv")
    assert [r["name"] for r in rows] == ["L0 E0", "L0 E1", "L0 E2", "L0 E3", "L0 S0",
                                         "L2 E0", "L2 E1", "L2 E2", "L2 E3", "L2 S0"]
    assert {r["kind"] for r in rows} == {"expert"} and "head" not in rows[0]
    assert [int(r["shared"]) for r in rows] == [0, 0, 0, 0, 1] * 2
    assert all(np.isfinite(float(r["synergy"])) for r in rows)  # dense activity: none masked
  npz = np.load(run / "atoms.npz")
  assert Units.from_arrays(npz) == units and npz["acts"].shape == (len(PROMPTS), 10, 12)
  layers = _rows(run / "layer_profile.csv")
  assert [int(r["n_units"]) for r in layers] == [5, 0, 5]
  mean = [float(r["trained_rank_difference_mean"]) for r in layers]
  assert np.isfinite(mean[0]) and np.isnan(mean[1]) and np.isfinite(mean[2])
  assert out["units"]["which"] == "experts" and out["units"]["counts"]["shared"] == 2
  assert out["units"]["expert_activity"] == "dense"
  assert out["depth_trend"]["rank_difference"]["unavailable"].startswith("needs units in at least")
  assert (run / "unit_scores.png").stat().st_size > 0 and not (run / "head_ranks.png").exists()
  summary = (run / "summary.md").read_text()
  assert "Units: 10 experts (2 shared) of a 3-layer model (dense expert activity)." in summary
  local = np.load(run / "local_atoms.npz")
  assert set(local["name"]) <= set(units.names) and local["kind"][0] == "expert"


def test_heads_and_routed_experts_report_degenerate_units(moe_dir, tmp_path):
  cfg = _config("heads+experts", "routed", greedy=True)
  res = prof.profile_pair(str(moe_dir), PROMPTS, cfg, cache_dir=tmp_path / "cache",
                          baseline=False)[0]["trained"]
  units = _expected(moe_dir, "heads+experts")
  assert res.units == units and list(res.table["name"]) == units.names
  assert res.atoms.shape == (units.size, units.size, 16)
  # Independent check: a unit whose past (steps 0..T-2) or future (1..T-1) series is constant
  # in some prompt cannot be estimated (tau = 1); routed experts are 0 wherever not chosen.
  a = res.acts
  const = np.any((np.ptp(a[..., :-1], axis=-1) == 0) | (np.ptp(a[..., 1:], axis=-1) == 0), 0)
  assert const.any(), "no routed expert was idle for a whole prompt; the test checks nothing"
  reported = res.summary["degenerate_units"]
  assert set(np.array(units.names)[const]) <= set(reported["units"])
  assert reported["n_units"] == len(reported["units"])
  masked = np.flatnonzero(np.isnan(res.scores.synergy))
  assert set(np.array(units.names)[masked]) == set(reported["units"])
  assert all(units.kind[u] == "expert" and not units.shared[u] for u in np.flatnonzero(const))
  summary = prof.summary_markdown({"trained": res}, {})
  assert f"{reported['n_units']} unit(s) had a degenerate series" in summary
  assert reported["units"][0] in summary


def test_dense_model_with_experts_is_named(tmp_path):
  from synergy_jax import training
  path = tmp_path / "dense"
  models.save(models.init(training.default_model_config(
      hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8), seed=0), path)
  training.save_tokenizer(path)
  with pytest.raises(ValueError, match="llama model has no experts"):
    prof.run_profile(str(path), PROMPTS, _config("experts"), tmp_path / "run",
                     cache_dir=tmp_path / "cache")


def test_recorded_activity_with_a_unit_table(tmp_path):
  from synergy_jax.pipeline import acts_file
  units = Units.experts(4, (0, 1, 3), num_routed=2, num_shared=1)  # layer 2 without units
  acts = np.random.default_rng(0).standard_normal((6, units.size, 30))
  path = tmp_path / "rec.npz"
  np.savez(path, acts=acts, **units.to_arrays())
  cfg = prof.ProfileConfig(n_surrogates=0, n_boot=10, n_perm=20, n_splits=2, local_heads=1)
  out = prof.run_profile_acts(path, cfg, tmp_path / "run", cache_dir=tmp_path / "cache")
  assert out["units"]["description"] == "9 experts (3 shared)"
  assert [r["name"] for r in _rows(tmp_path / "run" / "head_scores.csv")] == units.names
  prof_l = out["layer_profile"]
  assert len(prof_l) == 4 and np.isnan(prof_l[2]) and np.isfinite(np.delete(prof_l, 2)).all()
  assert "p_value" in out["depth_trend"]["rank_difference"]  # units in 3 of 4 layers
  # a bad table names the file and the key
  bad = dict(units.to_arrays(), unit_layer=units.layer.astype(float))
  np.savez(tmp_path / "bad.npz", acts=acts, **bad)
  with pytest.raises(ValueError, match=r"bad.npz: key 'unit_layer' must hold integers"):
    acts_file.load_acts(tmp_path / "bad.npz")
  partial = {k: v for k, v in units.to_arrays().items() if k != "unit_kind"}
  np.savez(tmp_path / "partial.npz", acts=acts, **partial)
  with pytest.raises(ValueError, match=r"partial.npz lacks key\(s\) \['unit_kind'\]"):
    acts_file.load_acts(tmp_path / "partial.npz")
  np.savez(tmp_path / "short.npz", acts=acts[:, :8], **units.to_arrays())
  with pytest.raises(ValueError, match="short.npz: 'acts' has 8 units but its unit table"):
    acts_file.load_acts(tmp_path / "short.npz")
