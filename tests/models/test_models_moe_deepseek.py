"""A whole tiny DeepSeek-V2 (dense first layer, then MoE layers; MLA with YaRN; shared experts;
group-limited routing) composed from the moe building blocks in this test, against
transformers' DeepseekV2ForCausalLM: logits within 1e-4 (float32), and every MoE layer's expert
activity against torch's expert modules on that layer's own inputs (forward pre-hooks)."""
import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import nnx

import moe_torch_refs as R
from synergy_jax.models import moe, ops
from synergy_jax.models.moe import experts


def _build(cfg, model):
  hf = cfg.to_dict()
  spec, mcfg = moe.moe_from_hf(hf), moe.mla_from_hf(hf)
  t = {k: R.np32(v) for k, v in model.state_dict().items()}
  blocks = []
  for i in range(cfg.num_hidden_layers):
    p = f"model.layers.{i}"
    attn = nnx.eval_shape(lambda: moe.MultiHeadLatentAttention(mcfg, rngs=nnx.Rngs(0)))
    moe.assign(attn, moe.mla_weights_from_hf(t, f"{p}.self_attn", mcfg))
    if i in spec.moe.moe_layers:
      mlp = nnx.eval_shape(lambda: moe.MoEFeedForward(spec, rngs=nnx.Rngs(0)))
      moe.assign(mlp, moe.moe_weights_from_hf(t, f"{p}.mlp", "deepseek_v2", spec))
    else:  # the dense MLP as a single stacked expert
      mlp = {k: jnp.asarray(t[f"{p}.mlp.{k}_proj.weight"].T[None]) for k in ("gate", "up", "down")}
    blocks.append((jnp.asarray(t[f"{p}.input_layernorm.weight"]), attn,
                   jnp.asarray(t[f"{p}.post_attention_layernorm.weight"]), mlp))
  top = {k: jnp.asarray(t[k]) for k in ("model.embed_tokens.weight", "model.norm.weight",
                                        "lm_head.weight")}
  return spec, blocks, top


@jax.jit
def _forward(blocks, top, ids, eps):
  x = top["model.embed_tokens.weight"][ids]
  acts = []
  for attn_norm, attn, mlp_norm, mlp in blocks:
    x = x + attn(ops.rms_norm(x, attn_norm, eps)).out
    h = ops.rms_norm(x, mlp_norm, eps)
    if isinstance(mlp, dict):
      x = x + experts.expert_outputs(h, mlp["gate"], mlp["up"], mlp["down"], "silu")[:, :, 0]
    else:
      res = mlp(h)
      acts.append((res.dense, res.routed))
      x = x + res.out
  x = ops.rms_norm(x, top["model.norm.weight"], eps)
  logits = jnp.einsum("BSD,VD->BSV", x, top["lm_head.weight"], precision="highest")
  return logits, acts


def test_tiny_deepseek_v2_logits_and_expert_activity_match_transformers():
  cfg = R.config("deepseek_v2_group")
  torch.manual_seed(0)
  model = R.randomize(transformers.DeepseekV2ForCausalLM(cfg).eval(), seed=21, std=0.2)
  spec, blocks, top = _build(cfg, model)
  assert spec.moe.moe_layers == (1, 2)  # first_k_dense_replace = 1
  ids = torch.randint(3, R.VOCAB, (2, 12), generator=torch.Generator().manual_seed(22))
  inputs = {}
  hooks = [model.model.layers[i].mlp.register_forward_pre_hook(
      lambda m, a, i=i: inputs.update({i: a[0].detach()})) for i in spec.moe.moe_layers]
  with torch.no_grad():
    want = R.np32(model(ids).logits)
  for h in hooks:
    h.remove()
  logits, acts = _forward(blocks, top, jnp.asarray(ids.numpy()), cfg.rms_norm_eps)
  got = np.asarray(logits)
  assert np.isfinite(got).all() and want.std() > 0.1
  np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
  assert (got.argmax(-1) == want.argmax(-1)).all()
  for (dense, routed), i in zip(acts, spec.moe.moe_layers):
    block = model.model.layers[i].mlp
    x2d = inputs[i].reshape(-1, cfg.hidden_size)
    norms = np.linalg.norm(R.every_expert_output(block.experts, x2d), axis=-1)  # (T, E)
    g = R.dense_gates(block.gate, x2d)
    with torch.no_grad():
      shared = np.linalg.norm(R.np32(block.shared_experts(x2d)), axis=-1)[:, None]  # H = 1
    np.testing.assert_allclose(np.asarray(dense).reshape(-1, spec.num_units),
                               np.concatenate([norms, shared], -1), atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(routed).reshape(-1, spec.num_units),
                               np.concatenate([np.abs(g) * norms, shared], -1), atol=1e-4,
                               rtol=0)
