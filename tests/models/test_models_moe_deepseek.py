"""The deepseek_v2 family (synergy_jax.models.deepseek_v2) against tiny random transformers
DeepseekV2ForCausalLM models (float32, no network): multi-head latent attention with q_lora_rank
None and set, YaRN rope, attention biases; a dense first layer then MoE layers with greedy and
group-limited routing, routed_scaling_factor and shared experts. Logits within 1e-4; greedy
generation identical to transformers' for 20 tokens; head norms equal torch's (o_proj pre-hook);
cached decoding equals uncached; the cache holds the latent and the rope key, not K/V; strict
checkpoints (missing/extra experts) and configs; save -> transformers round trip; the full-size
DeepSeek-V2-Lite config loads abstractly (jax.eval_shape, no memory)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import families_torch_refs as F
import moe_torch_refs as R
from models_torch_refs import assert_transformers_roundtrip, pair_factory, torch_logits
from synergy_jax import models as M
from synergy_jax.models import convert, decoder, deepseek_v2

# F.VOCAB: the shared generation checks draw prompt tokens from it.
_BASE = dict(vocab_size=F.VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=4,
             max_position_embeddings=64, bos_token_id=1, eos_token_id=2, intermediate_size=40,
             moe_intermediate_size=12, n_routed_experts=8, num_experts_per_tok=3,
             first_k_dense_replace=1, num_hidden_layers=3, kv_lora_rank=16,
             qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=6)
CONFIGS = {
    # q_lora_rank set, group-limited routing, one shared expert, YaRN
    "group": dict(q_lora_rank=12, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                  n_shared_experts=1, routed_scaling_factor=1.5, rope_parameters=dict(R.YARN)),
    # full q_proj, greedy routing, two shared experts, YaRN
    "greedy": dict(q_lora_rank=None, topk_method="greedy", n_shared_experts=2,
                   routed_scaling_factor=2.5, rope_parameters=dict(R.YARN)),
    # default rope, attention biases, v_head_dim > the query/key head dim, two dense layers
    "plain": dict(q_lora_rank=12, topk_method="greedy", n_shared_experts=1, attention_bias=True,
                  first_k_dense_replace=2, v_head_dim=14, num_hidden_layers=4,
                  rope_parameters={"rope_type": "default", "rope_theta": 300.0}),
}


def _build(name):
  cfg = transformers.DeepseekV2Config(**{**_BASE, **CONFIGS[name]})
  cfg._experts_implementation = "eager"
  cfg._attn_implementation = "eager"
  torch.manual_seed(0)
  return R.randomize(transformers.DeepseekV2ForCausalLM(cfg).eval(), seed=21, std=0.2)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """name -> (torch model, our loaded Model, directory)."""
  return pair_factory(_build, tmp_path_factory)


def test_config_segments_and_write_back(pair):
  c = pair("group")[1].config
  assert (c.family, c.num_heads, c.num_kv_heads, c.head_dim) == ("deepseek_v2", 4, 4, 6)
  assert c.mla.q_lora_rank == 12 and c.mla.rope_type == "yarn" and c.mla.qk_head_dim == 12
  assert c.moe.moe_layers == (1, 2) and c.moe.num_shared_experts == 1
  spec = deepseek_v2.moe_spec(c)
  assert (spec.moe.topk_method, spec.moe.n_group, spec.moe.topk_group) == (
      "group_limited_greedy", 4, 2)
  segs = M.FAMILIES["deepseek_v2"].segments_of(c)
  assert [(s.key, s.start, s.stop) for s in segs] == [("dense_layers", 0, 1),
                                                      ("moe_layers", 1, 3)]
  p = pair("group")[1].params
  assert p["moe_layers"]["mlp"]["experts"]["gate"].shape == (2, 8, 32, 12)  # (L, E, D, Fe)
  assert p["moe_layers"]["mlp"]["shared"]["down"].shape == (2, 1, 12, 32)
  assert p["dense_layers"]["mlp"]["gate"].shape == (1, 32, 40)
  for name in CONFIGS:
    cfg = pair(name)[1].config
    assert M.ModelConfig.from_hf(cfg.to_hf()) == cfg
  assert pair("plain")[1].config.moe.moe_layers == (2, 3)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_logits_match_transformers(pair, name):
  tm, m, _ = pair(name)
  ids = np.random.RandomState(0).randint(3, F.VOCAB - 3, size=(2, 19))  # past YaRN's 16
  ref = torch_logits(tm, ids)
  out = np.asarray(M.forward(m, ids))
  assert np.isfinite(out).all() and ref.std() > 0.1
  np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["group", "greedy"])
def test_greedy_generation_and_head_norms_match_transformers(pair, name):
  """20 greedy tokens identical to transformers' generate; head norms == the norms of the
  per-head slices of o_proj's input (torch pre-hook), V = v_head_dim wide each."""
  tm, m, _ = pair(name)
  F.check_greedy_and_head_norms(tm, m)


def test_cached_decoding_equals_uncached_and_padding(pair):
  _, m, _ = pair("group")
  F.check_cached_equals_uncached(m)
  F.check_padded_logits(pair("group")[0], m)


def test_cache_holds_the_latent_and_rope_key_not_kv(pair):
  """Cache entries per layer and slot: (kv_lora_rank,) latent and (qk_rope_head_dim,) rope key;
  after a prompt pass the latent entries equal torch's kv_a_layernorm outputs (hooks)."""
  tm, m, _ = pair("greedy")
  c = m.config
  assert M.FAMILIES["deepseek_v2"].cache_layout(c) == {"latent": (16,), "rope_key": (4,)}
  ids = np.random.RandomState(4).randint(3, F.VOCAB - 3, size=(2, 7))
  valid = jnp.ones(ids.shape, bool)
  pos = decoder.positions_from_mask(valid)
  cache = decoder.empty_cache(c, pos, valid, 5, jnp.float32)
  assert {k: v.shape for k, v in cache.entries.items()} == {
      "latent": (3, 2, 12, 16), "rope_key": (3, 2, 12, 4)}  # (L, B, C, per slot)
  run = jax.jit(lambda m, ids, cache: decoder.run(m, ids, pos, valid, cache=cache,
                                                   logits_at="none")[1])
  new = run(m, jnp.asarray(ids), cache)
  latents = []
  hooks = [layer.self_attn.kv_a_layernorm.register_forward_hook(
      lambda mod, a, out: latents.append(out.detach().numpy())) for layer in tm.model.layers]
  try:
    torch_logits(tm, ids)
  finally:
    for h in hooks:
      h.remove()
  got = np.asarray(new.entries["latent"])
  for layer, want in enumerate(latents):
    np.testing.assert_allclose(got[layer, :, :7], want.reshape(2, 7, 16), atol=1e-5, rtol=0)
  assert not got[:, :, 7:].any()  # future slots untouched
  rope = np.asarray(new.entries["rope_key"])
  assert np.isfinite(rope).all() and np.abs(rope[:, :, :7]).min(axis=-1).max() > 0


def test_save_round_trips_through_transformers(pair, tmp_path):
  tm, m, _ = pair("plain")
  ids = np.random.RandomState(5).randint(3, F.VOCAB - 3, size=(2, 9))
  assert_transformers_roundtrip(tm, m, tmp_path, ids, atol=1e-5)
  names = convert.hf_shapes(m.config)
  assert "model.layers.3.mlp.experts.7.down_proj.weight" in names  # per-expert on disk
  assert names["model.layers.2.mlp.shared_experts.gate_proj.weight"] == (12, 32)


def test_missing_and_extra_experts_are_named(pair):
  c = pair("group")[1].config
  shapes = convert.hf_shapes(c)
  missing = {k: v for k, v in shapes.items() if k != "model.layers.2.mlp.experts.5.up_proj.weight"}
  with pytest.raises(ValueError, match=r"missing tensors \['model\.layers\.2\.mlp\.experts\.5\."
                                       r"up_proj\.weight'\]"):
    convert.check_tensors(missing, c, "ckpt")
  extra = {**shapes, "model.layers.1.mlp.experts.8.gate_proj.weight": (12, 32)}
  with pytest.raises(ValueError, match=r"unexpected tensors \['model\.layers\.1\.mlp\.experts\.8"):
    convert.check_tensors(extra, c, "ckpt")


@pytest.mark.parametrize("change, match", [
    ({"norm_topk_prob": True}, r"norm_topk_prob=True"),
    ({"moe_layer_freq": 2}, r"moe_layer_freq=2"),
    ({"mlp_bias": True}, r"mlp_bias=True"),
    ({"scoring_func": "sigmoid"}, r"scoring_func='sigmoid'"),
    ({"rope_interleave": False}, r"\['rope_interleave'\]"),
    ({"num_key_value_heads": 2}, r"num_key_value_heads=2"),
])
def test_unimplemented_fields_raise_naming_them(pair, change, match):
  hf = {**pair("group")[1].config.to_hf(), **change}
  with pytest.raises(ValueError, match=match):
    M.ModelConfig.from_hf(hf)


# DeepSeek-V2-Lite's config.json (deepseek-ai/DeepSeek-V2-Lite; auto_map and dtype left out).
V2_LITE = dict(
    model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], vocab_size=102400,
    hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=27,
    num_attention_heads=16, num_key_value_heads=16, n_shared_experts=2, n_routed_experts=64,
    ep_size=1, routed_scaling_factor=1.0, kv_lora_rank=512, q_lora_rank=None,
    qk_rope_head_dim=64, v_head_dim=128, qk_nope_head_dim=128, topk_method="greedy", n_group=1,
    topk_group=1, num_experts_per_tok=6, moe_layer_freq=1, first_k_dense_replace=1,
    norm_topk_prob=False, scoring_func="softmax", aux_loss_alpha=0.001, seq_aux=True,
    hidden_act="silu", max_position_embeddings=163840, initializer_range=0.02,
    rms_norm_eps=1e-6, use_cache=True, pad_token_id=None, bos_token_id=100000,
    eos_token_id=100001, pretraining_tp=1, tie_word_embeddings=False, rope_theta=10000,
    rope_scaling={"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                  "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                  "type": "yarn"},
    attention_bias=False, attention_dropout=0.0)


def test_full_size_deepseek_v2_lite_loads_abstractly():
  cfg = M.ModelConfig.from_hf(V2_LITE)
  model = M.abstract(cfg, "bfloat16")  # nnx.eval_shape: ShapeDtypeStructs, no memory
  p = model.params
  assert p["dense_layers"]["attn"]["q"].shape == (1, 2048, 16, 192)
  assert p["moe_layers"]["attn"]["kv_b"].shape == (26, 512, 16, 256)
  assert p["moe_layers"]["attn"]["o"].shape == (26, 16, 128, 2048)
  assert p["moe_layers"]["mlp"]["experts"]["down"].shape == (26, 64, 1408, 2048)
  assert p["moe_layers"]["mlp"]["shared"]["gate"].shape == (26, 2, 2048, 1408)
  n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(p))
  shapes = convert.hf_shapes(cfg)
  assert n == sum(int(np.prod(s)) for s in shapes.values())
  assert abs(n / 1e9 - 15.7) < 0.05  # the published size: 15.7B parameters
  # Converting abstract HF tensors gives exactly the abstract model's leaves.
  abstract = {k: jax.ShapeDtypeStruct(v, jnp.bfloat16) for k, v in shapes.items()}
  converted = jax.eval_shape(lambda t: convert.params_from_hf(t, cfg), abstract)
  assert jax.tree_util.tree_structure(converted) == jax.tree_util.tree_structure(p)
  for a, b in zip(jax.tree_util.tree_leaves(converted), jax.tree_util.tree_leaves(p)):
    assert a.shape == b.shape
  # Model parallelism over 8 (simulated) devices: routed experts split on the expert axis,
  # attention on heads, shared experts and the dense MLP on their width, embeddings on the vocab.
  from jax.sharding import Mesh, PartitionSpec as P
  from synergy_jax.models import sharding
  mesh = Mesh(np.array(jax.devices()[:8]).reshape(1, 8), ("data", "model"))
  specs = sharding.param_specs(p, mesh, config=cfg)
  assert specs["moe_layers"]["mlp"]["experts"]["gate"] == P(None, "model", None, None)
  assert specs["moe_layers"]["mlp"]["experts"]["down"] == P(None, "model", None, None)
  assert specs["moe_layers"]["mlp"]["shared"]["up"] == P(None, None, None, "model")
  assert specs["moe_layers"]["mlp"]["router"]["w"] == P()
  assert specs["moe_layers"]["attn"]["kv_b"] == P(None, None, "model", None)
  assert specs["dense_layers"]["attn"]["q"] == P(None, None, "model", None)
  assert specs["dense_layers"]["attn"]["o"] == P(None, "model", None, None)
  assert specs["dense_layers"]["mlp"]["down"] == P(None, "model", None)
  assert specs["embed"] == P("model", None)
  # The latent cache: 512 + 64 numbers per token and layer instead of 16 * (192 + 128) for K/V.
  layout = M.FAMILIES["deepseek_v2"].cache_layout(cfg)
  assert sum(int(np.prod(s)) for s in layout.values()) == 576
  assert cfg.mla.softmax_scale == pytest.approx(192 ** -0.5 * (0.1 * 0.707 * np.log(40) + 1) ** 2)



def torch_expert_norms(tm, ids, moe_layers):
  """From torch's own modules, for ids (B, S): the input x each MoE layer receives (pre-hook),
  (B*S, D) numpy, and per MoE layer the dense ‖E_u(x)‖ and routed |g_u| ‖E_u(x)‖ norms of every
  unit u (E routed experts from the Experts module, then each shared expert's slice of the
  fused shared MLP), (B*S, E + S) each."""
  inputs = {}
  hooks = [tm.model.layers[i].mlp.register_forward_pre_hook(
      lambda mod, a, i=i: inputs.update({i: a[0].detach()})) for i in moe_layers]
  try:
    torch_logits(tm, ids)
  finally:
    for h in hooks:
      h.remove()
  out = []
  f = tm.config.moe_intermediate_size
  for i in moe_layers:
    mlp = tm.model.layers[i].mlp
    x2d = inputs[i].reshape(-1, inputs[i].shape[-1])
    norms = np.linalg.norm(R.every_expert_output(mlp.experts, x2d), axis=-1)  # (T, E)
    gates = R.dense_gates(mlp.gate, x2d)
    se = mlp.shared_experts
    with torch.no_grad():
      act = se.act_fn(se.gate_proj(x2d)) * se.up_proj(x2d)  # (T, S * F)
      shared = np.stack([np.linalg.norm(R.np32(
          act[:, h * f:(h + 1) * f] @ se.down_proj.weight[:, h * f:(h + 1) * f].T), axis=-1)
          for h in range(tm.config.n_shared_experts)], -1)  # (T, S)
      fused = np.linalg.norm(R.np32(se(x2d)), axis=-1)
    if shared.shape[1] == 1:  # one shared expert: its slice is the whole fused MLP
      np.testing.assert_allclose(shared[:, 0], fused, rtol=1e-5)
    out.append((x2d.numpy(), np.concatenate([norms, shared], -1),
                np.concatenate([np.abs(gates) * norms, shared], -1)))
  return out


@pytest.mark.parametrize("name", ["group", "greedy"])
def test_moe_layers_expert_activity_matches_torch_experts(pair, name):
  """Each MoE layer of the loaded model (its stacked weights sliced at that layer), run on the
  input torch's MoE module receives: dense activity == ‖expert_u(x)‖ from torch's own modules
  for every routed and shared unit, routed == |gate| · that (shared experts are ungated)."""
  from flax import nnx
  tm, m, _ = pair(name)
  c = m.config
  ids = np.random.RandomState(6).randint(3, F.VOCAB - 3, size=(2, 11))
  graphdef, state = nnx.split(m.moe_layers)
  first = c.moe.moe_layers[0]

  @jax.jit
  def moe_layer(state, j, x):  # the MoE feed-forward of stacked layer j
    return nnx.merge(graphdef, jax.tree.map(lambda a: a[j], state)).mlp(x)

  units = c.moe.num_experts + c.moe.num_shared_experts
  for i, (x, dense, routed) in zip(c.moe.moe_layers, torch_expert_norms(tm, ids,
                                                                        c.moe.moe_layers)):
    res = moe_layer(state, i - first, jnp.asarray(x)[None])
    np.testing.assert_allclose(np.asarray(res.dense)[0], dense, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(res.routed)[0], routed, atol=1e-4, rtol=0)
    assert np.asarray(res.dense).shape == (1, x.shape[0], units)
    assert ((routed[:, :c.moe.num_experts] > 0).sum(-1) == 3).all()  # top-3 of 8


def test_head_and_expert_perturbation_land_in_the_right_segment(pair):
  """Heads live in two segments (dense_layers: layer 0, moe_layers: layers 1-2): perturbing head
  (2, 1) changes only moe_layers' q_b[1, :, 1] and o[1, 1] (layer 2 is row 1 of that segment);
  perturbing head (0, 3) only dense_layers' slices; expert (1, 5) only moe_layers' experts[1, 5]."""
  m = pair("group")[1]
  assert M.units_shape(m) == (3, 4)
  assert M.units_shape(m, units="experts") == (2, 9)  # 8 routed + 1 shared, 2 MoE layers
  units = M.FAMILIES["deepseek_v2"].units(m.config)
  assert [(u.path, u.layer_start) for u in units if u.units == "heads"] == [
      (("dense_layers", "attn", "q_b"), 0), (("dense_layers", "attn", "o"), 0),
      (("moe_layers", "attn", "q_b"), 1), (("moe_layers", "attn", "o"), 1)]

  def changed(new):
    flat0 = jax.tree_util.tree_flatten_with_path(m.params)[0]
    flat1 = dict(jax.tree_util.tree_flatten_with_path(new)[0])
    out = {}
    for path, a in flat0:
      diff = np.asarray(flat1[path]) != np.asarray(a)
      if diff.any():
        out[tuple(getattr(k, "key", k) for k in path)] = np.argwhere(diff)
    return out

  sel = np.zeros((3, 4), bool)
  sel[2, 1] = True
  got = changed(M.perturb_selected(m.params, sel, 0.1, jax.random.PRNGKey(0), config=m.config))
  assert set(got) == {("moe_layers", "attn", "q_b"), ("moe_layers", "attn", "o")}, set(got)
  q_idx, o_idx = got[("moe_layers", "attn", "q_b")], got[("moe_layers", "attn", "o")]
  assert set(q_idx[:, 0]) == {1} and set(q_idx[:, 2]) == {1}  # (L, D', N, K): layer row 1, head 1
  assert set(o_idx[:, 0]) == {1} and set(o_idx[:, 1]) == {1}  # (L, N, V, D)
  sel = np.zeros((3, 4), bool)
  sel[0, 3] = True
  got = changed(M.perturb_selected(m.params, sel, 0.1, jax.random.PRNGKey(1), config=m.config))
  assert set(got) == {("dense_layers", "attn", "q_b"), ("dense_layers", "attn", "o")}, set(got)
  assert set(got[("dense_layers", "attn", "q_b")][:, 2]) == {3}
  sel = np.zeros((2, 9), bool)
  sel[1, 5] = True
  got = changed(M.perturb_selected(m.params, sel, 0.1, jax.random.PRNGKey(2), config=m.config,
                                   units="experts"))
  assert set(got) == {("moe_layers", "mlp", "experts", n) for n in ("gate", "up", "down")}
  for idx in got.values():
    assert set(idx[:, 0]) == {1} and set(idx[:, 1]) == {5}


def test_init_builds_every_segment(pair):
  """models.init's tensors fill each segment from the shared HF name templates although the
  segments have different numbers of layers (abstractly: models.param_shapes)."""
  shapes = M.param_shapes(pair("group")[1].config)
  assert shapes["dense_layers"]["attn_norm"]["weight"].shape == (1, 32)
  assert shapes["moe_layers"]["attn_norm"]["weight"].shape == (2, 32)
  assert shapes["dense_layers"]["attn"]["kv_b"].shape == (1, 16, 4, 14)
  assert shapes["moe_layers"]["mlp"]["experts"]["up"].shape == (2, 8, 32, 12)
  M.Model(pair("group")[1].config, shapes)  # every leaf where the modules expect it


def test_attend_cache_checks_the_layout_and_the_order(pair):
  """decoder.Attend.cache writes exactly the family's layout, per-slot shapes checked; core()
  with a cache refuses to run before the block wrote its entries."""
  c = pair("group")[1].config
  valid = jnp.ones((1, 2), bool)
  pos = decoder.positions_from_mask(valid)
  cache = decoder.empty_cache(c, pos, valid, 2, jnp.float32)

  def attend():
    return decoder.Attend(c, pos, valid, {}, 0, 0, cache.entries, (cache.pos, cache.valid), 0,
                          None, None)

  with pytest.raises(ValueError, match=r"writes cache entries \['k', 'v'\], its cache layout "
                                       r"has \['latent', 'rope_key'\]"):
    attend().cache({"k": jnp.zeros((1, 2, 4, 6)), "v": jnp.zeros((1, 2, 4, 6))})
  with pytest.raises(ValueError, match=r"cache entry 'latent' per slot has shape \(15,\)"):
    attend().cache({"latent": jnp.zeros((1, 2, 15)), "rope_key": jnp.zeros((1, 2, 4))})
  with pytest.raises(ValueError, match=r"attends before writing its cache entries"):
    attend().core(jnp.zeros((1, 2, 4, 12)), jnp.zeros((1, 4, 4, 12)), jnp.zeros((1, 4, 4, 6)),
                  scale=1.0)
  a = attend()
  lat = jnp.arange(2 * 16, dtype=jnp.float32).reshape(1, 2, 16)
  full = a.cache({"latent": lat, "rope_key": jnp.ones((1, 2, 4))})
  assert full["latent"].shape == (1, 4, 16)  # every slot: 2 prompt + 2 future
  np.testing.assert_array_equal(np.asarray(full["latent"][:, :2]), np.asarray(lat))
  assert a.new_kv["latent"].shape == (3, 1, 4, 16) and not np.asarray(a.new_kv["latent"][1:]).any()


def test_head_mask_ablation_matches_zeroing_the_head_in_torch(pair):
  """head_mask[l, n] = 0 equals zeroing head n's slice of o_proj's input in torch (pre-hook),
  here in a MoE layer (2) and the dense layer (0); the ablated heads read 0 in head_norms."""
  tm, m, _ = pair("group")
  c = m.config
  v = c.head_dim  # v_head_dim: the width of one head's slice of o_proj's input
  ablate = [(0, 1), (2, 3)]

  def zero(n):
    def hook(mod, args):
      x = args[0].clone()
      x[..., n * v:(n + 1) * v] = 0
      return (x,)
    return hook

  hooks = [tm.model.layers[l].self_attn.o_proj.register_forward_pre_hook(zero(n))
           for l, n in ablate]
  ids = np.random.RandomState(8).randint(3, F.VOCAB - 3, size=(2, 10))
  try:
    ref = torch_logits(tm, ids)
  finally:
    for h in hooks:
      h.remove()
  mask = np.ones((c.num_layers, c.num_heads), np.float32)
  for l, n in ablate:
    mask[l, n] = 0
  out = m(jnp.asarray(ids), head_mask=jnp.asarray(mask))
  np.testing.assert_allclose(np.asarray(out.logits), ref, atol=1e-4, rtol=0)
  assert np.abs(ref - torch_logits(tm, ids)).max() > 1e-2  # the ablation matters
  norms = np.asarray(out.head_norms)  # (B, L, N, S)
  for l, n in ablate:
    assert not norms[:, l, n].any()
  assert (norms[:, 1] > 0).all()
