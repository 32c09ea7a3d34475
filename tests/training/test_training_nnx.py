"""Training over the module's nnx.Param state: a jitted step on a tiny model lowers the loss and
agrees with Flax's own nnx.Optimizer; checkpoints hold nnx.States and give them back; runs in the
previous checkpoint format resume; another layout is one clear error, never moved aside."""
import os
import pathlib
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx

import compile_count
from synergy_jax import models, training
from synergy_jax.training import checkpoints, loop, modelstate, steps

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)
DATA = pathlib.Path(__file__).resolve().parent / "data"


def _batch(seed=0, b=4, t=17):
  ids = np.random.default_rng(seed).integers(4, 100, size=(b, t)).astype(np.int32)
  return ids[:, :-1], ids[:, 1:], np.ones((b, t - 1), np.float32)


def test_jitted_nnx_step_lowers_the_loss_and_returns_the_module():
  model = models.init(training.default_model_config(**TINY), 0)
  split, params = modelstate.split(model)
  assert isinstance(params, nnx.State) and not jax.tree.leaves(split.rest)
  opt = optax.adam(1e-2)
  step = steps.make_step(loop.next_token_loss(), opt, split.graphdef)
  batch = _batch()
  p, o = params, opt.init(params)
  losses = []
  for _ in range(25):
    p, o, metrics = step(p, split.rest, o, batch, {})
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert losses[0] > 4.0  # about ln(100) for a fresh model
  assert losses[-1] < 0.5 * losses[0], losses
  # the trained module (nnx.merge of the state) computes the lowered loss when called
  trained = split.merge(p)
  assert isinstance(trained, models.Model)
  inputs, targets, weights = batch
  after = float(loop.weighted_nll(trained(inputs).logits, targets, weights))
  before = float(loop.weighted_nll(model(inputs).logits, targets, weights))
  assert np.isfinite(after) and after < 0.5 * before
  # one compiled program: a later step with new values does not retrace
  with compile_count.compilations("step") as compiled:
    step(p, split.rest, o, _batch(1), {})
  assert compiled() == 0


def test_pure_step_equals_flax_nnx_optimizer():
  """The same objective trained with nnx.Optimizer(model, tx, wrt=nnx.Param) under nnx.jit
  (Flax's own API on our module) reaches the same parameters as the pure split/merge step."""
  mc = training.default_model_config(**TINY)
  tx = optax.adamw(3e-3, weight_decay=0.1)
  loss_fn = loop.next_token_loss()
  batches = [_batch(s) for s in range(3)]

  model = models.init(mc, 0)
  split, p = modelstate.split(model)
  step = steps.make_step(loss_fn, tx, split.graphdef)
  o = tx.init(p)
  for b in batches:
    p, o, _ = step(p, split.rest, o, b, {})

  flax_model = models.init(mc, 0)
  optimizer = nnx.Optimizer(flax_model, tx, wrt=nnx.Param)

  @nnx.jit
  def flax_step(m, optimizer, b):
    loss, grads = nnx.value_and_grad(lambda m: loss_fn(m, b)[0])(m)
    optimizer.update(m, grads)
    return loss

  for b in batches:
    assert np.isfinite(float(flax_step(flax_model, optimizer, b)))
  got = jax.tree.leaves(nnx.state(flax_model, nnx.Param))
  want = jax.tree.leaves(p)
  assert len(got) == len(want)
  moved = 0
  for a, w, w0 in zip(got, want, jax.tree.leaves(modelstate.params_of(model))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(w), rtol=1e-5, atol=1e-7)
    moved += int(np.any(np.asarray(w) != np.asarray(w0)))
  assert moved == len(want)  # every leaf trained, so the comparison is not of initial values


def test_checkpoint_round_trip_of_nnx_state(tmp_path):
  model = models.init(training.default_model_config(**TINY), 0)
  params = modelstate.params_of(model)
  opt = loop.make_optimizer(training.TrainConfig(steps=4, warmup_steps=1))
  state = {"params": params, "opt_state": opt.init(params)}
  state = {**state, "params": jax.tree.map(lambda x: x * 1.5, state["params"])}
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 3, state)
  mngr.close()
  back = checkpoints.restore(tmp_path / "ck", 3, jax.eval_shape(lambda: state))
  assert isinstance(back["params"], nnx.State)
  assert jax.tree.structure(back) == jax.tree.structure(state)  # incl. variable metadata
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # what is stored is the plain dict of the state: its checksum is the pure tree's
  assert np.array_equal(checkpoints.checksum(modelstate.to_pure(back)),
                        checkpoints.checksum(modelstate.to_pure(state)))


def _old_cfg():
  return training.TrainConfig(steps=4, batch_size=2, seq_len=128, learning_rate=1e-2,
                              warmup_steps=1, end_learning_rate=1e-3, save_every=2, eval_every=4,
                              eval_examples=1, log_every=1)


def _old_mc():
  return training.default_model_config(hidden_size=8, intermediate_size=16, num_layers=2,
                                       num_heads=2, head_dim=4)


def _npz_by_path(path, params):
  """The arrays of an npz keyed by jax.tree_util.keystr of the old params dict's paths, in the
  order of ``params`` (an nnx.State whose pure dict has those paths)."""
  stored = np.load(path)
  pure = nnx.to_pure_dict(params)
  keys = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(pure)[0]]
  return keys, stored


def test_previous_format_run_resumes_or_is_refused_in_one_line(tmp_path):
  """A run written by the previous training code (optax over the plain params dict; made by
  data/make_old_format_run.py) holds the same tree as today's nnx.Param state whenever the
  module's state layout is the old params layout: it then resumes from step 2 with exactly the
  stored parameters and ends where the old code's uninterrupted run ended. If the module's
  layout has changed, the resume fails with one LayoutMismatch line naming the folder."""
  run = tmp_path / "run"
  shutil.copytree(DATA / "old_format_run" / "run", run)
  mc, cfg = _old_mc(), _old_cfg()
  params0 = modelstate.params_of(models.init(mc, cfg.seed))
  keys, step2 = _npz_by_path(DATA / "old_format_run" / "params_step2.npz", params0)
  if set(keys) != set(step2.files):
    with pytest.raises(checkpoints.LayoutMismatch, match=r"step 2 in .*checkpoints.* another "
                       r"training-state layout") as err:
      training.train(mc, cfg, run, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert checkpoints.steps(run / "checkpoints") == [2]  # not moved aside
    return
  target = jax.eval_shape(lambda: {"params": params0,
                                   "opt_state": loop.make_optimizer(cfg).init(params0)})
  restored = checkpoints.restore(run / "checkpoints", 2, target)
  assert isinstance(restored["params"], nnx.State)
  for k, x in zip(keys, jax.tree.leaves(restored["params"])):
    np.testing.assert_array_equal(np.asarray(x), step2[k], err_msg=k)  # bit-exact restore
  messages = []
  res = training.train(mc, cfg, run, log=messages.append)
  assert any("resuming" in m and "step 2" in m for m in messages)
  assert res.step == 4
  _, final = _npz_by_path(DATA / "old_format_run" / "final_params_step4.npz", params0)
  for k, x in zip(keys, jax.tree.leaves(res.params)):
    # two more steps of the same optimisation; the old code computed the logits through
    # logits_fn, today's through the module call: float32 sums may associate differently
    np.testing.assert_allclose(np.asarray(x), final[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_other_layout_is_one_line_error_and_never_quarantined(tmp_path):
  model = models.init(training.default_model_config(**TINY), 0)
  params = modelstate.params_of(model)
  pure = nnx.to_pure_dict(params)
  first = sorted(pure)[0]
  renamed = {**{k: v for k, v in pure.items() if k != first}, first + "_renamed": pure[first]}
  mngr = checkpoints.manager(tmp_path / "ck")
  checkpoints.save(mngr, 5, {"params": renamed})
  mngr.close()
  target = jax.eval_shape(lambda: {"params": params})
  with pytest.raises(checkpoints.LayoutMismatch, match=(
      rf"step 5 in .*ck.* another training-state layout .*1 leaves missing \[params/{first}"
      rf".*1 unexpected \[params/{first}_renamed")) as err:
    checkpoints.restore(tmp_path / "ck", 5, target)
  assert "\n" not in str(err.value) and len(str(err.value)) < 600
  with pytest.raises(checkpoints.LayoutMismatch):
    checkpoints.latest_good(tmp_path / "ck", target, fall_back=True)
  assert checkpoints.steps(tmp_path / "ck") == [5]
  assert not os.path.exists(str(tmp_path / "ck") + ".damaged")
