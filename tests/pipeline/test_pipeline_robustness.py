"""The robustness panel: every kind × preprocess × score as a row, files written, and variants
cached."""
import json

import numpy as np
import pytest

from synergy_jax.pipeline import profile as prof
from synergy_jax.pipeline import robustness
from synergy_jax.analysis.units import Units


def _acts(seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((8, 6, 40))
  a[:, 2:4, 1:] += 0.9 * a[:, 0:1, :-1]
  return a


def test_panel_rows_files_and_cache(tmp_path, monkeypatch):
  base = prof.ProfileConfig(n_surrogates=6, n_boot=20, n_perm=99)
  cfg = robustness.RobustnessConfig(base, kinds=("gaussian", "copula"), preprocess=("none",))
  rows = robustness.run_variants(_acts(), Units.grid(3, 2), cfg, tmp_path / "cache")
  assert [(r["kind"], r["score"]) for r in rows] == [
      (k, s) for k in ("gaussian", "copula") for s in ("rank_difference", "balance", "excess")]
  ok = [r for r in rows if r["status"] == "ok"]
  assert len(ok) == len(rows), "every estimator variant runs"
  for r in ok:
    assert len(r["layer_profile"]) == 3 and np.all(np.asarray(r["ci_low"]) <= r["ci_high"])
    assert 0 < r["depth_trend"]["p_value"] <= 1 and isinstance(r["inverted_u"], bool)
  # The Gaussian variant equals a plain profile of the same activity.
  single = prof.profile_activity(_acts(), Units.grid(3, 2), base)
  np.testing.assert_allclose(ok[0]["layer_profile"],
                             single.summary["layer_profile_ci"]["rank_difference"]["estimate"])
  # A second pass reads every computed estimate from the cache: no estimator runs for them.
  real = prof.compute_atoms
  done = {(r["kind"], r["preprocess"]) for r in ok}

  def no_recompute(acts, config):
    if (config.phiid.kind, config.phiid.preprocess) in done:
      pytest.fail(f"atoms of {config.phiid} recomputed")
    return real(acts, config)
  monkeypatch.setattr(prof, "compute_atoms", no_recompute)
  again = robustness.run_variants(_acts(), Units.grid(3, 2), cfg, tmp_path / "cache")
  assert json.dumps(again, default=str) == json.dumps(rows, default=str)
  out = robustness.write_robustness(tmp_path / "run", rows, 3, {"source": "test"})
  assert out["n_variants"] == len(ok) and len(out["variants"]) == 6
  for name in ("results.json", "robustness.csv", "robustness.png", "summary.md"):
    assert (tmp_path / "run" / name).stat().st_size > 0
  text = (tmp_path / "run" / "summary.md").read_text()
  assert f"in {out['n_inverted_u']} of {len(ok)} variants" in text


def test_config_errors():
  base = prof.ProfileConfig()
  with pytest.raises(ValueError, match="kinds"):
    robustness.RobustnessConfig(base, kinds=("gauss",))
  with pytest.raises(ValueError, match="excess score needs"):
    robustness.RobustnessConfig(prof.ProfileConfig(n_surrogates=0))
  v = robustness.RobustnessConfig(prof.ProfileConfig(tau=2)).variant("discrete", "diff")
  assert (v.phiid.kind, v.phiid.preprocess, v.phiid.tau, v.tau) == ("discrete", "diff", 2, 2)


def test_panel_on_moe_experts(tmp_path):
  from tests.pipeline import moe_dirs
  model = moe_dirs.write_tiny_moe(tmp_path / "moe")
  base = prof.ProfileConfig(n_surrogates=0, n_boot=10, n_perm=20, n_splits=2, local_heads=0,
                            max_new_tokens=12, batch_size=4, units="experts")
  cfg = robustness.RobustnessConfig(base, kinds=("gaussian",), preprocess=("none",),
                                    scores=("rank_difference",))
  out = robustness.run_robustness(str(model), ["The cat sat on", "Add 2 and 3:", "Hi", "A B"],
                                  cfg, tmp_path / "run", cache_dir=tmp_path / "cache")
  assert out["config"]["unit_table"] == "10 experts (2 shared)"
  assert out["config"]["units"] == "experts"
  (row,) = out["variants"]
  # layer 1 of the tiny model is dense: no experts, so no profile value there
  assert len(row["layer_profile"]) == 3 and np.isnan(row["layer_profile"][1])
  assert np.isfinite([row["layer_profile"][0], row["layer_profile"][2]]).all()
  assert "unavailable" in row["depth_trend"]  # experts sit in 2 layers: no curvature
