"""The MoE families on a real multi-device run: tiny random Mixtral, Qwen2-MoE (shared expert,
dense and MoE layers) and DeepSeek-V2 (MLA, dense then MoE segment) models placed with
models.shard_model over a (data 2, model 4) mesh of the 8 simulated CPU devices
(tests/conftest.py) generate the same greedy tokens, head norms and expert norms as the
unsharded model (norms, of size up to ~15 here, 1e-5 relative as in the cached-vs-uncached
checks: GSPMD sums in another order), and score log-probabilities that are, sharded and not, within
4x the float32 rounding transformers' own model shows against its float64 run on the same rows
(float32_bounds.py; a fixed 1e-5 atol fitted one CPU's summation order and failed on another);
the routed experts' tensors are really split over the expert axis (each device holds E / 4 of
them), attention tensors (MLA's kv_b included) over heads."""
import copy

import jax
import numpy as np
import pytest
import torch
import transformers
from jax.sharding import AxisType, Mesh

import families_torch_refs as F
import float32_bounds as B
import moe_torch_refs as R
from synergy_jax import models as M

NEW = 8
# Expert counts divisible by the model axis (4) so that the expert axis is split, not replicated.
_BUILD = {
    "mixtral": (transformers.MixtralForCausalLM, "mixtral", {"num_local_experts": 8}),
    "qwen2_moe": (transformers.Qwen2MoeForCausalLM, "qwen2_moe", {"num_experts": 8}),
    "deepseek_v2": (transformers.DeepseekV2ForCausalLM, "deepseek_v2_group", {}),
}
# name -> (params path of a routed expert tensor, its expert axis, params path of a head-split
# attention tensor, its head axis)
_SPLIT = {
    "mixtral": (("layers", "moe", "experts", "gate"), 1, ("layers", "attn", "q"), 2),
    "qwen2_moe": (("moe_1", "moe", "experts", "up"), 1, ("dense_0", "attn", "q"), 2),
    "deepseek_v2": (("moe_layers", "mlp", "experts", "down"), 1,
                    ("moe_layers", "attn", "kv_b"), 2),
}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  cache = {}

  def get(name):
    if name not in cache:
      cls, base, change = _BUILD[name]
      cfg = R.config(base)
      for k, v in change.items():
        setattr(cfg, k, v)
      torch.manual_seed(0)
      hf = R.randomize(cls(cfg).eval(), seed=5, std=0.25)
      d = tmp_path_factory.mktemp(name)
      hf.save_pretrained(d)
      cache[name] = M.load(d), hf
    return cache[name]
  return get


@torch.no_grad()
def _torch_logprobs(hf, sequences, prompt_lengths, new):
  """(B, new, V) log-probabilities of transformers' model for each row alone (padding removed)
  at the positions whose logits chose the new tokens, in the model's dtype."""
  out = []
  for row, p in zip(np.asarray(sequences), np.asarray(prompt_lengths)):
    ids = row[row.shape[0] - new - p:]  # the real tokens: prompt then continuation
    logits = hf(torch.tensor(ids[None])).logits[0, p - 1:-1]
    out.append(torch.log_softmax(logits, -1).numpy())
  return np.stack(out)


def _leaf(params, path):
  for k in path:
    params = params[k]
  return params


@pytest.mark.parametrize("name", sorted(_BUILD))
def test_sharded_moe_model_equals_unsharded(loaded, name):
  assert len(jax.devices()) == 8
  m, hf = loaded(name)
  e = m.config.moe.num_experts
  ids, mask = F.left_pad(F.prompts([3, 6, 4, 5], seed=11))
  ref = M.generate(m, ids, mask, max_new_tokens=NEW)
  ref_s = M.score(m, ref.sequences, ref.prompt_lengths, expert_activity="routed")
  assert ref.expert_norms is not None and ref_s.expert_norms is not None

  mesh = Mesh(np.array(jax.devices()).reshape(2, 4), ("data", "model"),
              axis_types=(AxisType.Auto, AxisType.Auto))
  ms = M.shard_model(m, mesh)
  expert_path, expert_axis, head_path, head_axis = _SPLIT[name]
  for path, axis, size in ((expert_path, expert_axis, e),
                           (head_path, head_axis, m.config.num_heads)):
    x = _leaf(ms.params, path)
    assert len(x.sharding.device_set) == 8, path
    shards = {tuple(s.data.shape) for s in x.addressable_shards}
    want = list(_leaf(m.params, path).shape)
    want[axis] = size // 4
    assert shards == {tuple(want)}, (path, shards)  # a quarter per device, replicated over data
  assert _leaf(ms.params, expert_path[:-2] + ("router", "w")).sharding.is_fully_replicated

  r = M.generate(ms, ids, mask, max_new_tokens=NEW, mesh=mesh)
  np.testing.assert_array_equal(np.asarray(r.tokens), np.asarray(ref.tokens))
  np.testing.assert_allclose(np.asarray(r.head_norms), np.asarray(ref.head_norms), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(r.expert_norms), np.asarray(ref.expert_norms),
                             atol=1e-5, rtol=1e-5)
  s = M.score(ms, ref.sequences, ref.prompt_lengths, mesh=mesh, expert_activity="routed")
  lp32 = _torch_logprobs(hf, ref.sequences, ref.prompt_lengths, NEW)
  lp64 = _torch_logprobs(copy.deepcopy(hf).double(), ref.sequences, ref.prompt_lengths, NEW)
  for what, got in (("sharded", s), ("unsharded", ref_s)):
    B.assert_within_reference_rounding(got.logprobs, lp32, lp64,
                                       what=f"{name} {what} score logprobs")
  np.testing.assert_allclose(np.asarray(s.head_norms), np.asarray(ref_s.head_norms), atol=1e-5,
                             rtol=1e-5)
  np.testing.assert_allclose(np.asarray(s.expert_norms), np.asarray(ref_s.expert_norms),
                             atol=1e-5, rtol=1e-5)
  assert (np.asarray(ref_s.expert_norms) == 0).any()  # "routed": unchosen experts read 0
