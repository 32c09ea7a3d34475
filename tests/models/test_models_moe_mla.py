"""DeepSeek-V2 multi-head latent attention against transformers' DeepseekV2Attention (q_lora_rank
None and set, YaRN on and off, attention biases), float32 atol 1e-5: outputs, per-head outputs
before o_proj (forward pre-hook), head_mask; YaRN tables against transformers' rope init."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.deepseek_v2 import modeling_deepseek_v2 as DS

import moe_torch_refs as R
from synergy_jax.models import moe
from synergy_jax.models.moe import mla, yarn

ATOL = 1e-5
CASES = {"q_lora_none_yarn": lambda: R.config("deepseek_v2_greedy"),
         "q_lora_set_yarn": lambda: R.config("deepseek_v2_group"),
         "q_lora_set_default_rope_bias": R.deepseek_plain}
_call = jax.jit(lambda m, x, pos, hm: m(x, pos, head_mask=hm))


def _pair(cfg, seed):
  attn = R.randomize(DS.DeepseekV2Attention(cfg, layer_idx=0).eval(), seed)
  mcfg = moe.mla_from_hf(cfg.to_dict())
  ours = nnx.eval_shape(lambda: moe.MultiHeadLatentAttention(mcfg, rngs=nnx.Rngs(0)))
  tensors = {f"self_attn.{k}": R.np32(v) for k, v in attn.state_dict().items()}
  moe.assign(ours, moe.mla_weights_from_hf(tensors, "self_attn", mcfg))
  return attn, ours, mcfg


@pytest.mark.parametrize("case", sorted(CASES))
def test_mla_matches_transformers(case):
  cfg = CASES[case]()
  attn, ours, mcfg = _pair(cfg, seed=11)
  assert (mcfg.q_lora_rank is None) == (case == "q_lora_none_yarn")
  b, s, offset = 2, 9, 10  # positions 10 .. 18 reach past YaRN's original length (16)
  g = torch.Generator().manual_seed(12)
  x = torch.randn(b, s, cfg.hidden_size, generator=g)
  pos = torch.arange(offset, offset + s)[None].expand(b, s)
  captured = {}
  hook = attn.o_proj.register_forward_pre_hook(lambda m, a: captured.update(heads=a[0]))
  with torch.no_grad():
    freqs = DS.DeepseekV2RotaryEmbedding(cfg)(x, pos)
    want, _ = attn(hidden_states=x, attention_mask=R.causal_additive_mask(b, s),
                   position_embeddings=freqs)
  hook.remove()
  got = _call(ours, jnp.asarray(R.np32(x)), jnp.asarray(pos.numpy(), jnp.int32), None)
  out = np.asarray(got.out)
  assert np.isfinite(out).all() and np.abs(R.np32(want)).max() > 1e-2
  np.testing.assert_allclose(out, R.np32(want), atol=ATOL, rtol=0)
  heads = R.np32(captured["heads"]).reshape(b, s, mcfg.num_heads, mcfg.v_head_dim)
  np.testing.assert_allclose(np.asarray(got.heads), heads, atol=ATOL, rtol=0)
  assert got.latent.shape == (b, s, mcfg.kv_lora_rank)
  assert got.rope_key.shape == (b, s, mcfg.qk_rope_head_dim)

  # head_mask: zeroing head 1 removes exactly its o_proj contribution
  hm = jnp.ones(mcfg.num_heads).at[1].set(0.0)
  masked = _call(ours, jnp.asarray(R.np32(x)), jnp.asarray(pos.numpy(), jnp.int32), hm)
  o = np.asarray(ours.o.get_value())  # (N, V, D)
  np.testing.assert_allclose(np.asarray(masked.out), out - heads[:, :, 1] @ o[1], atol=ATOL,
                             rtol=0)
  assert float(np.abs(np.asarray(masked.heads)[:, :, 1]).max()) == 0.0


@pytest.mark.parametrize("truncate", [True, False])
def test_yarn_tables_and_softmax_scale_match_transformers(truncate):
  cfg = R.config("deepseek_v2_greedy")
  cfg.rope_parameters = {**cfg.rope_parameters, "truncate": truncate}
  inv, factor = ROPE_INIT_FUNCTIONS["yarn"](cfg)
  mcfg = moe.mla_from_hf(cfg.to_dict())
  ours_inv, ours_factor = mla.rope_tables(mcfg)
  assert ours_inv.shape == (mcfg.qk_rope_head_dim // 2,)
  np.testing.assert_allclose(ours_inv, inv.numpy(), rtol=1e-6, atol=0)
  assert ours_factor == pytest.approx(factor, rel=1e-12)
  assert factor != 1.0  # mscale != mscale_all_dim, so the factor is exercised
  hf_scale = DS.yarn_apply_mscale(cfg.rope_parameters, mcfg.qk_head_dim ** -0.5)
  assert mcfg.softmax_scale == pytest.approx(hf_scale, rel=1e-12)
  assert mcfg.softmax_scale != pytest.approx(mcfg.qk_head_dim ** -0.5)


def test_yarn_attention_factor_without_mscale_all_dim_follows_transformers():
  cfg = R.config("deepseek_v2_greedy")
  cfg.rope_parameters = {k: v for k, v in cfg.rope_parameters.items() if k != "mscale_all_dim"}
  _, factor = ROPE_INIT_FUNCTIONS["yarn"](cfg)
  assert yarn.yarn_attention_factor(cfg.rope_parameters, 64) == pytest.approx(factor)
  assert factor == pytest.approx(yarn.get_mscale(4.0))  # m(s, 1), not m(s, mscale)


def test_left_padding_leaves_real_tokens_unchanged():
  """A left-padded row (padding keys masked, positions counting real tokens only) gives the
  real tokens the same outputs as the unpadded row."""
  cfg = R.config("deepseek_v2_group")
  _, ours, mcfg = _pair(cfg, seed=3)
  x = jax.random.normal(jax.random.key(4), (1, 6, cfg.hidden_size))
  pad = 3
  xp = jnp.concatenate([jax.random.normal(jax.random.key(5), (1, pad, cfg.hidden_size)), x], 1)
  valid = jnp.arange(6 + pad)[None] >= pad
  pos = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0).astype(jnp.int32)
  run = jax.jit(lambda m, x, p, v: m(x, p, v))
  plain = run(ours, x, jnp.arange(6, dtype=jnp.int32)[None], jnp.ones((1, 6), bool))
  padded = run(ours, xp, pos, valid)
  assert np.isfinite(np.asarray(padded.out)).all()
  np.testing.assert_allclose(np.asarray(padded.out)[:, pad:], np.asarray(plain.out), atol=ATOL,
                             rtol=0)
  np.testing.assert_allclose(np.asarray(padded.heads)[:, pad:], np.asarray(plain.heads),
                             atol=ATOL, rtol=0)
