"""GRPO: the loss against a hand computation, its on-policy gradient against REINFORCE with a
group-mean baseline, zero advantage and zero gradient for a group of equal rewards, and no
recompilation from step to step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synergy_jax import models, training
from synergy_jax.pipeline.ablation import backend_compiles
from synergy_jax.training import finetune, freeze, grpo, modelstate, tuning

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def test_group_advantages_closed_form():
  r = np.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
  a = grpo.group_advantages(r)
  # group 0: mean 0.5, population std 0.5 -> ±0.5 / 0.5001
  np.testing.assert_allclose(a[0], np.array([1, -1, -1, 1]) * 0.5 / (0.5 + 1e-4))
  # group 1: mean 0.75, std sqrt(3)/4
  s = np.sqrt(3) / 4
  np.testing.assert_allclose(a[1], np.array([0.25, 0.25, 0.25, -0.75]) / (s + 1e-4))
  assert np.array_equal(a[2], np.zeros(4))  # identical rewards: exactly zero
  np.testing.assert_allclose(grpo.group_advantages(r, std_normalize=False)[1],
                             [0.25, 0.25, 0.25, -0.75])
  with pytest.raises(ValueError, match="prompt 0, sample 1"):
    grpo.group_advantages(np.array([[1.0, np.nan]]))


def _hand_loss(logp, old, ref, adv, mask, eps, beta, aggregation):
  b, t = logp.shape
  terms = np.zeros((b, t))
  for i in range(b):
    for j in range(t):
      ratio = np.exp(logp[i, j] - old[i, j])
      clipped = min(max(ratio, 1 - eps), 1 + eps)
      surr = min(ratio * adv[i], clipped * adv[i])
      d = ref[i, j] - logp[i, j]
      terms[i, j] = -(surr - beta * (np.exp(d) - d - 1))
  if aggregation == "token":
    return (terms * mask).sum() / mask.sum()
  if aggregation == "sequence":
    return np.mean([(terms[i] * mask[i]).sum() / mask[i].sum() for i in range(b)])
  return (terms * mask).sum() / (b * t)


@pytest.mark.parametrize("aggregation", ["token", "sequence", "constant"])
def test_loss_matches_hand_computation(aggregation):
  logp = np.log(np.array([[0.5, 0.2, 0.9], [0.1, 0.6, 0.3]]))
  old = np.log(np.array([[0.3, 0.24, 0.9], [0.2, 0.4, 0.3]]))   # ratios 1.67, .83, 1, .5, 1.5
  ref = np.log(np.array([[0.4, 0.3, 0.5], [0.3, 0.5, 0.2]]))
  adv = np.array([1.2, -0.7])
  mask = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
  got, aux = grpo.grpo_loss(jnp.asarray(logp), jnp.asarray(old), jnp.asarray(ref),
                            jnp.asarray(adv), jnp.asarray(mask), clip_eps=0.2, beta=0.1,
                            aggregation=aggregation)
  want = _hand_loss(logp, old, ref, adv, mask, 0.2, 0.1, aggregation)
  assert np.isfinite(float(got))
  np.testing.assert_allclose(float(got), want, rtol=1e-5, atol=1e-6)  # float32 terms of size ~1
  # ratios outside [0.8, 1.2] among the 5 masked tokens: 1.67, 0.5, 1.5 (0.83 is inside)
  np.testing.assert_allclose(float(aux["clip_frac"]), 3 / 5, rtol=1e-6)


def test_on_policy_gradient_is_reinforce_with_group_baseline():
  """With π_old = π (μ = 1), no clipping and β = 0, ∇loss = −(1/N) Σ_i A_i Σ_t ∇log π(o_it),
  A_i = r_i − mean_g r: REINFORCE with the group mean as baseline. Closed form for a softmax
  policy: ∇_θ log softmax(θ)[o] = onehot(o) − softmax(θ)."""
  rng = np.random.default_rng(1)
  b, t, v = 4, 3, 5
  theta = jnp.asarray(rng.normal(size=(b, t, v)), jnp.float32)
  tokens = rng.integers(0, v, size=(b, t))
  mask = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)
  rewards = np.array([[1.0, 0.0, 1.0, 1.0]])
  adv = grpo.group_advantages(rewards, std_normalize=False)[0]

  def loss(th):
    lp = jnp.take_along_axis(jax.nn.log_softmax(th), jnp.asarray(tokens)[..., None], -1)[..., 0]
    return grpo.grpo_loss(lp, jax.lax.stop_gradient(lp), lp, jnp.asarray(adv, jnp.float32),
                          mask, clip_eps=1e9, beta=0.0)[0]

  got = np.asarray(jax.grad(loss)(theta))
  probs = np.asarray(jax.nn.softmax(theta))
  want = np.zeros((b, t, v))
  for i in range(b):
    for j in range(t):
      want[i, j] = -adv[i] * mask[i, j] * (np.eye(v)[tokens[i, j]] - probs[i, j]) / mask.sum()
  assert np.all(np.isfinite(got))
  np.testing.assert_allclose(got, want, atol=1e-7)
  assert np.abs(want).max() > 1e-3


def _tiny(cfg_kw=None):
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  tok = models.load_tokenizer("default")
  cfg = tuning.TuneConfig(method="grpo", steps=6, warmup_steps=0, batch_size=2, group_size=4,
                          families=("add",), levels=(2,), **(cfg_kw or {}))
  return model, tok, cfg


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_equal_rewards_give_zero_gradient(beta):
  model, tok, cfg = _tiny({"beta": beta})
  split, params = modelstate.split(model)
  b = grpo.sample_batch(model, tok, cfg, 0)
  assert not b["correct"].any()  # a random model solves nothing: every group is all 0
  assert np.array_equal(b["advantages"], np.zeros_like(b["advantages"]))
  t_new = tuning.answer_budget(cfg)
  lp = grpo.make_scorer(model, t_new)(params, split.rest, b["tokens"], b["prompt_lengths"])
  loss = grpo.make_policy_loss(cfg, t_new)
  batch = (b["tokens"], b["prompt_lengths"], b["mask"], b["advantages"], lp, lp)
  grads = jax.grad(lambda p: loss(split.merge(p), batch)[0])(params)
  assert jax.tree.leaves(grads)
  for g in jax.tree.leaves(grads):
    assert np.all(np.asarray(g) == 0.0)  # policy = reference, so the k3 term is flat too


def test_steps_do_not_recompile():
  model, tok, cfg = _tiny()
  opt = finetune.make_optimizer(cfg, model)
  mask = freeze.entry_mask(model, [[0, 0]])
  step_fn = grpo.make_step_fn(model, tok, cfg, grpo.make_programs(model, cfg, opt), mask)
  params = modelstate.params_of(model)
  state = {"params": params, "opt_state": opt.init(params)}
  for s in range(2):
    state, metrics = step_fn(state, s)
  before = backend_compiles()
  for s in range(2, 5):
    state, metrics = step_fn(state, s)
  assert backend_compiles() == before
  assert np.isfinite(float(metrics["loss"]))
