"""Head-restricted AdamW over the module's nnx.Param state: frozen parameters come out
bit-identical (weight decay on), the selected heads' entries change, and frozen leaves carry no
optimizer state. Masks and labels come from the family's unit description, never a leaf name."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from synergy_jax import models, training
from synergy_jax.training import finetune, freeze, loop, modelstate, steps, tuning

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def _bits(x):
  return np.asarray(x, np.float32).view(np.uint32)


def _unit_leaves(mc):
  """The family's unit description: {leaf path: UnitParam} (paths into the nnx.Param state)."""
  return {up.path: up for up in models.FAMILIES[mc.family].units(mc)}


def test_frozen_entries_bit_identical_and_selected_change():
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  split, params = modelstate.split(model)
  cfg = tuning.TuneConfig(method="sft", steps=10, warmup_steps=0, learning_rate=1e-2,
                          weight_decay=0.5)
  opt = finetune.make_optimizer(cfg, model)
  heads = [[0, 1], [1, 0]]
  mask = freeze.entry_mask(model, heads)
  assert jax.tree.structure(mask) == jax.tree.structure(params)  # an nnx.State like params
  step = steps.make_step(loop.next_token_loss(), opt, split.graphdef)
  rng = np.random.default_rng(0)
  p, o = params, opt.init(params)
  for _ in range(3):
    ids = rng.integers(4, 100, size=(4, 17)).astype(np.int32)
    batch = (ids[:, :-1], ids[:, 1:], np.ones((4, 16), np.float32))
    p, o, metrics = step(p, split.rest, o, batch, {"entry_mask": mask})
  assert np.isfinite(float(metrics["loss"]))
  n_changed = 0
  flat = lambda s: dict(jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(s))[0])
  before_, after_, mask_ = flat(params), flat(p), flat(mask)
  assert before_.keys() == after_.keys() == mask_.keys()
  for name in before_:
    before, after, m = before_[name], after_[name], np.asarray(mask_[name])
    label = jax.tree_util.keystr(name)
    np.testing.assert_array_equal(_bits(after)[~m], _bits(before)[~m], err_msg=label)
    if m.any():
      changed = _bits(after)[m] != _bits(before)[m]
      assert changed.mean() > 0.9, label  # AdamW moves nearly every selected entry
      n_changed += int(changed.sum())
  # the selection: head (0, 1) and (1, 0) own q rows D*K each and o columns K*D each
  assert n_changed > 0.9 * 2 * 2 * TINY["hidden_size"] * TINY["head_dim"]
  # the tuned module holds the new state
  tuned = split.merge(p)
  for a, b in zip(jax.tree.leaves(nnx.state(tuned, nnx.Param)), jax.tree.leaves(p)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # leaves no head owns get no Adam moments (set_to_zero branch of the partition); the trainable
  # leaves are exactly the unit description's
  labels = nnx.to_pure_dict(freeze.leaf_labels(model))
  trainable = {tuple(getattr(k, "key", k) for k in path)
               for path, lab in jax.tree_util.tree_flatten_with_path(labels)[0]
               if lab == freeze.TRAIN}
  assert trainable == set(_unit_leaves(mc))
  n_state = sum(np.size(x) for x in jax.tree.leaves(o))
  n_trainable = sum(np.size(x) for x, lab in zip(jax.tree.leaves(nnx.to_pure_dict(params)),
                                                 jax.tree.leaves(labels)) if lab == freeze.TRAIN)
  assert n_state < 2 * n_trainable + 16  # mu and nu of the trainable leaves, plus counters


def test_masked_alone_would_leak_updates():
  """Why the partition: optax.masked passes the other leaves' updates through unchanged."""
  params = {"a": jnp.ones(3), "b": jnp.ones(3)}
  grads = {"a": jnp.ones(3), "b": jnp.ones(3)}
  opt = optax.masked(optax.sgd(1.0), {"a": True, "b": False})
  updates, _ = opt.update(grads, opt.init(params), params)
  assert float(updates["b"][0]) == 1.0  # raw gradient, not zero
  # restricted: with a mask of a few entries of one unit leaf, only those entries move
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  p = modelstate.params_of(model)
  restricted = freeze.restrict(optax.sgd(1.0), model)
  rng = np.random.default_rng(3)
  pure_mask = jax.tree.map(lambda x: np.zeros(np.shape(x), bool), nnx.to_pure_dict(p))
  path = models.FAMILIES[mc.family].units(mc)[0].path  # a leaf some unit owns entries of
  leaf = pure_mask
  for k in path[:-1]:
    leaf = leaf[k]
  leaf[path[-1]] = rng.random(leaf[path[-1]].shape) < 0.5
  m = modelstate.like(p, pure_mask)
  u, _ = restricted.update(jax.tree.map(jnp.ones_like, p), restricted.init(p), p, entry_mask=m)
  for upd, mm in zip(jax.tree.leaves(u), jax.tree.leaves(m)):
    upd, mm = np.asarray(upd), np.asarray(mm)
    np.testing.assert_array_equal(upd[~mm], 0.0)
    np.testing.assert_array_equal(upd[mm], -1.0)
  assert sum(int(np.sum(np.asarray(x))) for x in jax.tree.leaves(m)) > 0


def test_empty_selection_and_missing_mask_are_errors():
  mc = training.default_model_config(**TINY)
  model = models.init(mc, 0)
  with pytest.raises(ValueError, match="empty"):
    freeze.entry_mask(model, np.zeros((2, 2), bool))
  with pytest.raises(ValueError, match="layer 5"):
    freeze.entry_mask(model, [[5, 0]])
  t = freeze.zero_entries()
  with pytest.raises(ValueError, match="entry_mask"):
    t.update({"a": jnp.ones(2)}, t.init(None))
