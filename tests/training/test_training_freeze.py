"""Head-restricted AdamW: frozen parameters come out bit-identical (weight decay on), the
selected heads' entries change, and frozen leaves carry no optimizer state."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from synergy_jax import models, training
from synergy_jax.training import finetune, freeze, loop, steps, tuning

TINY = dict(hidden_size=16, intermediate_size=32, num_layers=2, num_heads=2, head_dim=8)


def _bits(x):
  return np.asarray(x, np.float32).view(np.uint32)


def test_frozen_entries_bit_identical_and_selected_change():
  mc = training.default_model_config(**TINY)
  params = models.init(mc, 0).params
  cfg = tuning.TuneConfig(method="sft", steps=10, warmup_steps=0, learning_rate=1e-2,
                          weight_decay=0.5)
  opt = finetune.make_optimizer(cfg, params)
  heads = [[0, 1], [1, 0]]
  mask = freeze.entry_mask(params, heads)
  step = steps.make_step(loop.next_token_loss(mc), opt)
  rng = np.random.default_rng(0)
  p, o = params, opt.init(params)
  for _ in range(3):
    ids = rng.integers(4, 100, size=(4, 17)).astype(np.int32)
    batch = (ids[:, :-1], ids[:, 1:], np.ones((4, 16), np.float32))
    p, o, metrics = step(p, o, batch, {"entry_mask": mask})
  assert np.isfinite(float(metrics["loss"]))
  n_changed = 0
  for path, before, after, m in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                    jax.tree.leaves(params), jax.tree.leaves(p),
                                    jax.tree.leaves(mask)):
    name = jax.tree_util.keystr(path[0])
    m = np.asarray(m)
    np.testing.assert_array_equal(_bits(after)[~m], _bits(before)[~m], err_msg=name)
    if m.any():
      changed = _bits(after)[m] != _bits(before)[m]
      assert changed.mean() > 0.9, name  # AdamW moves nearly every selected entry
      n_changed += int(changed.sum())
  # the selection: head (0, 1) and (1, 0) own q rows D*K each and o columns K*D each
  assert n_changed > 0.9 * 2 * 2 * TINY["hidden_size"] * TINY["head_dim"]
  # leaves no head owns get no Adam moments (set_to_zero branch of the partition)
  labels = freeze.leaf_labels(params)
  assert labels["embed"] == freeze.FREEZE and labels["layers"]["attn"]["q"] == freeze.TRAIN
  assert (labels["layers"]["attn"]["k"] == freeze.FREEZE
          and labels["layers"]["attn"]["v"] == freeze.FREEZE)
  n_state = sum(np.size(x) for x in jax.tree.leaves(o))
  n_trainable = sum(np.size(x) for x, lab in zip(jax.tree.leaves(params),
                                                 jax.tree.leaves(labels)) if lab == freeze.TRAIN)
  assert n_state < 2 * n_trainable + 16  # mu and nu of the trainable leaves, plus counters


def test_masked_alone_would_leak_updates():
  """Why the partition: optax.masked passes the other leaves' updates through unchanged."""
  params = {"a": jnp.ones(3), "b": jnp.ones(3)}
  grads = {"a": jnp.ones(3), "b": jnp.ones(3)}
  opt = optax.masked(optax.sgd(1.0), {"a": True, "b": False})
  updates, _ = opt.update(grads, opt.init(params), params)
  assert float(updates["b"][0]) == 1.0  # raw gradient, not zero
  # A one-layer, one-head toy in the dense layout: attn.q (L, D, H, K), attn.o (L, H, K, D).
  p = {"layers": {"attn": {"q": jnp.ones((1, 2, 1, 2)), "o": jnp.ones((1, 1, 2, 2))}},
       "embed": jnp.ones(2)}
  restricted = freeze.restrict(optax.sgd(1.0), p)
  m = {"layers": {"attn": {"q": np.array([[[[True, False]], [[True, False]]]]),
                           "o": np.zeros((1, 1, 2, 2), bool)}}, "embed": np.zeros(2, bool)}
  u, _ = restricted.update(jax.tree.map(jnp.ones_like, p), restricted.init(p), p, entry_mask=m)
  np.testing.assert_array_equal(np.asarray(u["embed"]), 0.0)
  np.testing.assert_array_equal(np.asarray(u["layers"]["attn"]["q"])[..., 1], 0.0)
  np.testing.assert_array_equal(np.asarray(u["layers"]["attn"]["q"])[..., 0], -1.0)
  np.testing.assert_array_equal(np.asarray(u["layers"]["attn"]["o"]), 0.0)


def test_empty_selection_and_missing_mask_are_errors():
  mc = training.default_model_config(**TINY)
  params = models.init(mc, 0).params
  with pytest.raises(ValueError, match="empty"):
    freeze.entry_mask(params, np.zeros((2, 2), bool))
  with pytest.raises(ValueError, match="layer 5"):
    freeze.entry_mask(params, [[5, 0]])
  t = freeze.zero_entries()
  with pytest.raises(ValueError, match="entry_mask"):
    t.update({"a": jnp.ones(2)}, t.init(None))
