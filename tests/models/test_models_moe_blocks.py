"""MoE feed-forward parity with transformers' sparse MoE blocks (Mixtral, Qwen2-MoE, Qwen3-MoE,
DeepSeek-V2) in float32: the block output and the expert activity (against torch's own expert
math) within 4x the float32 rounding torch's block shows against its own float64 run
(float32_bounds.py; a fixed atol fitted one CPU's summation order and failed on another);
expert_mask ablation and expert perturbation act only through the chosen expert."""
import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers.models.deepseek_v2 import modeling_deepseek_v2 as DS
from transformers.models.mixtral import modeling_mixtral as MX
from transformers.models.qwen2_moe import modeling_qwen2_moe as Q2
from transformers.models.qwen3_moe import modeling_qwen3_moe as Q3

import compile_count
import float32_bounds as B
import moe_torch_refs as R
from synergy_jax.models import moe

ATOL = 1e-5
BLOCKS = {"mixtral": (MX.MixtralSparseMoeBlock, "mixtral"),
          "qwen2_moe": (Q2.Qwen2MoeSparseMoeBlock, "qwen2_moe"),
          "qwen2_moe_norm": (Q2.Qwen2MoeSparseMoeBlock, "qwen2_moe"),
          "qwen3_moe": (Q3.Qwen3MoeSparseMoeBlock, "qwen3_moe"),
          "deepseek_v2_greedy": (DS.DeepseekV2Moe, "deepseek_v2"),
          "deepseek_v2_group": (DS.DeepseekV2Moe, "deepseek_v2")}


# one compiled call per configuration (op-by-op dispatch of the module is several times slower)
def _moe_forward(m, x, mask):
  return m(x, expert_mask=mask)


_call = jax.jit(_moe_forward)


def _pair(name, seed=0):
  """(torch block, our MoEFeedForward with the same weights, spec, x (B, S, D) torch)."""
  cls, mt = BLOCKS[name]
  cfg = R.config(name)
  block = R.randomize(cls(cfg).eval(), seed)
  spec = moe.moe_from_hf(cfg.to_dict())
  ours = nnx.eval_shape(lambda: moe.MoEFeedForward(spec, rngs=nnx.Rngs(seed)))
  tensors = {f"mlp.{k}": R.np32(v) for k, v in block.state_dict().items()}
  moe.assign(ours, moe.moe_weights_from_hf(tensors, "mlp", mt, spec))
  x = torch.randn(2, 7, cfg.hidden_size, generator=torch.Generator().manual_seed(seed + 1))
  return block, ours, spec, x


def _shared_outputs(block, name, x2d, spec):
  """(T, H, D) torch shared-expert outputs and (T, H) their coefficients c_h, in x2d's dtype."""
  if name.startswith("qwen2"):
    z = R.npy(block.shared_expert(x2d))[:, None]
    c = R.npy(torch.sigmoid(block.shared_expert_gate(x2d)))
    return z, c
  # DeepSeek: one fused MLP of width H*F; unit h is the MLP made of its h-th slice, built and
  # evaluated by torch here (its outputs must sum to the fused MLP's output).
  h, f = spec.moe.num_shared_experts, spec.moe.expert_intermediate_size
  fused = block.shared_experts
  outs = []
  for j in range(h):
    mlp = DS.DeepseekV2MLP(block.config, intermediate_size=f).to(x2d.dtype)
    with torch.no_grad():
      mlp.gate_proj.weight.copy_(fused.gate_proj.weight[j * f:(j + 1) * f])
      mlp.up_proj.weight.copy_(fused.up_proj.weight[j * f:(j + 1) * f])
      mlp.down_proj.weight.copy_(fused.down_proj.weight[:, j * f:(j + 1) * f])
      outs.append(R.npy(mlp(x2d)))
  z = np.stack(outs, axis=1)
  with torch.no_grad():
    whole = R.npy(fused(x2d))
  # the slices add up to the fused MLP (ATOL in float32, scaled by the epsilon in float64)
  tol = ATOL * np.finfo(z.dtype).eps / np.finfo(np.float32).eps
  np.testing.assert_allclose(z.sum(1), whole, atol=tol, rtol=0)
  return z, np.ones(z.shape[:2], z.dtype)


@torch.no_grad()
def _torch_side(block, name, spec, x):
  """torch's block output (B, S, D), dense and routed activity (B, S, units) and the dense gates
  (T, E), all in x's dtype (the block must be in that dtype too)."""
  out = R.npy(block(x))
  x2d = x.reshape(-1, x.shape[-1])
  y = R.every_expert_output(block.experts, x2d)  # (T, E, D)
  g = R.dense_gates(block.gate, x2d)  # (T, E)
  norms = np.linalg.norm(y, axis=-1)
  dense, routed = [norms], [np.abs(g) * norms]
  if spec.moe.num_shared_experts:
    z, c = _shared_outputs(block, name, x2d, spec)
    zn = np.linalg.norm(z, axis=-1)
    dense.append(zn)
    routed.append(np.abs(c) * zn)
  shape = x.shape[:2] + (spec.num_units,)
  return (out, np.concatenate(dense, -1).reshape(shape), np.concatenate(routed, -1).reshape(shape),
          g)


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_output_and_expert_activity_match_torch(name):
  block, ours, spec, x = _pair(name)
  want32, dense32, routed32, g = _torch_side(block, name, spec, x)
  want64, dense64, routed64, g64 = _torch_side(copy.deepcopy(block).double(), name, spec,
                                               x.double())
  # both precisions route every token to the same experts (else the comparison is meaningless)
  np.testing.assert_array_equal(g != 0, g64 != 0)
  got = _call(ours, jnp.asarray(R.np32(x)), None)
  out = np.asarray(got.out)
  assert np.abs(want64).max() > 1e-2
  assert got.dense.shape == (2, 7, spec.num_units)
  B.assert_within_reference_rounding(out, want32, want64, what=f"{name} block output")
  B.assert_within_reference_rounding(got.dense, dense32, dense64, what=f"{name} dense activity")
  B.assert_within_reference_rounding(got.routed, routed32, routed64,
                                     what=f"{name} routed activity")
  # routed activity is exactly 0 where the router did not choose the expert, and k per token
  e = spec.moe.num_experts
  chosen = np.asarray(got.routed)[..., :e] > 0
  assert (chosen.sum(-1) == spec.moe.experts_per_token).all()
  np.testing.assert_array_equal(chosen, g.reshape(2, 7, e) != 0)


def test_expert_mask_ablates_only_the_chosen_expert():
  block, ours, spec, x = _pair("qwen2_moe_norm", seed=3)
  xj = jnp.asarray(R.np32(x))
  x2d = x.reshape(-1, x.shape[-1])
  y = R.every_expert_output(block.experts, x2d)
  g = R.dense_gates(block.gate, x2d)
  z, c = _shared_outputs(block, "qwen2_moe_norm", x2d, spec)
  full = _call(ours, xj, jnp.ones(spec.num_units))
  with compile_count.compilations("_moe_forward") as compiled:
    e = spec.moe.num_experts
    for unit in (1, e):  # a routed expert, then the shared expert
      mask = np.ones(spec.num_units, np.float32)
      mask[unit] = 0.0
      got = _call(ours, xj, jnp.asarray(mask))
      removed = (g[:, unit, None] * y[:, unit] if unit < e else c[:, :1] * z[:, 0])
      want = np.asarray(full.out) - removed.reshape(full.out.shape)
      np.testing.assert_allclose(np.asarray(got.out), want, atol=ATOL, rtol=0)
      np.testing.assert_array_equal(np.asarray(got.routing.gates), np.asarray(full.routing.gates))
      assert float(np.abs(np.asarray(got.dense)[..., unit]).max()) == 0.0
      others = np.arange(spec.num_units) != unit
      np.testing.assert_array_equal(np.asarray(got.dense)[..., others],
                                    np.asarray(full.dense)[..., others])
    assert compiled() == 0  # a new mask is a new traced input, not a compile
    _call(ours, xj[:1], jnp.ones(spec.num_units))  # a new shape: the counter does count
    assert compiled() == 1
  with pytest.raises(ValueError, match=r"expert_mask must have shape .*\(7,\)"):
    ours(xj, expert_mask=jnp.ones(6))


@pytest.mark.parametrize("unit", [2, 8])  # routed expert 2; shared unit 8 - 8 = 0 (greedy: H=2)
def test_perturbation_changes_only_that_experts_weights(unit):
  _, ours, spec, x = _pair("deepseek_v2_greedy", seed=5)
  before = nnx.to_pure_dict(nnx.state(ours, nnx.Param))
  before = jax.tree.map(np.asarray, before)
  sigma = 0.1
  noised = jax.jit(moe.perturb_expert)(ours, unit, sigma, jax.random.key(7))
  after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(noised, nnx.Param)))
  # the input module is unchanged
  jax.tree.map(np.testing.assert_array_equal,
               jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(ours, nnx.Param))), before)
  e = spec.moe.num_experts
  group, j = ("experts", unit) if unit < e else ("shared", unit - e)
  owned = np.concatenate([before[group][k][j].ravel() for k in ("gate", "up", "down")])
  rms = np.sqrt(np.mean(owned.astype(np.float64) ** 2))
  deltas = []
  for path, b in jax.tree_util.tree_leaves_with_path(before):
    a = after
    for p in path:
      a = a[p.key]
    keys = tuple(p.key for p in path)
    if keys[0] == group and keys[1] in ("gate", "up", "down"):
      rest = np.delete(np.arange(b.shape[0]), j)
      np.testing.assert_array_equal(a[rest], b[rest])
      assert (a[j] != b[j]).all(), keys
      deltas.append((a[j] - b[j]).ravel())
    else:
      np.testing.assert_array_equal(a, b, err_msg=str(keys))
  d = np.concatenate(deltas).astype(np.float64)
  # relative noise: std sigma * rms_u over ~1200 entries (5 standard errors of the std)
  assert abs(d.std() / (sigma * rms) - 1) < 5 / np.sqrt(2 * d.size)
  rms_fn = jax.jit(moe.unit_weight_rms, static_argnums=2)
  np.testing.assert_allclose(float(rms_fn(before, unit, e)), rms, rtol=1e-5)
  with pytest.raises(ValueError, match=r"expert unit 10 is out of range for 8 routed \+ 2 shared"):
    moe.perturb_expert(ours, 10, sigma, jax.random.key(7))
  # the output changes only through that expert: with it ablated, both models agree
  xj = jnp.asarray(R.np32(x))
  mask = jnp.ones(spec.num_units).at[unit].set(0.0)
  np.testing.assert_allclose(np.asarray(_call(noised, xj, mask).out),
                             np.asarray(_call(ours, xj, mask).out), atol=1e-6, rtol=0)
  ones = jnp.ones(spec.num_units)
  assert np.abs(np.asarray(_call(noised, xj, ones).out)
                - np.asarray(_call(ours, xj, ones).out)).max() > 1e-4


def test_group_limited_top_k_differs_from_greedy_and_stays_in_groups():
  """On the same logits, group-limited routing picks experts from <= topk_group groups and
  differs from plain greedy top-k somewhere (so the parity test above exercised it)."""
  spec = moe.moe_from_hf(R.config("deepseek_v2_group").to_dict())
  logits = jax.random.normal(jax.random.key(0), (4, 16, spec.moe.num_experts)) * 2.0
  grouped = moe.route(logits, spec)
  greedy_spec = dataclasses.replace(spec, moe=dataclasses.replace(
      spec.moe, topk_method="greedy", n_group=1, topk_group=1))
  greedy = moe.route(logits, greedy_spec)
  r = spec.moe
  groups = np.asarray(grouped.indices) // (spec.moe.num_experts // r.n_group)
  assert max(len(set(row)) for row in groups.reshape(-1, groups.shape[-1])) <= r.topk_group
  assert (np.sort(np.asarray(grouped.indices), -1) != np.sort(np.asarray(greedy.indices), -1)).any()
  # weights: softmax probabilities of the chosen experts times routed_scaling_factor (no renorm)
  p = np.asarray(jax.nn.softmax(logits, -1))
  chosen = np.take_along_axis(p, np.asarray(grouped.indices), -1)
  np.testing.assert_allclose(np.asarray(grouped.weights), chosen * spec.moe.routed_scaling_factor,
                             rtol=1e-6)
