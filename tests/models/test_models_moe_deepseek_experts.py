"""Expert capture of the deepseek_v2 family through `models.score(...).expert_norms`, against the
norms of transformers' own expert modules on each MoE layer's input (forward pre-hooks).

expert_norms (B, L_moe, E + S, T): the E routed experts in router order, then the S shared
experts, at the positions whose logits produce continuation tokens 0 .. T-1 (as head_norms).
"dense" (default) = ‖E_e(x_t)‖ for every expert at every token; "routed" = ‖g_e(x_t) E_e(x_t)‖,
0 where the router did not pick e (shared experts: ungated, the same as dense).

NOTE: the capture itself (decoder/generation returning expert_norms, Attend.record_experts) is
built by the moefam branch; this file passes only once that branch is merged."""
import numpy as np
import pytest

import families_torch_refs as F
from models_torch_refs import pair_factory
from synergy_jax import models as M
from test_models_moe_deepseek import _build, torch_expert_norms

PROMPT, NEW = 5, 8


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  return pair_factory(_build, tmp_path_factory)


@pytest.mark.parametrize("name", ["group", "greedy"])
def test_score_expert_norms_match_torch_expert_modules(pair, name):
  tm, m, _ = pair(name)
  c = m.config
  seq = F.prompts([PROMPT + NEW], seed=7)[0]
  ref = torch_expert_norms(tm, seq[None], c.moe.moe_layers)
  dense = np.stack([d for _, d, _ in ref])  # (L_moe, S, E + H)
  routed = np.stack([r for _, _, r in ref])
  at = slice(PROMPT - 1, PROMPT - 1 + NEW)  # positions producing continuation tokens
  units = c.moe.num_experts + c.moe.num_shared_experts
  s = M.score(m, seq[None], [PROMPT])
  got = np.asarray(s.expert_norms)
  assert got.shape == (1, len(c.moe.moe_layers), units, NEW)
  assert np.isfinite(got).all() and dense.std() > 0.05
  np.testing.assert_allclose(got[0], dense[:, at].transpose(0, 2, 1), atol=1e-4, rtol=1e-4)
  r = M.score(m, seq[None], [PROMPT], expert_activity="routed")
  got_r = np.asarray(r.expert_norms)[0]
  np.testing.assert_allclose(got_r, routed[:, at].transpose(0, 2, 1), atol=1e-4, rtol=1e-4)
  zero = got_r[:, :c.moe.num_experts] == 0  # unselected routed experts read exactly 0
  assert (zero.sum(1) == c.moe.num_experts - 3).all()  # top-3 of 8 at every token
