"""Experts as units in the MoE families: expert_mask ablation and expert perturbation act only
through the chosen expert (traced, no recompilation), heads of later layer segments are
perturbed at the right layer, strict per-expert checkpoints (a missing or extra expert is named)
that save back to the HF layout bit-identically, strict configs, and full-size configs
(Qwen3-30B-A3B, Qwen1.5-MoE-A2.7B, Mixtral-8x7B) built abstractly through the families."""
import dataclasses
import glob
import json
import os

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file, save_file

import compile_count
import moe_torch_refs as R
from synergy_jax import models
from synergy_jax.models import config as C
from synergy_jax.models import convert
from synergy_jax.models.moe import layers as moe_layers

CLASSES = {"mixtral": transformers.MixtralForCausalLM,
           "qwen2_moe": transformers.Qwen2MoeForCausalLM,
           "qwen3_moe": transformers.Qwen3MoeForCausalLM}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  """name -> (directory of a save_pretrained tiny model, our Model loaded from it)."""
  cache = {}

  def get(name):
    if name not in cache:
      torch.manual_seed(0)
      hf = R.randomize(CLASSES[name](R.config(name)).eval(), seed=5, std=0.25)
      d = tmp_path_factory.mktemp(name)
      hf.save_pretrained(d)
      cache[name] = (d, models.load(d))
    return cache[name]
  return get


def _tokens():
  return np.random.default_rng(0).integers(3, R.VOCAB, (2, 10)), np.array([4, 6])


def test_expert_mask_removes_only_that_experts_contribution_without_recompiling(saved):
  _, model = saved("mixtral")  # two MoE layers, 6 experts each
  m = model.config.moe
  tokens, lens = _tokens()
  full = models.score(model, tokens, lens)
  mask = np.ones((m.num_moe_layers, m.num_units), np.float32)
  mask[1, 4] = 0.0  # expert 4 of the last MoE layer
  with compile_count.compilations("_score") as n:
    out = models.score(model, tokens, lens, expert_mask=mask)
    mask2 = np.ones_like(mask)
    mask2[1, 2] = 0.0
    models.score(model, tokens, lens, expert_mask=mask2)
  assert n() <= 1  # a new mask is a new argument, not a new program
  a, b = np.asarray(full.expert_norms), np.asarray(out.expert_norms)
  np.testing.assert_array_equal(b[:, 0], a[:, 0])  # the earlier MoE layer is untouched
  keep = [u for u in range(m.num_units) if u != 4]
  np.testing.assert_allclose(b[:, 1, keep], a[:, 1, keep], atol=1e-6, rtol=0)  # same inputs
  assert (b[:, 1, 4] == 0).all() and (a[:, 1, 4] > 0).all()
  # ... but the model's output changes where expert 4 was routed
  assert np.abs(np.asarray(out.logprobs) - np.asarray(full.logprobs)).max() > 1e-4
  # masking it at a layer routes nothing differently: the same experts stay selected
  routed = np.asarray(models.score(model, tokens, lens, expert_mask=mask,
                                   expert_activity="routed").expert_norms)
  routed_full = np.asarray(models.score(model, tokens, lens, expert_activity="routed").expert_norms)
  np.testing.assert_array_equal(routed[:, 1, keep] > 0, routed_full[:, 1, keep] > 0)


def test_shared_expert_is_the_last_unit_and_can_be_ablated(saved):
  _, model = saved("qwen2_moe")  # one MoE layer (layer 1): 6 routed experts + 1 shared
  m = model.config.moe
  assert m.moe_layers == (1,) and m.num_units == 7 and m.is_shared(6) and not m.is_shared(5)
  tokens, lens = _tokens()
  full = models.score(model, tokens, lens)
  mask = np.ones((1, 7), np.float32)
  mask[0, 6] = 0.0
  out = models.score(model, tokens, lens, expert_mask=mask)
  a, b = np.asarray(full.expert_norms), np.asarray(out.expert_norms)
  np.testing.assert_allclose(b[:, 0, :6], a[:, 0, :6], atol=1e-6, rtol=0)
  assert (b[:, 0, 6] == 0).all() and (a[:, 0, 6] > 0).all()
  # heads of the dense layer before the MoE layer and of the MoE layer itself are unchanged
  np.testing.assert_allclose(np.asarray(out.head_norms)[:, :2], np.asarray(full.head_norms)[:, :2],
                             atol=1e-6, rtol=0)
  assert np.abs(np.asarray(out.logprobs) - np.asarray(full.logprobs)).max() > 1e-4
  with pytest.raises(ValueError, match=r"expert_mask must have shape .* = \(1, 7\)"):
    models.score(model, tokens, lens, expert_mask=np.ones((2, 7)))


def _diff_paths(a, b):
  out = []
  for (path, x), (_, y) in zip(jax.tree_util.tree_flatten_with_path(a)[0],
                               jax.tree_util.tree_flatten_with_path(b)[0]):
    if not np.array_equal(np.asarray(x), np.asarray(y)):
      out.append(("/".join(str(k.key) for k in path), np.argwhere(np.asarray(x) != np.asarray(y))))
  return out


def test_perturbing_an_expert_changes_only_its_weights_and_outputs(saved):
  _, model = saved("mixtral")
  noised = models.perturb_experts(model, [(0, 2)], 0.3, 7)
  changed = _diff_paths(model.params, noised)
  assert sorted(p for p, _ in changed) == ["layers/moe/experts/down", "layers/moe/experts/gate",
                                           "layers/moe/experts/up"]
  for _, where in changed:  # entries [MoE layer 0, expert 2, ...] only
    assert set(map(tuple, where[:, :2])) == {(0, 2)}
  owned = models.head_parameter_mask(model, [(0, 2)], units="experts")
  assert owned["layers"]["moe"]["experts"]["gate"][0, 2].all()
  assert owned["layers"]["moe"]["experts"]["gate"].sum() == owned["layers"]["moe"]["experts"][
      "gate"][0, 2].size
  assert not owned["layers"]["moe"]["router"]["w"].any()
  tokens, lens = _tokens()
  a = np.asarray(models.score(model, tokens, lens).expert_norms)
  b = np.asarray(models.score(model.replace(params=noised), tokens, lens).expert_norms)
  keep = [u for u in range(model.config.moe.num_units) if u != 2]
  np.testing.assert_allclose(b[:, 0, keep], a[:, 0, keep], atol=1e-6, rtol=0)
  assert np.abs(b[:, 0, 2] - a[:, 0, 2]).min() > 0  # every token: the expert is evaluated densely
  assert models.units_shape(model, units="experts") == (2, 6)
  assert models.unit_weight_rms(model, units="experts") > 0


def test_head_perturbation_reaches_heads_of_later_segments(saved):
  _, model = saved("qwen2_moe")  # segments dense_0, moe_1, dense_2 (layers 2, 3)
  segs = [s.key for s in models.FAMILIES["qwen_moe"].segments_of(model.config)]
  assert segs == ["dense_0", "moe_1", "dense_2"]
  assert models.units_shape(model) == (4, model.config.num_heads)
  noised = models.perturb_heads(model, [(3, 1)], 0.1, 0)
  changed = _diff_paths(model.params, noised)
  assert sorted(p for p, _ in changed) == ["dense_2/attn/o", "dense_2/attn/q"]
  q = dict(changed)["dense_2/attn/q"]  # (layers 2..3, D, N, K): layer 3 is index 1, head 1
  assert set(map(tuple, q[:, [0, 2]])) == {(1, 1)}
  with pytest.raises(ValueError, match="no experts units"):
    models.perturb_experts(models.init(models.ModelConfig(
        family="llama", model_type="llama", vocab_size=11, hidden_size=16, intermediate_size=8,
        num_layers=1, num_heads=2, num_kv_heads=2, head_dim=8), 0), [(0, 0)], 0.1, 0)


def test_checkpoint_is_strict_per_expert_and_saves_back_bit_identically(saved, tmp_path):
  d, model = saved("mixtral")
  path = glob.glob(os.path.join(d, "*.safetensors"))[0]
  tensors = load_file(path)
  out = tmp_path / "saved"
  models.save(model, out)
  back = load_file(glob.glob(str(out / "*.safetensors"))[0])
  assert sorted(back) == sorted(tensors)
  for k in tensors:
    np.testing.assert_array_equal(back[k], tensors[k], err_msg=k)
  assert models.load_config(out) == model.config
  # transformers reads what we wrote
  hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
  ids = np.arange(3, 11)[None]
  with torch.no_grad():
    want = hf(torch.tensor(ids)).logits.numpy()
  np.testing.assert_allclose(np.asarray(models.forward(model, ids)), want, atol=1e-4, rtol=0)

  def broken(change, name):
    bad = tmp_path / name
    bad.mkdir()
    with open(os.path.join(d, "config.json")) as f:
      (bad / "config.json").write_text(f.read())
    t = dict(tensors)
    change(t)
    save_file(t, str(bad / "model.safetensors"))
    return bad

  gone = "model.layers.1.block_sparse_moe.experts.3.w1.weight"
  with pytest.raises(ValueError, match=r"missing tensors \['model\.layers\.1\.block_sparse_moe"
                                       r"\.experts\.3\.w1\.weight'\]"):
    models.load(broken(lambda t: t.pop(gone), "missing"))
  extra = "model.layers.0.block_sparse_moe.experts.6.w2.weight"
  with pytest.raises(ValueError, match=r"unexpected tensors \['model\.layers\.0\.block_sparse_moe"
                                       r"\.experts\.6\.w2\.weight'\]"):
    models.load(broken(lambda t: t.update({extra: t[extra.replace(".6.", ".0.")]}), "extra"))


def test_qwen_config_round_trips_and_unknown_fields_raise(saved):
  for name in ("qwen2_moe", "qwen3_moe"):
    d, model = saved(name)
    cfg = model.config
    assert models.ModelConfig.from_hf(cfg.to_hf()) == cfg
    with open(os.path.join(d, "config.json")) as f:
      hf = json.load(f)
    with pytest.raises(ValueError, match="fields we do not implement: \\['expert_dropout'\\]"):
      models.ModelConfig.from_hf({**hf, "expert_dropout": 0.1})
  hf = R.config("mixtral").to_dict()
  with pytest.raises(ValueError, match="router_jitter_noise=0.1 is not implemented"):
    models.ModelConfig.from_hf({**hf, "router_jitter_noise": 0.1})


FULL = {
    "Qwen3-30B-A3B": dict(
        model_type="qwen3_moe", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
        num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
        moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], rms_norm_eps=1e-6, rope_theta=1e6,
        max_position_embeddings=40960, max_window_layers=48, use_sliding_window=False,
        sliding_window=None, attention_bias=False, tie_word_embeddings=False, hidden_act="silu"),
    "Qwen1.5-MoE-A2.7B": dict(
        model_type="qwen2_moe", vocab_size=151936, hidden_size=2048, intermediate_size=5632,
        num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16,
        moe_intermediate_size=1408, shared_expert_intermediate_size=5632, num_experts=60,
        num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1, rope_theta=1e6,
        max_position_embeddings=8192, max_window_layers=21, use_sliding_window=False,
        sliding_window=32768, rms_norm_eps=1e-6, tie_word_embeddings=False, hidden_act="silu"),
    "Mixtral-8x7B": dict(
        model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        num_local_experts=8, num_experts_per_tok=2, rope_theta=1e6, rms_norm_eps=1e-5,
        max_position_embeddings=32768, sliding_window=None, tie_word_embeddings=False,
        router_jitter_noise=0.0, hidden_act="silu"),
}


def _expected_count(hf):
  """Parameters from the published config alone (independent of our weight specs)."""
  d, v, l = hf["hidden_size"], hf["vocab_size"], hf["num_hidden_layers"]
  n, m = hf["num_attention_heads"], hf["num_key_value_heads"]
  k = hf.get("head_dim") or d // n
  attn = d * n * k * 2 + d * m * k * 2 + 2 * d  # q, o, k, v, two norms
  if hf["model_type"] == "qwen2_moe":
    attn += n * k + 2 * m * k  # q/k/v biases
  if hf["model_type"] == "qwen3_moe":
    attn += 2 * k  # q/k norms
  e = hf.get("num_experts") or hf.get("num_local_experts")
  f = hf.get("moe_intermediate_size") or hf["intermediate_size"]
  moe = d * e + e * 3 * d * f
  fs = hf.get("shared_expert_intermediate_size") or 0
  if fs:
    moe += 3 * d * fs + d
  return 2 * v * d + d + l * (attn + moe)


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_configs_load_abstractly_through_the_families(name):
  hf = FULL[name]
  cfg = models.ModelConfig.from_hf(hf)
  abstract = models.abstract(cfg, "bfloat16")  # nnx.eval_shape: no memory
  state = nnx.state(abstract, nnx.Param)
  count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state))
  assert count == _expected_count(hf)
  assert sum(int(np.prod(s)) for s in convert.hf_shapes(cfg).values()) == count
  if name == "Mixtral-8x7B":
    assert count == 46_702_792_704  # the published parameter count of Mixtral-8x7B
  specs = nnx.get_partition_spec(state)
  assert tuple(specs["layers"]["moe"]["experts"]["gate"].get_value()) == (None, "model", None,
                                                                          None)
  assert tuple(specs["layers"]["moe"]["router"]["w"].get_value()) == (None, None, None)
  assert tuple(specs["layers"]["attn"]["q"].get_value()) == (None, None, "model", None)
  units = {"Qwen3-30B-A3B": (48, 128), "Qwen1.5-MoE-A2.7B": (24, 61), "Mixtral-8x7B": (32, 8)}
  assert (cfg.moe.num_moe_layers, cfg.moe.num_units) == units[name]


def test_init_of_a_several_segment_model_saves_and_loads_back(saved, tmp_path):
  """models.init draws every segment's tensors (segments share HF name patterns of different
  layer counts: dense_0 has 1 layer, dense_2 has 2) and save -> load gives the same params."""
  _, model = saved("qwen2_moe")
  fresh = models.init(model.config, seed=1)
  models.save(fresh, tmp_path)
  back = models.load(tmp_path)
  assert not _diff_paths(fresh.params, back.params)
  shapes = jax.tree.map(np.shape, fresh.params)
  assert shapes == jax.tree.map(np.shape, model.params)


def test_every_segment_gets_the_family_sharding_axes(saved):
  """One "layers/..." table entry serves every segment (sharding.annotation)."""
  from synergy_jax.models import sharding
  _, model = saved("qwen2_moe")
  cfg = model.config
  assert sharding.annotation("dense_2/attn/q", 4, cfg) == (None, None, "model", None)
  assert sharding.annotation("moe_1/moe/experts/gate", 4, cfg) == (None, "model", None, None)
  assert sharding.annotation("moe_1/moe/shared/down", 4, cfg) == (None, None, "model", None)
  assert sharding.annotation("moe_1/moe/router/w", 3, cfg) == (None, None, None)
  specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
  assert tuple(specs["dense_0"]["mlp"]["gate"].get_value()) == (None, None, "model")


class _SilentMoEBlock(moe_layers.MoEBlock):
  """An MoE block that forgets attend.record_experts (a family bug the decoder must name)."""

  def __call__(self, x, attend):
    x = x + self.attn(self.attn_norm(x), attend)
    return x + self.moe(self.mlp_norm(x), expert_mask=attend.expert_mask).out


def test_an_moe_block_that_does_not_record_its_experts_is_an_error(saved):
  _, model = saved("mixtral")
  C.register_family(dataclasses.replace(
      models.FAMILIES["mixtral"], name="mixtral_silent_test", model_types=(),
      segments=lambda cfg: (models.Segment("layers", 0, cfg.num_layers, _SilentMoEBlock),)))
  silent = models.Model(model.config.replace(family="mixtral_silent_test"), model.params)
  with pytest.raises(ValueError, match="'mixtral_silent_test'.*never called "
                                       r"attend\.record_experts\(\) in an MoE layer"):
    silent(np.array([[3, 4, 5]]))


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe"])
def test_bfloat16_weights_run_on_cpu_and_stay_close_to_float32(saved, name):
  """bfloat16 MoE models compile and run on XLA:CPU (its batched bf16 dots have no f32 output,
  moe/experts._einsum) and their log-probabilities and expert norms stay close to float32's."""
  d, model = saved(name)
  low = models.load(d, dtype="bfloat16")
  tokens, lens = _tokens()
  ref, got = models.score(model, tokens, lens), models.score(low, tokens, lens)
  for field in ("token_logprobs", "expert_norms", "head_norms"):
    a, b = np.asarray(getattr(ref, field)), np.asarray(getattr(got, field), np.float32)
    assert np.isfinite(b).all(), field
    scale = np.abs(a).max()
    assert scale > 0 and np.abs(b - a).max() <= 0.05 * scale, (field, np.abs(b - a).max(), scale)
