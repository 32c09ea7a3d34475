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
