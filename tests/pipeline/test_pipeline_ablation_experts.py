"""Ablation and perturbation of experts as units (issue 11) on a tiny random Qwen2-MoE model
(``moe_dirs``: 3 layers × 2 heads, MoE layers 0 and 2 with 4 routed + 1 shared expert).

Independent references: the divergence of an expert ablation is checked against scoring with an
explicit ``expert_mask`` and against a model whose expert's down-projection is zeroed (a SwiGLU
expert with a zero down projection contributes exactly nothing; a head with zero output
columns likewise), with scipy's relative entropy; noise scales against an RMS computed here from
the parameter leaves; the end-to-end run's unit names against ``Units.of_config``.
"""
import csv
import dataclasses
import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.special

import moe_dirs
from synergy_jax import interventions as iv
from synergy_jax import models, training
from synergy_jax.analysis.units import Units
from synergy_jax.pipeline import ablation

ROOT = pathlib.Path(__file__).resolve().parents[2]
E_PER = moe_dirs.NUM_EXPERTS + moe_dirs.NUM_SHARED  # expert units per MoE layer
N_HEADS = moe_dirs.NUM_LAYERS * moe_dirs.NUM_HEADS
# MoE layer m is decoder layer MOE_LAYERS[m], stored in the segment "moe_<layer>" (one layer each).
SEGMENT = {m: f"moe_{layer}" for m, layer in enumerate(moe_dirs.MOE_LAYERS)}
EXPERT_LEAVES = ("gate", "up", "down")


def _config():
  # Larger random weights than the default init, so that one expert's share of the logits is
  # well above float32 rounding.
  return dataclasses.replace(moe_dirs.qwen2_moe_config(), initializer_range=0.3)


@pytest.fixture(scope="module")
def model():
  return models.init(_config(), seed=0)


def _batch(cfg, b=3, prompt=5, cont=6, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(4, cfg.vocab_size, size=(b, prompt + cont))
  return tokens, np.array([prompt, prompt - 2, prompt - 1][:b])


def _kl(lp, lq):
  """(B,) mean over the T continuation tokens of KL(p ‖ q) from (B, T, V) log-probs, by scipy."""
  p, q = np.exp(np.asarray(lp, np.float64)), np.exp(np.asarray(lq, np.float64))
  return scipy.special.rel_entr(p, q).sum(-1).mean(-1)


def _zero_expert(params, m, e):
  """params with expert unit e of MoE layer m made silent by a zero down projection (routed:
  experts.down[0, e]; shared: shared.down[0, e - E])."""
  seg = params[SEGMENT[m]]
  group, slot = ("experts", e) if e < moe_dirs.NUM_EXPERTS else ("shared",
                                                                   e - moe_dirs.NUM_EXPERTS)
  down = np.array(seg["moe"][group]["down"])
  down[0, slot] = 0.0
  moe = {**seg["moe"], group: {**seg["moe"][group], "down": down}}
  return {**params, SEGMENT[m]: {**seg, "moe": moe}}


def _zero_head(params, layer, h):
  """params with head h of decoder ``layer`` made silent by zero output-projection rows."""
  key = {0: "moe_0", 1: "dense_1", 2: "moe_2"}[layer]
  o = np.array(params[key]["attn"]["o"])
  o[0, h] = 0.0
  return {**params, key: {**params[key], "attn": {**params[key]["attn"], "o": o}}}


def _one_mask(table, layout, chosen):
  """UnitGrids of one keep mask (M = 1) ablating the table positions ``chosen``."""
  keep = iv.unit_selection(chosen, table, layout).as_keep_mask()
  return iv.UnitGrids(keep.heads[None], keep.experts[None])


@pytest.mark.parametrize("m,e", [(1, 2), (0, 4)])  # a routed expert; the shared one of layer 0
def test_expert_ablation_is_the_masked_and_the_zeroed_model(model, m, e):
  cfg = model.config
  table = Units.of_config(cfg, "experts")
  layout = iv.MaskLayout.of_config(cfg)
  tokens, lens = _batch(cfg)
  fn = iv.make_divergence_fn(model)
  unit = m * E_PER + e
  got = np.asarray(fn(tokens, lens, _one_mask(table, layout, [unit])))[0]  # (B,)
  base = models.score(model, tokens, lens)
  mask = np.ones((len(moe_dirs.MOE_LAYERS), E_PER), np.float32)
  mask[m, e] = 0.0
  masked = models.score(model, tokens, lens, expert_mask=mask)
  zeroed = models.score(model.replace(params=_zero_expert(model.params, m, e)), tokens, lens)
  # Zeroing the expert's mask entry is zeroing its weights' contribution: same log-probs.
  np.testing.assert_allclose(masked.logprobs, zeroed.logprobs, rtol=1e-5, atol=1e-6)
  ref = _kl(base.logprobs, zeroed.logprobs)
  np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-9)
  # The expert contributes in this batch: routed somewhere, or the always-on shared expert.
  routed = np.asarray(models.score(model, tokens, lens, expert_activity="routed")
                      .expert_norms)[:, m, e]  # (B, T)
  assert routed.max() > 0 and np.all(np.isfinite(got)) and got.max() > 1e-6
  if e >= moe_dirs.NUM_EXPERTS:  # the shared expert is in every token's output
    assert np.all(got > 1e-6)


def test_heads_and_experts_mask_combine_and_nothing_ablated_is_zero(model):
  cfg = model.config
  table = Units.of_config(cfg, "heads+experts")
  layout = iv.MaskLayout.of_config(cfg)
  tokens, lens = _batch(cfg, seed=1)
  fn = iv.make_divergence_fn(model)
  head_unit = 1 * moe_dirs.NUM_HEADS + 1  # L1 H1 (the dense layer)
  expert_unit = N_HEADS + 1 * E_PER + 3  # L2 E3
  assert [table.name(head_unit), table.name(expert_unit)] == ["L1 H1", "L2 E3"]
  both = _one_mask(table, layout, [head_unit, expert_unit])
  none = _one_mask(table, layout, [])
  masks = iv.UnitGrids(np.concatenate([none.heads, both.heads]),
                       np.concatenate([none.experts, both.experts]))
  got = np.asarray(fn(tokens, lens, masks))
  assert np.all(got[0] == 0.0)  # nothing ablated: exactly zero
  silent = _zero_head(_zero_expert(model.params, 1, 3), 1, 1)
  ref = _kl(models.score(model, tokens, lens).logprobs,
            models.score(model.replace(params=silent), tokens, lens).logprobs)
  np.testing.assert_allclose(got[1], ref, rtol=1e-3, atol=1e-9)
  assert np.all(got[1] > 0)
  # New masks of the same count reuse the one compilation.
  again = _one_mask(table, layout, [0, N_HEADS + 4])
  fn(tokens, lens, iv.UnitGrids(np.concatenate([again.heads, both.heads]),
                                np.concatenate([again.experts, both.experts])))
  assert fn.compilations() == 1


def test_expert_curves_through_the_pipeline_divergence(model):
  """ablation.divergence over an experts table: fraction 0 is exactly 0, and the first
  fraction's value is the divergence of ablating the order's first units by explicit masks."""
  cfg = model.config
  table = Units.of_config(cfg, "experts")
  tokens, lens = _batch(cfg, seed=2)
  orders = iv.ablation_orders(np.arange(table.size, dtype=float), n_random=2, seed=0)
  div = ablation.divergence(model, tokens, lens, orders, [0.0, 0.2, 1.0], units=table)
  assert np.all(div["synergistic"][:, 0] == 0.0)
  first = orders["synergistic"][:2]  # round(0.2 · 10) = 2 units
  mask = np.ones((len(moe_dirs.MOE_LAYERS), E_PER), np.float32)
  for u in first:
    mask[u // E_PER, u % E_PER] = 0.0
  ref = _kl(models.score(model, tokens, lens).logprobs,
            models.score(model, tokens, lens, expert_mask=mask).logprobs)
  np.testing.assert_allclose(div["synergistic"][0, 1], ref, rtol=1e-3, atol=1e-9)
  # Fraction 1 ablates every expert (heads untouched) in every order.
  every = div["redundant"][0, 2]  # (B,)
  np.testing.assert_allclose(div["random"][:, 2], np.stack([every, every]), rtol=1e-5)


def _expert_rms(params):
  """RMS over every routed and shared expert weight entry of every MoE layer (by leaf name)."""
  w = [np.asarray(params[seg]["moe"][g][leaf], np.float64).ravel()
       for seg in SEGMENT.values() for g in ("experts", "shared") for leaf in EXPERT_LEAVES]
  w = np.concatenate(w)
  return float(np.sqrt(np.mean(w * w)))


def _head_rms(params):
  w = [np.asarray(params[seg]["attn"][leaf], np.float64).ravel()
       for seg in ("moe_0", "dense_1", "moe_2") for leaf in ("q", "o")]
  w = np.concatenate(w)
  return float(np.sqrt(np.mean(w * w)))


def _expert_slices(params, m, e):
  """{leaf path: the entries of expert unit e of MoE layer m in that leaf}."""
  group, slot = ("experts", e) if e < moe_dirs.NUM_EXPERTS else ("shared",
                                                                   e - moe_dirs.NUM_EXPERTS)
  return {(SEGMENT[m], "moe", group, leaf): (0, slot) for leaf in EXPERT_LEAVES}


def _leaves(params):
  return {tuple(k.key for k in path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}


def test_expert_perturbation_touches_only_the_chosen_experts(model):
  cfg = model.config
  table = Units.of_config(cfg, "experts")
  layout = iv.MaskLayout.of_config(cfg)
  scales = ablation.noise_scales(model, table, "relative")
  assert list(scales) == ["experts"]
  assert scales["experts"] == pytest.approx(_expert_rms(model.params), rel=1e-12)
  chosen = [0 * E_PER + 1, 1 * E_PER + 4]  # L0 E1 and L2 S0 (a shared expert)
  sigma = 0.5 * scales["experts"]
  params = ablation.perturb_units(model, iv.unit_selection(chosen, table, layout),
                                  {"experts": sigma}, jax.random.PRNGKey(3))
  before, after = _leaves(model.params), _leaves(params)
  owned = {}
  for u in chosen:
    owned.update(_expert_slices(model.params, u // E_PER, u % E_PER))
  noise = []
  for path, old in before.items():
    new = after[path]
    if path not in owned:
      assert np.array_equal(old, new), path  # bit-identical: heads, router, other experts
      continue
    idx = owned[path]
    rest_old, rest_new = old.copy(), new.copy()
    rest_old[idx] = rest_new[idx] = 0
    assert np.array_equal(rest_old, rest_new), path  # the leaf's other experts untouched
    assert not np.array_equal(old[idx], new[idx]), path
    noise.append((new[idx] - old[idx]).ravel())
  noise = np.concatenate(noise).astype(np.float64)  # 384 + 576 entries
  # N(0, σ²) with σ = 0.5 × the experts' RMS: mean ~ 0, SD ~ σ (fixed seed).
  assert abs(noise.mean()) < 0.1 * sigma and noise.std() == pytest.approx(sigma, rel=0.1)


def test_heads_and_experts_each_scaled_by_their_own_rms(model):
  cfg = model.config
  table = Units.of_config(cfg, "heads+experts")
  layout = iv.MaskLayout.of_config(cfg)
  scales = ablation.noise_scales(model, table, "relative")
  assert scales["heads"] == pytest.approx(_head_rms(model.params), rel=1e-12)
  assert scales["experts"] == pytest.approx(_expert_rms(model.params), rel=1e-12)
  assert ablation.noise_scales(model, table, "absolute") == {"heads": None, "experts": None}
  key = jax.random.PRNGKey(4)
  chosen = [3, N_HEADS + 2]  # L1 H1 and L0 E2
  sig = {"heads": 0.25 * scales["heads"], "experts": 0.25 * scales["experts"]}
  both = _leaves(ablation.perturb_units(model, iv.unit_selection(chosen, table, layout), sig,
                                        key))
  # The heads get the noise they get when perturbed alone (models.perturb_heads, same key).
  alone = _leaves(models.perturb_heads(model.params, [3], sig["heads"], key, config=cfg))
  for path in ("moe_0", "dense_1", "moe_2"):
    for leaf in ("q", "o"):
      np.testing.assert_array_equal(both[(path, "attn", leaf)], alone[(path, "attn", leaf)])
  assert not np.array_equal(both[("dense_1", "attn", "o")],
                            np.asarray(model.params["dense_1"]["attn"]["o"]))
  assert not np.array_equal(both[("moe_0", "moe", "experts", "down")][0, 2],
                            np.asarray(model.params["moe_0"]["moe"]["experts"]["down"])[0, 2])


# --------------------------------------------------------------------------------------------------
# End to end: run.py --experiment=ablation --units=experts --quick
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("moe_model")
  models.save(models.init(_config(), seed=0), path)
  training.save_tokenizer(path)
  return path


def _run(args, tmp):
  cmd = [sys.executable, "run.py", "--experiment=ablation", "--quick", f"--out={tmp / 'run'}",
         f"--cache_dir={tmp / 'cache'}", "--noprogress", *args]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def expert_run(moe_dir, tmp_path_factory):
  tmp = tmp_path_factory.mktemp("ablation_experts")
  proc = _run([f"--model={moe_dir}", "--units=experts"], tmp)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return tmp / "run", json.loads((tmp / "run" / "results.json").read_text())


def test_expert_run_names_units_and_ranks_them(expert_run, moe_dir):
  path, res = expert_run
  table = Units.of_config(models.load_config(moe_dir), "experts")
  u = res["units"]
  assert u["which"] == "experts" and u["names"] == table.names
  assert u["description"] == "10 experts (2 shared)"
  with open(path / "head_scores.csv") as f:
    rows = list(csv.DictReader(f))
  assert [r["name"] for r in rows] == table.names
  assert [r["kind"] for r in rows] == ["expert"] * table.size
  score = np.array([float(r["score"]) for r in rows])
  orders = res["divergence"]["orders"]
  for o in [orders["synergistic"], orders["redundant"], *orders["random"]]:
    assert sorted(o) == list(range(table.size))
  finite = np.isfinite(score)
  assert np.all(np.diff(score[orders["synergistic"]][:finite.sum()]) <= 0)
  summary = (path / "summary.md").read_text()
  assert "10 experts (2 shared)" in summary and "most synergistic experts first" in summary
  typed = ablation.read_ablation(path)
  assert typed.unit_table == table
  assert ablation.summary_markdown(typed) == summary


def test_expert_run_divergence_and_perturbation(expert_run, moe_dir):
  _, res = expert_run
  d = res["divergence"]
  rnd = np.array(d["random"]["curves"])
  assert d["synergistic"][0] == 0.0 and d["redundant"][0] == 0.0 and np.all(rnd[:, 0] == 0)
  assert min(d["synergistic"][1:] + d["redundant"][1:]) > 0 and np.all(rnd[:, 1:] > 0)
  np.testing.assert_allclose(rnd[:, -1], d["synergistic"][-1], rtol=1e-5)  # all experts off
  assert d["batches"] == 1 and 1 <= d["compilations"] < len(d["fractions"])
  p = res["perturbation"]
  k = int(np.floor(0.25 * 10 + 0.5))
  sets = p["head_sets"]
  assert len(sets["synergistic"]) == len(sets["redundant"]) == k
  assert all(len(s) == k and max(s) < 10 for s in sets["random"])
  rms = _expert_rms(models.load(moe_dir).params)
  assert list(p["noise_by_kind"]) == ["experts"]
  assert p["weight_rms"] == pytest.approx(rms, rel=1e-9)
  np.testing.assert_allclose(p["sigmas_abs"], np.array(p["sigmas"]) * rms, rtol=1e-9)
  assert p["noise_by_kind"]["experts"]["sigmas_abs"] == p["sigmas_abs"]
  assert 1 <= p["compilations"] < p["generate_calls"] / 2


def test_dense_model_with_expert_units_is_a_one_line_error(tmp_path):
  cfg = models.ModelConfig(family="llama", model_type="llama", vocab_size=training.tokenizer
                           .VOCAB_SIZE, hidden_size=16, intermediate_size=32, num_layers=2,
                           num_heads=2, num_kv_heads=2, head_dim=8)
  models.save(models.init(cfg, seed=0), tmp_path / "dense")
  training.save_tokenizer(tmp_path / "dense")
  proc = _run([f"--model={tmp_path / 'dense'}", "--units=experts"], tmp_path)
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ")
  assert "llama model has no experts" in lines[0] and "units='experts'" in lines[0]
