"""The two decoding forms of the deepseek_v2 family's multi-head latent attention
(deepseek_v2.Attention, mla_config.DECODE_KINDS): "absorbed" (the default; W_UK folded into the
query, W_UV applied after the attention-weighted latent sum) and "expanded" (kv_b applied to
every cached latent). Tiny random transformers DeepseekV2ForCausalLM models (float32, YaRN,
q_lora_rank None and set): a decoding step's logits equal transformers' within 1e-4 in both
forms; greedy generation, head norms and cached = uncached for the expanded form (the default
form is covered by test_models_moe_deepseek.py); the forms agree on tokens, head outputs, head
masks and mean ablation; the absorbed step never builds per-slot keys/values."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

import families_torch_refs as F
import moe_torch_refs as R
from models_torch_refs import pair_factory, torch_logits
from synergy_jax import models as M
from synergy_jax.models import decoder, deepseek_v2

KINDS = ("absorbed", "expanded")


def _build(name):
  cfg = R.config(name)
  cfg.vocab_size = F.VOCAB  # the shared generation checks draw prompt tokens from it
  torch.manual_seed(0)
  tm = R.randomize(transformers.DeepseekV2ForCausalLM(cfg).eval(), seed=21, std=0.2)
  tm.generation_config.eos_token_id = None  # all NEW tokens, as ours
  tm.generation_config.pad_token_id = 0
  return tm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  return pair_factory(_build, tmp_path_factory)


def _step(m, ids, token):
  """One decoding step after a cached prompt pass (both jitted as generate does): logits
  (B, V) of `token` (B,) at position P, per-head outputs (B, L, N, V) of that step."""
  b, p = ids.shape
  valid = jnp.ones((b, p), bool)
  pos = decoder.positions_from_mask(valid)

  @jax.jit
  def run(m, ids, token):
    cache = decoder.empty_cache(m.config, pos, valid, 3, jnp.float32)
    _, cache, *_ = decoder.run(m, ids, pos, valid, cache=cache, logits_at="none")
    logits, _, _, heads, _ = decoder.run(
        m, token[:, None], jnp.full((b, 1), p, jnp.int32), jnp.ones((b, 1), bool), cache=cache,
        slot=p, capture="all", capture_outputs=True)
    return logits[:, 0], heads[:, :, 0]
  return run(m, jnp.asarray(ids), jnp.asarray(token))


@pytest.mark.parametrize("name", ["deepseek_v2_group", "deepseek_v2_greedy"])
def test_decode_step_logits_match_transformers_in_both_forms(pair, name):
  tm, m, _ = pair(name)
  assert m.config.mla.decode == "absorbed"  # the default
  rs = np.random.RandomState(3)
  ids = rs.randint(3, F.VOCAB - 3, size=(2, 18))  # the step's position 18 is past YaRN's 16
  token = rs.randint(3, F.VOCAB - 3, size=(2,))
  ref = torch_logits(tm, np.concatenate([ids, token[:, None]], axis=1))[:, -1]
  assert ref.std() > 0.1
  heads = {}
  for kind in KINDS:
    logits, heads[kind] = map(np.asarray, _step(deepseek_v2.with_decode(m, kind), ids, token))
    assert np.isfinite(logits).all()
    np.testing.assert_allclose(logits, ref, atol=1e-4, rtol=0, err_msg=kind)
  assert heads["absorbed"].shape == (2, 3, 4, 6)  # (B, L, N, V): per-head outputs, not latents
  np.testing.assert_allclose(heads["absorbed"], heads["expanded"], atol=1e-5, rtol=0)


def test_expanded_form_matches_transformers_and_uncached(pair):
  tm, m, _ = pair("deepseek_v2_group")
  me = deepseek_v2.with_decode(m, "expanded")
  F.check_greedy_and_head_norms(tm, me)
  F.check_cached_equals_uncached(me)


def test_forms_agree_on_generation_with_head_masks_and_mean_ablation(pair):
  _, m, _ = pair("deepseek_v2_greedy")
  forms = {kind: deepseek_v2.with_decode(m, kind) for kind in KINDS}
  ids, mask = F.left_pad(F.prompts([4, 9, 6], seed=5))
  hm = np.ones((3, 4), np.float32)
  hm[1, 2], hm[2, 0] = 0.0, 0.4
  means = np.random.default_rng(0).normal(size=(3, 4, 6)).astype(np.float32)
  # (no mask: test_decode_step_... and test_models_moe_deepseek.py)
  for kw in ({"head_mask": hm}, {"head_mask": hm, "head_means": means}):
    r = {k: M.generate(f, ids, mask, max_new_tokens=12, capture_outputs=True, **kw)
         for k, f in forms.items()}
    np.testing.assert_array_equal(np.asarray(r["absorbed"].tokens),
                                  np.asarray(r["expanded"].tokens))
    out = {k: np.asarray(v.head_outputs) for k, v in r.items()}
    assert np.isfinite(out["absorbed"]).all()
    np.testing.assert_allclose(out["absorbed"], out["expanded"], atol=1e-5, rtol=0,
                               err_msg=str(sorted(kw)))
    if "head_mask" in kw and "head_means" not in kw:
      assert not out["absorbed"][:, 1, 2].any()  # the ablated head reads exactly 0


def test_absorbed_step_builds_no_per_slot_keys_or_values(pair):
  """The expanded step computes k_nope|v for every cache slot, (B, C', N, P + V); the absorbed
  one does not (it attends over the (B, C', C) latents directly)."""
  _, m, _ = pair("deepseek_v2_greedy")
  ids = np.random.RandomState(1).randint(3, F.VOCAB - 3, size=(2, 6))
  per_slot = "f32[2,9,4,14]"  # B 2, C' = 6 + 3 slots, N 4, P + V = 8 + 6
  text = {kind: str(jax.make_jaxpr(lambda m, i, t: _step(m, i, t))(
      deepseek_v2.with_decode(m, kind), ids, ids[:, 0])) for kind in KINDS}
  # the prompt pass (S = 6 > 1) is expanded in both forms: count the step's extra ones
  assert text["expanded"].count(per_slot) > text["absorbed"].count(per_slot)


def test_decode_kind_errors_name_the_culprit(pair):
  m = pair("deepseek_v2_greedy")[1]
  with pytest.raises(ValueError, match=r"MLAConfig\.decode='fast' is not known"):
    deepseek_v2.with_decode(m, "fast")
  llama = M.init(M.ModelConfig.from_hf(transformers.LlamaConfig(
      vocab_size=11, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
      num_attention_heads=2, num_key_value_heads=2).to_dict()))
  with pytest.raises(ValueError, match=r"the model's family is 'llama'"):
    deepseek_v2.with_decode(llama, "absorbed")
  # not part of the HF config: the written config reads back with the default form
  me = deepseek_v2.with_decode(m, "expanded")
  assert M.ModelConfig.from_hf(me.config.to_hf()) == dataclasses.replace(
      me.config, mla=dataclasses.replace(me.config.mla, decode="absorbed"))
