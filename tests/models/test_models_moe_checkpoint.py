"""MoE/MLA config readers (strict) and checkpoint layout: tiny transformers models saved with
save_pretrained (per-expert on-disk layout) are stacked into an expert axis and written back
bit-identically; which layers are MoE layers agrees with the modules transformers builds;
full-size configs are read and sized with nnx.eval_shape (no memory)."""
import glob

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors.numpy import load_file

import moe_torch_refs as R
from synergy_jax.models import moe

MODELS = {"mixtral": transformers.MixtralForCausalLM,
          "qwen2_moe": transformers.Qwen2MoeForCausalLM,
          "qwen3_moe": transformers.Qwen3MoeForCausalLM,
          "deepseek_v2_greedy": transformers.DeepseekV2ForCausalLM,
          "deepseek_v2_group": transformers.DeepseekV2ForCausalLM}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_saved_checkpoint_stacks_and_round_trips(name, tmp_path):
  torch.manual_seed(0)
  cfg = R.config(name)
  model = MODELS[name](cfg).eval()
  model.save_pretrained(tmp_path)
  tensors = load_file(glob.glob(str(tmp_path / "*.safetensors"))[0])
  hf = cfg.to_dict()
  spec = moe.moe_from_hf(hf)
  mt = hf["model_type"]
  built = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "experts")]
  assert list(moe.moe_layers(hf)) == built == list(spec.moe.moe_layers)
  if name == "qwen2_moe":
    assert built == [1]  # decoder_sparse_step=2, mlp_only_layers=[3]
  state = model.state_dict()
  f = spec.moe.expert_intermediate_size
  for i in built:
    disk = "block_sparse_moe" if mt == "mixtral" else "mlp"
    prefix = f"model.layers.{i}.{disk}"
    weights = moe.moe_weights_from_hf(tensors, prefix, mt, spec)
    # the on-disk experts equal transformers' fused in-memory experts
    gate_up = state[f"model.layers.{i}.mlp.experts.gate_up_proj"].numpy()
    np.testing.assert_array_equal(weights["experts"]["gate"], gate_up[:, :f].transpose(0, 2, 1))
    np.testing.assert_array_equal(weights["experts"]["up"], gate_up[:, f:].transpose(0, 2, 1))
    back = moe.moe_weights_to_hf(weights, prefix, mt)
    mine = {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    assert sorted(back) == sorted(mine)
    for k in mine:
      np.testing.assert_array_equal(back[k], mine[k], err_msg=k)
    ours = nnx.eval_shape(lambda: moe.MoEFeedForward(spec, rngs=nnx.Rngs(0)))
    moe.assign(ours, weights)  # every module parameter filled, shapes checked
  if mt == "deepseek_v2":
    mcfg = moe.mla_from_hf(hf)
    for i in range(cfg.num_hidden_layers):
      prefix = f"model.layers.{i}.self_attn"
      w = moe.mla_weights_from_hf(tensors, prefix, mcfg)
      back = moe.mla_weights_to_hf(w, prefix, mcfg)
      mine = {k: v for k, v in tensors.items() if k.startswith(prefix + ".")}
      assert sorted(back) == sorted(mine)
      for k in mine:
        np.testing.assert_array_equal(back[k], mine[k], err_msg=k)


def _experts(n=3, names=("gate_proj", "up_proj", "down_proj")):
  rng = np.random.default_rng(0)
  return {f"p.{j}.{nm}.weight": rng.normal(size=(4, 2)).astype(np.float32)
          for j in range(n) for nm in names}


def test_stack_experts_is_strict_and_round_trips():
  t = _experts()
  names = ("gate_proj", "up_proj", "down_proj")
  stacked = moe.stack_experts(t, "p", names, 3)
  assert stacked["up_proj"].shape == (3, 4, 2)
  back = moe.unstack_experts(stacked, "p")
  assert sorted(back) == sorted(t)
  for k in t:
    np.testing.assert_array_equal(back[k], t[k])
  missing = dict(t)
  del missing["p.1.up_proj.weight"]
  with pytest.raises(ValueError, match=r"p\.1\.up_proj\.weight"):
    moe.stack_experts(missing, "p", names, 3)
  extra = {**t, "p.3.gate_proj.weight": t["p.0.gate_proj.weight"]}
  with pytest.raises(ValueError, match=r"p\.3\.gate_proj\.weight.*expert 3.*3 experts"):
    moe.stack_experts(extra, "p", names, 3)
  odd = {**t, "p.0.bias_thing.weight": t["p.0.gate_proj.weight"]}
  with pytest.raises(ValueError, match=r"unexpected tensor 'p\.0\.bias_thing\.weight'"):
    moe.stack_experts(odd, "p", names, 3)
  bad = {**t, "p.2.down_proj.weight": np.zeros((5, 2), np.float32)}
  with pytest.raises(ValueError, match=r"p\.2\.down_proj\.weight has shape \(5, 2\)"):
    moe.stack_experts(bad, "p", names, 3)


def test_moe_weights_from_hf_names_unexpected_and_missing_tensors():
  hf = R.config("qwen2_moe_norm").to_dict()
  spec = moe.moe_from_hf(hf)
  torch.manual_seed(0)
  model = transformers.Qwen2MoeForCausalLM(R.config("qwen2_moe_norm"))
  state = {k: v.numpy() for k, v in model.state_dict().items()}  # fused in-memory layout
  w = moe.moe_weights_from_hf(state, "model.layers.0.mlp", "qwen2_moe", spec)
  assert w["shared_gate"].shape == (hf["hidden_size"],)
  with pytest.raises(ValueError, match=r"unexpected tensors under 'model\.layers\.0\.mlp'.*"
                                       r"model\.layers\.0\.mlp\.stray"):
    moe.moe_weights_from_hf({**state, "model.layers.0.mlp.stray": np.zeros(1)},
                            "model.layers.0.mlp", "qwen2_moe", spec)
  short = {k: v for k, v in state.items() if "shared_expert_gate" not in k}
  with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.0\.mlp\.shared_expert_gate"):
    moe.moe_weights_from_hf(short, "model.layers.0.mlp", "qwen2_moe", spec)
  ours = nnx.eval_shape(lambda: moe.MoEFeedForward(spec, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r"weight 'experts\.down' has shape"):
    moe.assign(ours, {**w, "experts": {**w["experts"], "down": w["experts"]["gate"]}})
  with pytest.raises(ValueError, match=r"missing weight 'shared_gate'"):
    moe.assign(ours, {k: v for k, v in w.items() if k != "shared_gate"})


@pytest.mark.parametrize("model_type,change,match", [
    ("mixtral", {"brand_new_field": 1}, r"fields we do not implement: \['brand_new_field'\]"),
    ("mixtral", {"router_jitter_noise": 0.1}, r"router_jitter_noise=0\.1"),
    ("qwen3_moe", {"num_experts": 5}, r"num_experts=5 and num_local_experts=8 disagree"),
    ("qwen2_moe", {"mlp_only_layers": [7]}, r"mlp_only_layers has entries \[7\]"),
    ("deepseek_v2_greedy", {"scoring_func": "sigmoid"}, r"scoring_func='sigmoid'"),
    ("deepseek_v2_greedy", {"norm_topk_prob": True}, r"norm_topk_prob=True"),
    ("deepseek_v2_greedy", {"moe_layer_freq": 2}, r"moe_layer_freq=2"),
    ("deepseek_v2_greedy", {"mlp_bias": True}, r"mlp_bias=True"),
    ("deepseek_v2_greedy", {"topk_method": "noaux_tc"}, r"topk_method='noaux_tc'"),
    ("deepseek_v2_greedy", {"num_experts_per_tok": None}, r"'num_experts_per_tok' is required"),
    ("deepseek_v2_group", {"n_group": 3}, r"num_experts=8 is not a multiple of n_group=3"),
])
def test_moe_reader_rejects_what_it_does_not_implement(model_type, change, match):
  hf = {**R.config(model_type).to_dict(), **change}
  with pytest.raises(ValueError, match=match):
    moe.moe_from_hf(hf)


@pytest.mark.parametrize("change,match", [
    ({"num_key_value_heads": 2}, r"num_key_value_heads=2"),
    ({"rope_parameters": {"rope_type": "linear", "rope_theta": 10.0, "factor": 2.0}},
     r"rope_type='linear'"),
    ({"rope_parameters": {**R.YARN, "extrapolation_mix": 1}}, r"\['extrapolation_mix'\]"),
    ({"head_dim": 7}, r"head_dim=7"),
    ({"attention_dropout": 0.1}, r"attention_dropout=0\.1"),
])
def test_mla_reader_rejects_what_it_does_not_implement(change, match):
  hf = {**R.config("deepseek_v2_group").to_dict(), **change}
  with pytest.raises(ValueError, match=match):
    moe.mla_from_hf(hf)


# Full-size configurations, with the MoE/MLA fields of the released config.json files (dense
# fields the MoE readers do not look at are left out).
FULL = {
    "DeepSeek-V2-Lite": dict(
        model_type="deepseek_v2", hidden_size=2048, num_hidden_layers=27, num_attention_heads=16,
        num_key_value_heads=16, hidden_act="silu", intermediate_size=10944,
        moe_intermediate_size=1408, n_routed_experts=64, n_shared_experts=2,
        num_experts_per_tok=6, first_k_dense_replace=1, moe_layer_freq=1, n_group=1,
        topk_group=1, topk_method="greedy", norm_topk_prob=False, routed_scaling_factor=1.0,
        scoring_func="softmax", aux_loss_alpha=0.001, seq_aux=True, ep_size=1,
        kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64,
        v_head_dim=128, max_position_embeddings=163840, rope_theta=10000,
        rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                      "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                      "type": "yarn"}),
    "Qwen3-30B-A3B": dict(
        model_type="qwen3_moe", hidden_size=2048, num_hidden_layers=48, hidden_act="silu",
        intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
        num_experts_per_tok=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        output_router_logits=False, router_aux_loss_coef=0.001),
    "Qwen1.5-MoE-A2.7B": dict(
        model_type="qwen2_moe", hidden_size=2048, num_hidden_layers=24, hidden_act="silu",
        intermediate_size=5632, moe_intermediate_size=1408, shared_expert_intermediate_size=5632,
        num_experts=60, num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1),
    "Mixtral-8x7B": dict(
        model_type="mixtral", hidden_size=4096, num_hidden_layers=32, hidden_act="silu",
        intermediate_size=14336, num_local_experts=8, num_experts_per_tok=2),
}


@pytest.mark.parametrize("name", sorted(FULL))
def test_full_size_configs_are_read_and_sized_without_memory(name):
  hf = FULL[name]
  spec = moe.moe_from_hf(hf)
  d, e, f = hf["hidden_size"], spec.moe.num_experts, spec.moe.expert_intermediate_size
  h, fs = spec.moe.num_shared_experts, spec.moe.shared_expert_intermediate_size
  layer = nnx.eval_shape(lambda: moe.MoEFeedForward(spec, rngs=nnx.Rngs(0)))
  count = _size(layer)
  # router + routed experts + shared experts (+ Qwen2-MoE's shared gate), from the config alone
  want = d * e + e * 3 * d * f + h * 3 * d * fs + (d if hf["model_type"] == "qwen2_moe" else 0)
  assert count == want
  expected_units = {"DeepSeek-V2-Lite": 66, "Qwen3-30B-A3B": 128, "Qwen1.5-MoE-A2.7B": 61,
                    "Mixtral-8x7B": 8}[name]
  assert spec.num_units == expected_units
  # sharding annotations: routed experts split over the expert axis, the router replicated
  specs = nnx.get_partition_spec(nnx.state(layer, nnx.Param))
  assert tuple(specs["experts"]["gate"].get_value()) == ("model", None, None)
  assert tuple(specs["experts"]["down"].get_value()) == ("model", None, None)
  assert tuple(specs["router"]["w"].get_value()) == (None, None)
  if name == "DeepSeek-V2-Lite":
    assert spec.moe.moe_layers == tuple(range(1, 27))
    mcfg = moe.mla_from_hf(hf)
    attn = nnx.eval_shape(lambda: moe.MultiHeadLatentAttention(mcfg, rngs=nnx.Rngs(0)))
    aspecs = nnx.get_partition_spec(nnx.state(attn, nnx.Param))
    assert tuple(aspecs["kv_b"].get_value()) == (None, "model", None)  # heads
    assert tuple(aspecs["o"].get_value()) == ("model", None, None)
    n_attn = _size(attn)
    # q (D, 16*192) + kv_a (D, 512+64) + kv_a_norm 512 + kv_b (512, 16*256) + o (16*128, D)
    assert n_attn == d * 16 * 192 + d * 576 + 512 + 512 * 16 * 256 + 16 * 128 * d
    assert mcfg.softmax_scale == pytest.approx(192 ** -0.5 * (0.1 * 0.707 * np.log(40) + 1) ** 2)


def _size(module) -> int:
  """Parameter count of a module (abstract leaves are ShapeDtypeStructs)."""
  return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("name", ["mixtral", "qwen2_moe", "qwen2_moe_norm", "qwen3_moe",
                                  "deepseek_v2_greedy", "deepseek_v2_group"])
def test_config_fields_written_back_read_the_same(name):
  hf = R.config(name).to_dict()
  spec = moe.moe_from_hf(hf)
  written = {**hf, **moe.moe_to_hf(spec, hf["model_type"], hf["num_hidden_layers"])}
  assert moe.moe_from_hf(written) == spec
  if hf["model_type"] == "deepseek_v2":
    mcfg = moe.mla_from_hf(hf)
    assert moe.mla_from_hf({**hf, **moe.mla_to_hf(mcfg)}) == mcfg
  if name == "qwen2_moe":  # a sparse-step pattern is written as an explicit dense-layer list
    assert moe.moe_to_hf(spec, "qwen2_moe", 4)["mlp_only_layers"] == [0, 2, 3]


def test_config_writer_refuses_what_the_format_cannot_express():
  spec = moe.moe_from_hf(R.config("deepseek_v2_greedy").to_dict())
  with pytest.raises(ValueError, match="mixtral cannot express"):
    moe.moe_to_hf(spec, "mixtral", 3)
  with pytest.raises(ValueError, match="qwen3_moe cannot express"):
    moe.moe_to_hf(spec, "qwen3_moe", 3)
