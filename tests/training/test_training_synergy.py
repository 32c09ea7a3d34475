"""The ΦID training term (training/synergy.py): λ = 0 is the plain run bit for bit; one step with
λ ≠ 0 moves the term in the intended direction; the partner means equal all_pairs'; bad flags
are named."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from synergy_jax import models, phiid, training
from synergy_jax.training import data, loop, synergy

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=3, num_heads=2, head_dim=8)


def _cfg(**kw):
  base = dict(steps=3, batch_size=4, seq_len=128, learning_rate=1e-2, warmup_steps=1,
              end_learning_rate=1e-3, save_every=3, eval_every=3, eval_examples=1, log_every=1)
  base.update(kw)
  return training.TrainConfig(**base)


def test_weight_zero_is_the_plain_run_bit_for_bit(tmp_path):
  mc = training.default_model_config(**TINY)
  plain = training.train(mc, _cfg(), tmp_path / "plain", log=lambda s: None)
  zero = training.train(mc, _cfg(), tmp_path / "zero", log=lambda s: None,
                        objective=synergy.SynergyObjective(weight=0.0))
  leaves_a, leaves_b = jax.tree.leaves(plain.model.params), jax.tree.leaves(zero.model.params)
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b):
    assert np.array_equal(np.asarray(x), np.asarray(y))
  # the parameters did move (the comparison is not between two untouched inits)
  init = models.init(mc, 0).params
  assert any(not np.array_equal(np.asarray(a), np.asarray(b))
             for a, b in zip(jax.tree.leaves(init), leaves_a))
  # --synergy_weight=0 means no objective at all
  assert synergy.from_flags(0.0, "core", 3) is None
  # ... and its (unused) default target does not stop a plain run of a 2-layer model
  assert synergy.from_flags(0.0, "core", 2) is None


def test_one_step_moves_the_term_in_the_intended_direction():
  """A tiny model, one AdamW step (the run's optimizer) at λ = ±50, so the term dominates the
  task loss: J rises for λ > 0 and falls for λ < 0, measured by the same definition on the same
  batch. λ is a traced argument of ``weighted_loss`` (the function ``loss_fn`` closes over), so
  both signs share one compiled gradient."""
  mc = training.default_model_config(**TINY)
  model0 = models.init(mc, 0)
  params = model0.params
  b = data.batch(0, 0, 4, 128, 0.75)
  batch = (b["inputs"], b["targets"], b["weights"])
  cfg = _cfg(steps=10, warmup_steps=0, learning_rate=1e-4, weight_decay=0.0)
  opt = loop.make_optimizer(cfg)
  loss = synergy.weighted_loss(mc, series_len=32, rows=4)
  grad = jax.jit(jax.value_and_grad(lambda p, bt, lam: loss(model0.replace(params=p), bt, lam),
                                    has_aux=True))
  (_, aux0), _ = grad(params, batch, 0.0)
  j0 = float(aux0["synergy"])
  moved = {}
  for lam in (50.0, -50.0):
    (value, aux), g = grad(params, batch, lam)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(g))
    updates, _ = opt.update(g, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    (_, aux1), _ = grad(new, batch, lam)
    moved[lam] = float(aux1["synergy"])
  assert np.isfinite(j0) and all(np.isfinite(v) for v in moved.values())
  assert moved[50.0] > j0 > moved[-50.0], (j0, moved)
  # the objective's own loss_fn is this loss at its weight
  obj = synergy.SynergyObjective(weight=50.0, series_len=32, rows=4)
  v, aux = jax.jit(lambda p, bt: obj.loss_fn(mc)(model0.replace(params=p), bt))(params, batch)
  np.testing.assert_allclose(float(aux["synergy"]), j0, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(float(v),
                             float(aux["task_loss"]) - 50.0 * np.tanh(float(aux["synergy"])),
                             rtol=1e-5, atol=1e-5)


def test_partner_means_equal_all_pairs_and_gradients_are_finite():
  rng = np.random.default_rng(0)
  acts = rng.normal(size=(3, 6, 40)).cumsum(-1) * 0.1 + rng.normal(size=(3, 6, 40))
  syn, red = synergy.unit_sts_rtr(jnp.asarray(acts, jnp.float32))
  atoms = np.asarray(phiid.all_pairs(acts.astype(np.float32)), np.float64)
  for name, got in (("sts", syn), ("rtr", red)):
    m = np.array(atoms[..., phiid.ATOMS.index(name)])
    np.fill_diagonal(m, 0.0)
    np.testing.assert_allclose(np.asarray(got), m.sum(1) / 5, rtol=2e-4, atol=1e-5)
  # the core contrast by hand: layers 0, 1, 2 of 2 heads; middle third = layer 1
  beta = (np.asarray(syn) - np.asarray(red)).reshape(3, 2).mean(1)
  j = synergy.objective_of_acts(jnp.asarray(acts, jnp.float32), 3, 2)
  np.testing.assert_allclose(float(j), beta[1] - (beta[0] + beta[2]) / 2, rtol=1e-4, atol=1e-6)
  g = jax.grad(lambda a: synergy.objective_of_acts(a, 3, 2))(jnp.asarray(acts, jnp.float32))
  assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)


def test_safe_norm_has_zero_gradient_at_zero():
  h = jnp.array([[0.0, 0.0], [3.0, 4.0]])
  np.testing.assert_allclose(np.asarray(synergy.safe_norm(h)), [0.0, 5.0])
  g = jax.grad(lambda x: synergy.safe_norm(x).sum())(h)
  np.testing.assert_allclose(np.asarray(g), [[0.0, 0.0], [0.6, 0.8]])


def test_target_profile_and_errors():
  np.testing.assert_allclose(synergy.parse_target("0,1", 3), [0.0, 0.5, 1.0])
  np.testing.assert_allclose(synergy.parse_target("0,1,0", 5), [0, 0.5, 1, 0.5, 0])
  assert synergy.parse_target("core", 6) is None
  beta = jnp.array([0.0, 1.0, 2.0])
  np.testing.assert_allclose(float(synergy.objective_value(beta, np.array([0.0, 1.0, 0.0]))),
                             -4.0 / 3)
  with pytest.raises(ValueError, match="--synergy_target.*'core' or comma"):
    synergy.from_flags(1.0, "middle", 6)
  with pytest.raises(ValueError, match="--synergy_target.*>= 3 layers"):
    synergy.from_flags(1.0, "core", 2)
  with pytest.raises(ValueError, match="--synergy_target.*>= 2 finite"):
    synergy.from_flags(1.0, "1", 6)
  with pytest.raises(ValueError, match="--synergy_weight.*finite"):
    synergy.from_flags(float("nan"), "core", 6)


def test_a_degenerate_pair_is_left_out_with_finite_gradients():
  """Two copies of one series (a singular pair) do not poison the term: the partner means are
  those of the other pairs and the gradient is finite."""
  rng = np.random.default_rng(1)
  acts = rng.normal(size=(2, 6, 30)).astype(np.float32)
  acts[:, 5] = acts[:, 4]  # units 4 and 5: identical series in every row
  a = jnp.asarray(acts)
  syn, red = synergy.unit_sts_rtr(a)
  assert np.all(np.isfinite(np.asarray(syn))) and np.all(np.isfinite(np.asarray(red)))
  # unit 0's mean over its 5 partners is unaffected by the bad pair
  pairs = [np.asarray(phiid.phiid(acts[:, 0], acts[:, v])["sts"]).mean() for v in range(1, 6)]
  np.testing.assert_allclose(float(syn[0]), np.mean(pairs), rtol=1e-4)
  # unit 4's mean leaves out its pair with unit 5
  pairs4 = [np.asarray(phiid.phiid(acts[:, 4], acts[:, v])["sts"]).mean() for v in range(4)]
  np.testing.assert_allclose(float(syn[4]), np.mean(pairs4), rtol=1e-4)
  g = jax.grad(lambda x: synergy.objective_of_acts(x, 3, 2))(a)
  assert np.all(np.isfinite(np.asarray(g)))


def test_head_norms_from_score_are_differentiable_through_an_ablated_head():
  """The differentiable head-activity path of the public API: jax.grad of a function of
  ``models.score``'s teacher-forced head norms w.r.t. the parameters is finite (an ablated head's
  zero output has norm 0 and gradient 0, not NaN) and reaches the unablated heads' weights."""
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  tokens = np.random.default_rng(0).integers(4, 60, size=(2, 12)).astype(np.int32)
  mask = np.ones((mc.num_layers, mc.num_heads), np.float32)
  mask[0, 1] = 0.0

  def f(p):
    r = models.score(model.replace(params=p), tokens, np.array([4, 6]), continuation_length=6,
                     head_mask=mask)
    return jnp.sum(r.head_norms)

  g = jax.grad(f)(model.params)
  leaves = jax.tree.leaves(g)
  assert all(bool(jnp.isfinite(x).all()) for x in leaves)
  q = np.asarray(g["layers"]["attn"]["q"])  # (L, D, N, K)
  assert np.abs(q[0, :, 0]).max() > 0  # an unablated head's query weights get a gradient
  assert np.abs(q[0, :, 1]).max() == 0  # the ablated head's output (and norm) do not depend on it
