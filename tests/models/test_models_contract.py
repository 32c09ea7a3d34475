"""The family contract beyond dense single-stack models: layer segments, per-expert weights
(an expert index in weight specs), the typed MoE sub-config."""
import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file

import models_torch_refs as R
from synergy_jax import models as M
from synergy_jax.models import config as C
from synergy_jax.models import convert, llama
from synergy_jax.models import convert as cv


def _two_segment_weights(cfg):
  """llama's weights, per-layer ones split into a 'lower' (layers 0-1) and 'upper' segment."""
  out = []
  for w in llama.weights(cfg):
    out += ([dataclasses.replace(w, segment="lower"), dataclasses.replace(w, segment="upper")]
            if w.per_layer else [w])
  return out


def _expert_weights(cfg):
  """llama's weights plus a per-expert tensor, at experts/w1 of each layer."""
  return llama.weights(cfg) + [cv.linear("model.layers.{i}.mlp.experts.{e}.w1.weight",
                                         (5,), cfg.hidden_size, "experts/w1")]


class _Experts(nnx.Module):
  """Per-expert weights w1 (E, D, 5) (the expert axis after the layer axis of the stack)."""

  def __init__(self, maker, cfg):
    self.w1 = maker.param("w1", (cfg.moe.num_experts, cfg.hidden_size, 5))


class _ExpertBlock(llama.Block):
  """llama's Block holding per-expert weights too (its math ignores them: this family tests
  the layout of an expert axis, not routing)."""

  def __init__(self, maker, cfg):
    super().__init__(maker, cfg)
    self.experts = _Experts(maker.child("experts"), cfg)


def _register(name, **kw):
  fam = C.FAMILIES["llama"]
  return C.register_family(dataclasses.replace(fam, name=name, model_types=(), **kw))


_register("test_two_segments", weights=_two_segment_weights, segments=lambda cfg: (
    M.Segment("lower", 0, 2, llama.Block), M.Segment("upper", 2, cfg.num_layers, llama.Block)))
_register("test_experts", weights=_expert_weights, block=_ExpertBlock)


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
  tm = R.build("llama")  # 3 layers, GQA, biases, llama3 rope
  d = tmp_path_factory.mktemp("llama")
  tm.save_pretrained(d)
  return M.load(d), load_file(str(d / "model.safetensors"))


def test_two_segments_compute_what_one_stack_computes(llama_pair):
  m, tensors = llama_pair
  cfg = m.config.replace(family="test_two_segments")
  params = convert.params_from_hf(tensors, cfg)
  assert params["lower"]["attn"]["q"].shape[0] == 2 and params["upper"]["attn"]["q"].shape[0] == 1
  np.testing.assert_array_equal(params["upper"]["attn"]["q"][0],
                                np.asarray(m.params["layers"]["attn"]["q"][2]))
  back = convert.params_to_hf(params, cfg)
  assert set(back) == set(tensors)
  for k in tensors:
    np.testing.assert_array_equal(back[k], tensors[k], err_msg=k)
  seg = M.Model(cfg, jax.tree.map(np.asarray, params))
  # same math in a different compiled program: equal up to float32 rounding (as sharding.py's)
  ids = np.random.RandomState(1).randint(3, R.VOCAB, size=(2, 9))
  np.testing.assert_allclose(np.asarray(M.forward(seg, ids)), np.asarray(M.forward(m, ids)),
                             atol=1e-5, rtol=0)
  hm = np.ones((3, 4), np.float32)
  hm[2, 1] = 0.0  # a head in the second segment; the cache spans both segments
  a = M.generate(m, ids, max_new_tokens=6, head_mask=hm)
  b = M.generate(seg, ids, max_new_tokens=6, head_mask=hm)
  np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
  np.testing.assert_allclose(np.asarray(a.head_norms), np.asarray(b.head_norms), atol=1e-5)
  assert np.all(np.asarray(b.head_norms)[:, 2, 1] == 0.0)


def test_segments_must_tile_the_layers(llama_pair):
  m, _ = llama_pair
  fam = dataclasses.replace(C.FAMILIES["llama"], segments=lambda cfg: (
      M.Segment("layers", 0, 2, llama.Block),))
  with pytest.raises(ValueError, match="segments cover 2 of 3 layers"):
    fam.segments_of(m.config)


def test_expert_index_stacks_experts_strictly(llama_pair):
  m, tensors = llama_pair
  moe = M.MoEConfig(num_experts=3, experts_per_token=2, expert_intermediate_size=5,
                    moe_layers=(0, 1, 2))
  cfg = m.config.replace(family="test_experts", moe=moe)
  shapes = convert.hf_shapes(cfg)
  experts = sorted(n for n in shapes if ".experts." in n)
  assert experts == [f"model.layers.{i}.mlp.experts.{e}.w1.weight" for i in range(3)
                     for e in range(3)]
  rs = np.random.RandomState(0)
  full = dict(tensors, **{n: rs.randn(5, 64).astype(np.float32) for n in experts})
  params = convert.params_from_hf(full, cfg)
  assert params["layers"]["experts"]["w1"].shape == (3, 3, 64, 5)  # (L, E, D, F_e)
  np.testing.assert_array_equal(params["layers"]["experts"]["w1"][2, 1],
                                full["model.layers.2.mlp.experts.1.w1.weight"].T)
  back = convert.params_to_hf(params, cfg)
  for n in experts:
    np.testing.assert_array_equal(back[n], full[n], err_msg=n)
  gone = {k: v.shape for k, v in full.items() if k != "model.layers.1.mlp.experts.2.w1.weight"}
  with pytest.raises(ValueError, match=r"missing tensors \['model.layers.1.mlp.experts.2.w1"):
    convert.check_tensors(gone, cfg, "ckpt")
  extra = dict({k: v.shape for k, v in full.items()},
               **{"model.layers.0.mlp.experts.3.w1.weight": (5, 64)})
  with pytest.raises(ValueError, match=r"unexpected tensors \['model.layers.0.mlp.experts.3"):
    convert.check_tensors(extra, cfg, "ckpt")
  # init and the module know the expert axis too
  assert M.init(cfg).params["layers"]["experts"]["w1"].shape == (3, 3, 64, 5)
  assert M.init(cfg).layers.experts.w1.shape == (3, 3, 64, 5)
  with pytest.raises(ValueError, match="no moe sub-config"):
    convert.hf_shapes(cfg.replace(moe=None))


@pytest.mark.parametrize("kw,match", [
    (dict(experts_per_token=4), "experts_per_token=4 exceeds num_experts=3"),
    (dict(num_experts=0), "num_experts must be positive"),
    (dict(moe_layers=(2, 1)), "moe_layers must be distinct"),
    (dict(num_shared_experts=-1), "num_shared_experts must be >= 0"),
    (dict(routed_scaling_factor=float("nan")), "routed_scaling_factor"),
])
def test_moe_config_is_validated(kw, match):
  base = dict(num_experts=3, experts_per_token=2, expert_intermediate_size=5, moe_layers=(1,))
  with pytest.raises(ValueError, match=match):
    M.MoEConfig(**{**base, **kw})


def test_moe_layers_must_exist(llama_pair):
  m, _ = llama_pair
  moe = M.MoEConfig(num_experts=2, experts_per_token=1, expert_intermediate_size=4,
                    moe_layers=(1, 3))
  with pytest.raises(ValueError, match="MoE layers beyond num_layers=3"):
    m.config.replace(moe=moe)


def test_dense_cache_is_stored_heads_first(llama_pair):
  """The dense K/V cache is (L, B, M, C, K): Attend.cache writes token s of batch row b, kv
  head h into [layer, b, h, slot + s, :] (placed here with NumPy indexing) and leaves every
  other entry zero; a per-slot CacheEntry whose slot axis lies outside its shape is refused."""
  from synergy_jax.models import decoder
  from synergy_jax.models.contract import CacheEntry
  cfg = llama_pair[0].config
  L, M_, K = cfg.num_layers, cfg.num_kv_heads, cfg.head_dim
  valid = np.ones((2, 3), bool)
  pos = decoder.positions_from_mask(valid)
  cache = decoder.empty_cache(cfg, pos, valid, 4, np.float32)  # C = 3 + 4 slots
  assert {n: a.shape for n, a in cache.entries.items()} == {"k": (L, 2, M_, 7, K),
                                                            "v": (L, 2, M_, 7, K)}
  rs = np.random.RandomState(0)
  k, v = (rs.randn(2, 3, M_, K).astype(np.float32) for _ in range(2))  # (B, S, M, K)
  att = decoder.Attend(cfg, pos, valid, {}, 1, 0, cache.entries, (cache.pos, cache.valid), 2,
                       None, None)
  full = att.cache({"k": k, "v": v})
  for name, x in (("k", k), ("v", v)):
    want = np.zeros((L, 2, M_, 7, K), np.float32)
    for s in range(3):
      want[1, :, :, 2 + s, :] = x[:, s]
    np.testing.assert_array_equal(np.asarray(att.new_kv[name]), want)
    np.testing.assert_array_equal(np.asarray(full[name]), want[1])
  with pytest.raises(ValueError, match=r"CacheEntry\(4, 8\): slot_axis=3 is outside 0..2"):
    CacheEntry((4, 8), slot_axis=3)
