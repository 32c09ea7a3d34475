"""KL divergence, ablation masks, one-compilation divergence curves, AUCs and head sets.

A tiny pure-jax fake model stands in for ``models.score`` (so these tests do not depend on the
model stack); one test also runs the real ``models.score`` on a tiny random Llama.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from synergy_jax import interventions as iv

V, D, L, H, T = 11, 8, 3, 2, 4


@dataclasses.dataclass(frozen=True)
class FakeConfig:
  num_layers: int = L
  num_heads: int = H


@dataclasses.dataclass(frozen=True)
class FakeModel:
  config: FakeConfig
  params: dict


@dataclasses.dataclass
class FakeResult:
  logprobs: jax.Array


TRACES = {"n": 0}


def fake_score(model, tokens, prompt_lengths, *, head_mask=None):
  """Residual stack of per-head tanh maps; head_mask (L, H) scales each head's output."""
  TRACES["n"] += 1
  p = model.params
  x = p["embed"][tokens]  # (B, S, D)
  mask = jnp.ones((L, H)) if head_mask is None else head_mask
  for layer in range(L):
    heads = jnp.tanh(jnp.einsum("bsd,hde->bhse", x, p["w"][layer]))  # (B, H, S, D)
    x = x + jnp.einsum("bhse,h->bse", heads, mask[layer])
  logits = x @ p["unembed"]  # (B, S, V)
  s = tokens.shape[1]
  return FakeResult(jax.nn.log_softmax(logits[:, s - T - 1:s - 1], -1))


def host_score(model, tokens, prompt_lengths, *, head_mask=None):
  """Like fake_score but needs concrete tokens (as models.score does)."""
  tokens = np.asarray(tokens)
  return fake_score(model, jnp.asarray(tokens), prompt_lengths, head_mask=head_mask)


def _model(seed=0):
  k = jax.random.split(jax.random.PRNGKey(seed), 3)
  return FakeModel(FakeConfig(), {"embed": jax.random.normal(k[0], (V, D)),
                                  "w": jax.random.normal(k[1], (L, H, D, D)) * 0.5,
                                  "unembed": jax.random.normal(k[2], (D, V))})


def _tokens(b=3, s=7, seed=1):
  return jax.random.randint(jax.random.PRNGKey(seed), (b, s), 0, V), jnp.full((b,), s - T)


def test_kl_hand_example_and_identity():
  p = np.array([[[0.5, 0.5, 0.0]]])
  q = np.array([[[0.25, 0.75, 0.0]]])
  with np.errstate(divide="ignore"):
    lp, lq = jnp.log(p), jnp.log(q)
  kl = iv.kl_per_position(lp, lq)
  expected = 0.5 * np.log(2) + 0.5 * np.log(0.5 / 0.75)
  np.testing.assert_allclose(kl, [[expected]], rtol=1e-6)
  np.testing.assert_allclose(kl, [[scipy.special.rel_entr(p, q).sum()]], rtol=1e-6)
  assert float(iv.kl_per_position(lp, lp)[0, 0]) == 0.0  # zero-probability terms stay finite
  rng = np.random.default_rng(0)
  lr = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(2, 5, V))), -1)
  assert float(iv.mean_kl(lr, lr)) == 0.0


def test_kl_valid_mask_ignores_padding():
  rng = np.random.default_rng(1)
  lp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(2, 3, V))), -1)
  lq = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(2, 3, V))), -1)
  valid = jnp.array([[1, 1, 0], [1, 0, 0]], bool)
  per = iv.kl_per_prompt(lp, lq, valid)
  full = np.asarray(iv.kl_per_position(lp, lq))
  np.testing.assert_allclose(per, [full[0, :2].mean(), full[1, 0]], rtol=1e-6)
  np.testing.assert_allclose(iv.mean_kl(lp, lq, valid), np.mean([full[0, :2].mean(), full[1, 0]]),
                             rtol=1e-6)
  assert np.isnan(iv.kl_per_prompt(lp, lq, jnp.zeros((2, 3), bool))).all()


def test_head_masks_hand_example():
  m = iv.head_masks([3, 0, 2, 1], [0.0, 0.25, 0.5, 1.0], num_layers=2, num_heads=2)
  np.testing.assert_array_equal(m[0], [[1, 1], [1, 1]])
  np.testing.assert_array_equal(m[1], [[1, 1], [1, 0]])  # unit 3 = (1, 1)
  np.testing.assert_array_equal(m[2], [[0, 1], [1, 0]])
  np.testing.assert_array_equal(m[3], np.zeros((2, 2)))
  with pytest.raises(ValueError, match="permutation"):
    iv.head_masks([0, 0, 1, 2], [0.5], 2, 2)
  np.testing.assert_array_equal(iv.units_mask([1, 2], 2, 2), [[1, 0], [0, 1]])


def _direct_divergence(model, tokens, lens, order, fractions):
  """Reference: loop over fractions, scipy relative entropy on numpy probabilities."""
  base = np.exp(np.asarray(fake_score(model, tokens, lens).logprobs, np.float64))
  out = []
  for f in fractions:
    k = int(np.floor(f * L * H + 0.5))
    mask = np.ones(L * H)
    mask[np.asarray(order)[:k]] = 0
    q = np.exp(np.asarray(fake_score(model, tokens, lens,
                                     head_mask=jnp.asarray(mask.reshape(L, H))).logprobs,
                          np.float64))
    out.append(scipy.special.rel_entr(base, q).sum(-1).mean())
  return np.array(out)


@pytest.mark.parametrize("score_fn,batch_size", [(fake_score, None), (host_score, 2)])
def test_behaviour_divergence_matches_direct_loop(score_fn, batch_size):
  model = _model()
  tokens, lens = _tokens()
  order = np.array([4, 1, 5, 0, 2, 3])
  fr = np.linspace(0, 1, 5)
  curve = iv.behaviour_divergence(model, tokens, lens, order, fr, score_fn=score_fn,
                                  batch_size=batch_size)
  assert curve.mean[0] == 0.0 and np.all(curve.per_prompt[0] == 0.0)
  assert np.all(curve.mean[1:] > 0)
  np.testing.assert_allclose(curve.mean, _direct_divergence(model, tokens, lens, order, fr),
                             rtol=2e-4, atol=1e-6)


def test_all_orders_one_compilation():
  model = _model()
  tokens, lens = _tokens()
  fn = iv.make_divergence_fn(model, score_fn=fake_score)
  orders = iv.ablation_orders(np.arange(L * H, dtype=float), n_random=3, seed=0)
  fr = np.linspace(0, 1, 4)
  TRACES["n"] = 0
  c1 = iv.divergence_curves(model, tokens, lens, orders, fr, divergence_fn=fn)
  n_first = TRACES["n"]
  assert n_first > 0
  orders2 = iv.ablation_orders(-np.arange(L * H, dtype=float), n_random=3, seed=1)
  tokens2, lens2 = _tokens(seed=5)
  c2 = iv.divergence_curves(model, tokens2, lens2, orders2, fr, divergence_fn=fn)
  assert TRACES["n"] == n_first  # new orders, seeds and batch: no retrace
  assert c1["random"].mean.shape == (3, 4) and c1["synergistic"].mean.shape == (1, 4)
  assert c1["random"].per_prompt.shape == (3, 4, 3)
  # The ascending score's most-synergistic order is the descending score's most-redundant one.
  np.testing.assert_allclose(c1["synergistic"].mean, iv.divergence_curves(
      model, tokens, lens, {"x": orders2["redundant"]}, fr, divergence_fn=fn)["x"].mean)
  assert c2["random"].auc.shape == (3,)


def test_auc_and_ratio():
  assert iv.auc([0, 0.5, 1], [0, 1, 1]) == pytest.approx(0.25 + 0.5)
  with pytest.raises(ValueError, match="increasing"):
    iv.auc([0, 1, 0.5], [0, 1, 1])
  r = iv.auc_ratio(2.0, [1.0, 1.0, 1.0], n_boot=100)
  assert r["ratio"] == 2.0 and r["ci_low"] == 2.0 and r["ci_high"] == 2.0
  r = iv.auc_ratio(2.0, [0.5, 1.5, 1.0, 1.0], n_boot=500, seed=0)
  assert r["ratio"] == 2.0 and r["ci_low"] < 2.0 < r["ci_high"]
  assert r["ci_low"] >= 2.0 / 1.5 and r["ci_high"] <= 2.0 / 0.5


def test_perturbation_head_sets():
  score = np.array([5.0, -1.0, 3.0, 0.0, 2.0, -4.0, 1.0, 4.0])  # 2 layers × 4 heads
  sets = iv.perturbation_head_sets(score, 2, 4, fraction=0.25, n_random=5, seed=0)
  np.testing.assert_array_equal(sets["synergistic_units"], [0, 7])
  np.testing.assert_array_equal(sets["redundant_units"], [1, 5])
  np.testing.assert_array_equal(sets["synergistic"], [[0, 0], [1, 3]])
  assert len(sets["random"]) == 5 and all(r.shape == (2, 2) for r in sets["random"])
  with pytest.raises(ValueError, match="2 layers × 4 heads"):
    iv.perturbation_head_sets(score[:7], 2, 4)


def test_real_models_score_zero_at_no_ablation():
  from synergy_jax import models
  cfg = models.ModelConfig(family="llama", model_type="llama", vocab_size=50, hidden_size=32,
                           intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=8, initializer_range=0.2)
  model = models.init(cfg, seed=0)
  tokens = np.random.default_rng(0).integers(1, 50, size=(2, 9))
  lens = np.array([5, 3])
  order = np.arange(8)[::-1].copy()
  fr = np.array([0.0, 0.25, 1.0])
  curve = iv.behaviour_divergence(model, tokens, lens, order, fr)
  assert curve.mean[0] == 0.0
  assert curve.mean[1] > 0 and curve.mean[2] > 0
  mask = iv.head_masks(order, [0.25], 2, 4)[0]
  lp = models.score(model, tokens, lens).logprobs
  lq = models.score(model, tokens, lens, head_mask=jnp.asarray(mask)).logprobs
  np.testing.assert_allclose(curve.mean[1], float(iv.mean_kl(lp, lq)), rtol=1e-4)


def test_real_models_score_compiles_once_across_batches():
  """With the default scorer (models.score, traced via continuation_length), a new batch of the
  same shape and continuation length reuses the compilation, and matches a direct computation."""
  from synergy_jax import models
  cfg = models.ModelConfig(family="llama", model_type="llama", vocab_size=50, hidden_size=32,
                           intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=8, initializer_range=0.2)
  model = models.init(cfg, seed=1)
  fn = iv.make_divergence_fn(model)
  masks = iv.head_masks(np.arange(8), [0.0, 0.5], 2, 4)
  rng = np.random.default_rng(1)
  first = fn(rng.integers(1, 50, size=(2, 9)), np.array([5, 3]), masks)
  assert fn.compilations() == 1
  tokens = rng.integers(1, 50, size=(2, 9))
  lens = np.array([2, 5])  # same T = 9 - 5
  second = np.asarray(fn(tokens, lens, masks))
  assert fn.compilations() == 1  # no new compilation for the new batch
  assert np.all(np.asarray(first)[0] == 0) and np.all(second[0] == 0)
  lp = models.score(model, tokens, lens).logprobs
  lq = models.score(model, tokens, lens, head_mask=jnp.asarray(masks[1])).logprobs
  np.testing.assert_allclose(second[1], np.asarray(iv.kl_per_prompt(lp, lq)), rtol=1e-4)


def test_mean_kl_selects_prompts_by_mask_and_does_not_drop_nan():
  logp = jnp.log(jnp.array([[[0.5, 0.5]], [[0.9, 0.1]]]))  # (B=2, T=1, V=2)
  logq = jnp.log(jnp.array([[[0.25, 0.75]], [[0.9, 0.1]]]))
  kl0 = 0.5 * np.log(0.5 / 0.25) + 0.5 * np.log(0.5 / 0.75)  # closed form, prompt 0
  assert float(iv.mean_kl(logp, logq)) == pytest.approx(kl0 / 2, rel=1e-5)
  # Prompt 1 has no valid token: the mean is prompt 0's KL alone.
  valid = jnp.array([[True], [False]])
  assert float(iv.mean_kl(logp, logq, valid)) == pytest.approx(kl0, rel=1e-5)
  # A NaN log-prob in a prompt with valid tokens makes the mean NaN (it is not dropped).
  bad = logq.at[1, 0, 0].set(jnp.nan)
  assert np.isnan(float(iv.mean_kl(logp, bad)))
  mean, n = iv.finite_mean(np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]]))
  np.testing.assert_array_equal(n, [2, 0])
  assert mean[0] == 2.0 and np.isnan(mean[1])


# --------------------------------------------------------------------------------------------------
# Unit tables: heads and experts (mixture-of-experts models); real MoE models are exercised in
# tests/pipeline/test_pipeline_ablation_experts.py.
# --------------------------------------------------------------------------------------------------


def _heads_and_experts():
  """2 layers × 2 heads; layer 1 is an MoE layer with 2 routed experts and 1 shared one: units
  0-3 are the heads L0 H0, L0 H1, L1 H0, L1 H1, units 4-6 the experts L1 E0, L1 E1, L1 S0."""
  from synergy_jax.analysis.units import Units, concat
  return concat(Units.grid(2, 2), Units.experts(2, (1,), 2, 1)), iv.MaskLayout(2, 2, (1,), 3)


def test_unit_masks_place_heads_and_experts_hand_example():
  table, layout = _heads_and_experts()
  m = iv.unit_masks([6, 1, 4, 0, 2, 3, 5], [0.0, 2 / 7, 4 / 7, 1.0], table, layout)
  assert m.heads.shape == (4, 2, 2) and m.experts.shape == (4, 1, 3)
  np.testing.assert_array_equal(m.heads[0], np.ones((2, 2)))
  np.testing.assert_array_equal(m.experts[0], np.ones((1, 3)))
  # 2 of 7 ablated: unit 6 (the shared expert, expert grid column 2) and unit 1 (L0 H1).
  np.testing.assert_array_equal(m.heads[1], [[1, 0], [1, 1]])
  np.testing.assert_array_equal(m.experts[1], [[1, 1, 0]])
  # 4 of 7: also unit 4 (L1 E0) and unit 0 (L0 H0).
  np.testing.assert_array_equal(m.heads[2], [[0, 0], [1, 1]])
  np.testing.assert_array_equal(m.experts[2], [[0, 1, 0]])
  np.testing.assert_array_equal(m.heads[3], np.zeros((2, 2)))
  np.testing.assert_array_equal(m.experts[3], np.zeros((1, 3)))


def test_unit_selection_of_experts_leaves_heads_alone_and_names_bad_units():
  from synergy_jax.analysis.units import Units
  _, layout = _heads_and_experts()
  experts = Units.experts(2, (1,), 2, 1)  # units 0, 1, 2 = L1 E0, L1 E1, L1 S0
  sel = iv.unit_selection([2, 0], experts, layout)
  np.testing.assert_array_equal(sel.heads, np.zeros((2, 2), bool))
  np.testing.assert_array_equal(sel.experts, [[True, False, True]])
  keep = sel.as_keep_mask()
  np.testing.assert_array_equal(keep.heads, np.ones((2, 2)))
  np.testing.assert_array_equal(keep.experts, [[0, 1, 0]])
  with pytest.raises(ValueError, match="unit 3 is out of range for 3 units"):
    iv.unit_selection([3], experts, layout)
  # Experts of layer 0, which is not an MoE layer of this model; or of a dense model.
  with pytest.raises(ValueError, match=r"unit 0 \(L0 E0\) is not a unit of this model"):
    iv.unit_masks([0, 1, 2], [0.5], Units.experts(2, (0,), 2, 1), layout)
  with pytest.raises(ValueError, match="no experts"):
    iv.unit_selection([0], experts, iv.MaskLayout(2, 2))
  with pytest.raises(ValueError, match=r"unit 2 \(L0 H2\) .*\(2 layers × 2 heads\)"):
    iv.unit_selection([0], Units.grid(2, 3), layout)


def test_perturbation_unit_sets_are_the_head_sets_units():
  score = np.array([5.0, -1.0, 3.0, 0.0, 2.0, -4.0, 1.0, 4.0])
  sets = iv.perturbation_unit_sets(score, fraction=0.25, n_random=4, seed=3)
  np.testing.assert_array_equal(sets["synergistic"], [0, 7])
  np.testing.assert_array_equal(sets["redundant"], [1, 5])
  heads = iv.perturbation_head_sets(score, 2, 4, fraction=0.25, n_random=4, seed=3)
  for r, h in zip(sets["random"], heads["random_units"]):
    np.testing.assert_array_equal(r, h)
    assert r.shape == (2,) and len(set(r.tolist())) == 2 and r.min() >= 0 and r.max() < 8


E = 3  # experts of the fake MoE layer (layer 1)


def fake_moe_score(model, tokens, prompt_lengths, *, head_mask, expert_mask=None):
  """fake_score plus an MoE layer after layer 1: E tanh experts (einsum letter x), each scaled
  by expert_mask (1, E)."""
  p = model.params
  x = p["embed"][tokens]
  for layer in range(L):
    heads = jnp.tanh(jnp.einsum("bsd,hde->bhse", x, p["w"][layer]))
    x = x + jnp.einsum("bhse,h->bse", heads, head_mask[layer])
    if layer == 1:
      experts = jnp.tanh(jnp.einsum("bsd,xde->bxse", x, p["experts"]))  # (B, E, S, D)
      em = jnp.ones((1, E)) if expert_mask is None else expert_mask
      x = x + jnp.einsum("bxse,x->bse", experts, em[0])
  s = tokens.shape[1]
  return FakeResult(jax.nn.log_softmax((x @ p["unembed"])[:, s - T - 1:s - 1], -1))


def test_divergence_of_heads_and_experts_matches_direct_loop():
  """Masks over a heads+experts table reach a custom scorer as head_mask and expert_mask; the
  curve equals a direct loop with scipy's relative entropy, and nothing ablated gives 0."""
  from synergy_jax.analysis.units import Units, concat
  model = _model()
  k = jax.random.PRNGKey(9)
  model = FakeModel(model.config, {**model.params,
                                   "experts": jax.random.normal(k, (E, D, D)) * 0.5})
  table = concat(Units.grid(L, H), Units.experts(L, (1,), E))
  layout = iv.MaskLayout(L, H, (1,), E)
  tokens, lens = _tokens()
  order = np.array([7, 0, 8, 3, 6, 1, 5, 2, 4])  # experts are units 6, 7, 8
  fr = np.linspace(0, 1, 4)
  masks = iv.unit_masks(order, fr, table, layout)
  fn = iv.make_divergence_fn(model, score_fn=fake_moe_score)
  got = np.asarray(fn(tokens, lens, masks)).mean(-1)
  base = np.exp(np.asarray(fake_moe_score(model, tokens, lens, head_mask=jnp.ones((L, H)))
                           .logprobs, np.float64))
  expected = []
  for f in fr:
    n_off = int(np.floor(f * 9 + 0.5))
    hm, em = np.ones(L * H), np.ones(E)
    for u in order[:n_off]:
      if u < L * H:
        hm[u] = 0
      else:
        em[u - L * H] = 0
    q = np.exp(np.asarray(fake_moe_score(model, tokens, lens, head_mask=hm.reshape(L, H),
                                         expert_mask=em[None]).logprobs, np.float64))
    expected.append(scipy.special.rel_entr(base, q).sum(-1).mean())
  assert got[0] == 0.0 and np.all(got[1:] > 0)
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-6)
  curves = iv.divergence_curves(model, tokens, lens, {"o": order}, fr, divergence_fn=fn,
                                units=table, layout=layout)
  np.testing.assert_allclose(curves["o"].mean[0], got, rtol=1e-6)
