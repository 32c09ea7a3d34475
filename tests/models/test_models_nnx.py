"""The models as Flax NNX modules: parameter state, split/merge, training with nnx.Optimizer,
the shipped default model, abstract (eval_shape) conversion, sharding annotations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import transformers
from flax import nnx

import families_torch_refs as F
import models_torch_refs as R
from synergy_jax import models as M
from synergy_jax.models import convert, hub

# (builder, name): every family, with and without biases / tied heads.
FAMILY_MODELS = [(R.build, "llama"), (R.build, "qwen3"), (F.build, "gpt2"),
                 (F.build, "gpt_neox_seq"), (F.build, "gemma2"), (F.build, "gemma3_text")]


@pytest.mark.parametrize("builder,name", FAMILY_MODELS, ids=[n for _, n in FAMILY_MODELS])
def test_param_state_counts_match_hf_and_module_call_matches_torch(builder, name, tmp_path):
  tm = builder(name)
  tm.save_pretrained(tmp_path)
  m = M.load(tmp_path)
  assert isinstance(m, nnx.Module)
  state = nnx.state(m, nnx.Param)
  n_ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state))
  n_hf = sum(p.numel() for p in tm.parameters())  # shared (tied) tensors counted once
  assert n_ours == n_hf
  ids = np.random.RandomState(0).randint(3, R.VOCAB, size=(2, 7))
  out = nnx.jit(lambda mdl, x: mdl(x))(m, ids)
  np.testing.assert_allclose(np.asarray(out.logits), R.torch_logits(tm, ids), atol=1e-4, rtol=0)
  assert out.head_norms.shape == (2, m.config.num_layers, m.config.num_heads, 7)
  assert np.all(np.isfinite(np.asarray(out.head_norms)))


def test_split_merge_round_trip_and_params_view():
  cfg = M.load_config("default")
  m = M.init(cfg, seed=3)
  graphdef, state = nnx.split(m)
  m2 = nnx.merge(graphdef, state)
  assert m2.config == cfg and m2.dtype == "float32"
  flat1, tree1 = jax.tree_util.tree_flatten(m.params)
  flat2, tree2 = jax.tree_util.tree_flatten(m2.params)
  assert tree1 == tree2
  for a, b in zip(flat1, flat2):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # the state holds exactly the params leaves, in the family's layout
  assert m.params["layers"]["attn"]["q"].shape == (cfg.num_layers, cfg.hidden_size, cfg.num_heads,
                                           cfg.head_dim)
  assert m.params["layers"]["attn"]["o"].shape == (cfg.num_layers, cfg.num_heads, cfg.head_dim,
                                           cfg.hidden_size)
  # replace(params=) is the inverse of the view; the original is untouched
  doubled = jax.tree.map(lambda x: 2 * x, m.params)
  m3 = m.replace(params=doubled)
  np.testing.assert_array_equal(np.asarray(m3.params["embed"]), 2 * np.asarray(m.params["embed"]))
  assert not np.array_equal(np.asarray(m3.params["embed"]), np.asarray(m.params["embed"]))
  with pytest.raises(ValueError, match="unknown fields"):
    m.replace(weights=doubled)
  ids = np.array([[1, 5, 9, 4]])
  out = nnx.jit(lambda mdl, x: mdl(x))(m2, ids)
  np.testing.assert_array_equal(np.asarray(out.logits), np.asarray(M.forward(m, ids)))
  # the module's capture is score's (checked against PyTorch hooks in test_models_generate)
  s = M.score(m, ids, [2])  # continuation = the last 2 tokens, produced at positions 1, 2
  np.testing.assert_allclose(np.asarray(out.head_norms)[..., 1:3], np.asarray(s.head_norms),
                             atol=1e-5, rtol=0)


def test_jitted_nnx_train_step_lowers_the_loss():
  cfg = M.load_config("default").replace(num_layers=2, layer_windows=(0, 0))
  model = M.init(cfg, seed=0)
  optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
  rs = np.random.RandomState(0)
  ids = jnp.asarray(rs.randint(3, cfg.vocab_size, size=(4, 12)))

  def loss_fn(model):
    logits = model(ids[:, :-1]).logits
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), ids[:, 1:, None], -1))

  @nnx.jit
  def step(model, optimizer):
    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss

  eval_loss = nnx.jit(loss_fn)
  before = float(eval_loss(model))
  losses = [float(step(model, optimizer)) for _ in range(6)]
  after = float(eval_loss(model))
  assert np.all(np.isfinite(losses + [before, after]))
  assert losses[0] == pytest.approx(before, rel=1e-5)
  assert after < before - 0.1  # log(100) = 4.6 nats at init; adam moves it well within 6 steps


def test_default_model_and_checkpoints_load_unchanged():
  """Our logits of the shipped model and of its first and last emergence checkpoints equal
  transformers' on the same files (an independent reference), and the weights are the stored
  float16/float32 values exactly."""
  from safetensors.numpy import load_file
  root = hub.DEFAULT_DIR
  steps = sorted((root / "checkpoints").glob("step_*"))
  assert len(steps) >= 2
  ids = np.array([[1, 17, 33, 48, 5, 60, 2, 9]])
  for d in (root, steps[0], steps[-1]):
    m = M.load(d)
    tm = transformers.AutoModelForCausalLM.from_pretrained(d, attn_implementation="eager",
                                                           dtype=torch.float32)
    np.testing.assert_allclose(np.asarray(M.forward(m, ids)), R.torch_logits(tm, ids),
                               atol=1e-4, rtol=0)
    stored = load_file(str(d / "model.safetensors"))
    ours = convert.params_to_hf(m.params, m.config)
    assert set(ours) == set(stored)
    for k, v in stored.items():
      np.testing.assert_array_equal(ours[k], v.astype(np.float32), err_msg=k)


def test_abstract_model_and_strict_fill():
  cfg = M.ModelConfig.from_hf(F.CONFIGS["gpt2"]().to_dict())
  am = M.abstract(cfg)
  assert isinstance(am.params["layers"]["attn"]["q"], jax.ShapeDtypeStruct)
  graphdef, state = nnx.split(am)
  template = nnx.to_pure_dict(state)
  tensors = {k: np.full(s, i, np.float32) for i, (k, s) in
             enumerate(sorted(convert.hf_shapes(cfg).items()))}
  seen = []
  filled = convert.fill(template, tensors, cfg, lambda p, x, like: seen.append(p) or x)
  assert len(seen) == len(set(seen)) == len(jax.tree.leaves(template))  # each leaf exactly once
  # gpt2's fused c_attn fills q, k and v from one tensor
  i = sorted(convert.hf_shapes(cfg)).index("transformer.h.1.attn.c_attn.weight")
  assert np.all(filled["layers"]["attn"]["k"][1] == i)
  # a template leaf no tensor fills, a leaf the template lacks, a wrong shape: all named
  extra = {**template, "layers": {**template["layers"], "extra": template["layers"]["attn"]["q"]}}
  with pytest.raises(ValueError, match=r"layers/extra"):
    convert.fill(extra, tensors, cfg)
  attn = {k: v for k, v in template["layers"]["attn"].items() if k != "k"}
  missing = {**template, "layers": {**template["layers"], "attn": attn}}
  with pytest.raises(ValueError, match=r"c_attn.weight.*layers/attn/k"):
    convert.fill(missing, tensors, cfg)
  bad = {**template, "embed": jax.ShapeDtypeStruct((3, 3), np.float32)}
  with pytest.raises(ValueError, match=r"wte.weight.*embed shape"):
    convert.fill(bad, tensors, cfg)


def test_full_size_abstract_model_allocates_nothing():
  hf = transformers.LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                num_hidden_layers=32, num_attention_heads=32,
                                num_key_value_heads=8).to_dict()
  am = M.abstract(M.ModelConfig.from_hf(hf), "bfloat16")
  leaves = jax.tree.leaves(am.params)
  assert all(isinstance(x, jax.ShapeDtypeStruct) and x.dtype == jnp.bfloat16 for x in leaves)
  assert 7.5e9 < sum(int(np.prod(x.shape)) for x in leaves) < 8.1e9


def test_params_carry_sharding_annotations():
  m = M.init(M.load_config("default"))
  specs = nnx.to_pure_dict(nnx.get_partition_spec(nnx.state(m, nnx.Param)))
  assert tuple(specs["layers"]["attn"]["q"]) == (None, None, "model", None)  # (L, D, N, K): heads
  assert tuple(specs["layers"]["attn"]["o"]) == (None, "model", None, None)  # (L, N, K, D): heads
  assert tuple(specs["layers"]["mlp"]["down"]) == (None, "model", None)  # (L, F, D): MLP width
  assert tuple(specs["embed"]) == ("model", None)  # (V, D): vocabulary
  assert tuple(specs["final_norm"]["weight"]) == (None,)


def test_head_parameter_mask_is_the_hf_rows_and_columns_of_the_head(tmp_path):
  tm = R.build("llama")  # q/k/v/o biases
  tm.save_pretrained(tmp_path)
  m = M.load(tmp_path)
  k = m.config.head_dim
  mask = M.head_parameter_mask(m.params, [(1, 2)])
  assert jax.tree.structure(mask) == jax.tree.structure(m.params)
  hf = convert.params_to_hf(jax.tree.map(lambda x: x.astype(np.float32), mask), m.config)
  for name, x in hf.items():
    if name == "model.layers.1.self_attn.q_proj.weight":
      want = np.zeros(x.shape, bool)
      want[2 * k:3 * k] = True
    elif name == "model.layers.1.self_attn.q_proj.bias":
      want = np.zeros(x.shape, bool)
      want[2 * k:3 * k] = True
    elif name == "model.layers.1.self_attn.o_proj.weight":
      want = np.zeros(x.shape, bool)
      want[:, 2 * k:3 * k] = True
    else:
      want = np.zeros(x.shape, bool)
    np.testing.assert_array_equal(x.astype(bool), want, err_msg=name)
  # the Model, or the dict with its config, ask the family's description: the same answer
  for other in (M.head_parameter_mask(m, [(1, 2)]),
                M.head_parameter_mask(m.params, [(1, 2)], config=m.config)):
    jax.tree.map(np.testing.assert_array_equal, other, mask)
  # weight RMS over the unit weights = RMS of every q_proj and o_proj entry in HF layout
  ref = convert.params_to_hf(m.params, m.config)
  sq = [ref[f"model.layers.{i}.self_attn.{p}_proj.weight"].astype(np.float64) ** 2
        for i in range(3) for p in ("q", "o")]
  want = np.sqrt(sum(s.sum() for s in sq) / sum(s.size for s in sq))
  assert M.unit_weight_rms(m) == pytest.approx(want, rel=1e-12)
  with pytest.raises(ValueError, match="layers/attn/q"):
    M.head_parameter_mask({"layers": {"attn": {"o": m.params["layers"]["attn"]["o"]}}}, [0])


def test_params_view_equals_the_nnx_param_state():
  m = M.init(M.load_config("default"), seed=1)
  state = nnx.to_pure_dict(nnx.state(m, nnx.Param))
  assert jax.tree.structure(state) == jax.tree.structure(m.params)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(m.params)):
    assert a is b


def test_models_are_built_from_the_family_modules():
  from synergy_jax.models import gemma, gpt2, gpt_neox, llama, modules
  cases = [(R.CONFIGS, "llama", llama.Block, modules.RMSNorm, modules.GatedMLP),
           (F.CONFIGS, "gpt2", gpt2.Block, modules.LayerNorm, modules.MLP),
           (F.CONFIGS, "gpt_neox_seq", gpt_neox.Block, modules.LayerNorm, modules.MLP),
           (F.CONFIGS, "gemma3_text", gemma.Block, modules.GemmaRMSNorm, modules.GatedMLP)]
  for configs, name, block, norm, mlp in cases:
    cfg = M.ModelConfig.from_hf(configs[name]().to_dict())
    m = M.abstract(cfg)
    assert type(m.layers) is block and type(m.layers.attn_norm) is norm, name
    assert isinstance(m.layers.attn, modules.Attention) and type(m.layers.mlp) is mlp, name
    assert type(m.final_norm) is norm, name
    # one stacked Block: every parameter has the leading layer axis
    for x in jax.tree.leaves(nnx.state(m.layers, nnx.Param)):
      assert x.shape[0] == cfg.num_layers, name
  gemma3 = M.abstract(M.ModelConfig.from_hf(F.CONFIGS["gemma3_text"]().to_dict()))
  assert isinstance(gemma3.layers.attn.q_norm, modules.GemmaRMSNorm)
  assert gemma3.layers.attn.rope == "local_global" and gemma3.layers.post_mlp_norm is not None


def test_contract_paths_name_parameters_of_the_state():
  """Every unit path and shard-axis path of the dense contract names an nnx.Param of some
  family's state (a renamed module attribute would otherwise silently drop a unit leaf or a
  sharding annotation)."""
  from synergy_jax.models import contract
  paths = set()
  for builder, name in FAMILY_MODELS:
    cfg = M.ModelConfig.from_hf((R if builder is R.build else F).CONFIGS[name]().to_dict())
    state = nnx.to_pure_dict(nnx.state(M.abstract(cfg), nnx.Param))
    paths |= {"/".join(str(k.key) for k in p) for p, _ in
              jax.tree_util.tree_flatten_with_path(state)[0]}
    for up in M.FAMILIES[cfg.family].units(cfg):
      assert "/".join(up.path) in paths, (name, up.path)
  assert set(contract.DENSE_SHARD_AXES) <= paths, set(contract.DENSE_SHARD_AXES) - paths


def test_model_from_params_is_strict():
  cfg = M.load_config("default")
  p = M.init(cfg, seed=0).params
  attn = dict(p["layers"]["attn"])
  del attn["k"]
  with pytest.raises(ValueError, match=r"lack leaf layers/attn/k"):
    M.Model(cfg, {**p, "layers": {**p["layers"], "attn": attn}})
  with pytest.raises(ValueError, match=r"leaves \['layers/attn/extra'\] are not part"):
    M.Model(cfg, {**p, "layers": {**p["layers"], "attn": {**p["layers"]["attn"],
                                                          "extra": np.zeros(3)}}})
  with pytest.raises(ValueError, match=r"layers/mlp/down has shape \(6, 64, 192\)"):
    M.Model(cfg, {**p, "layers": {**p["layers"], "mlp": {**p["layers"]["mlp"],
                                                         "down": p["layers"]["mlp"]["up"]}}})


def test_display_renders():
  m = M.init(M.load_config("default").replace(num_layers=2, layer_windows=(0, 0)))
  text = repr(m)
  assert "Block(" in text and "Attention(" in text and "GatedMLP(" in text
  assert "out_sharding=(None, None, 'model', None)" in text  # attn.q (L, D, N, K)
  pytest.importorskip("treescope")
  import treescope
  nnx.display(m)  # treescope in a notebook, text here
  assert len(treescope.render_to_html(m)) > 1000
