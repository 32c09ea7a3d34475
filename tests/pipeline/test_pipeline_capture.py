"""Capture and model specs: batching never changes a prompt's activity; errors name culprits."""
import numpy as np
import pytest

from synergy_jax import models, training
from synergy_jax.pipeline import capture, specs
from synergy_jax.tasks import batching


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A random model with the default architecture (shrunk) and the default tokenizer, saved and
  loaded the way users load models."""
  cfg = training.default_model_config(hidden_size=32, intermediate_size=64, num_layers=3,
                                      num_heads=4, head_dim=8)
  path = tmp_path_factory.mktemp("tiny")
  models.save(models.init(cfg, seed=3), path)
  training.save_tokenizer(path)
  return models.load(path), models.load_tokenizer(path)


PROMPTS = ["The cat sat on", "Add 2 and 3:", "A", "Once upon a time there was a", "Hi"]


def test_acts_shape_and_unit_order(tiny):
  model, tok = tiny
  act = capture.collect_activity(model, tok, PROMPTS[:2], max_new_tokens=7, batch_size=2)
  assert act.acts.shape == (2, 3 * 4, 7)
  assert act.tokens.shape == (2, 7)
  # unit = layer * num_heads + head: compare against generate's (B, L, H, T) directly.
  batch = batching.left_pad(capture.encode_prompts(tok, PROMPTS[:2]), model.config)
  out = models.generate(model, batch.ids, batch.mask, max_new_tokens=7)
  norms = np.asarray(out.head_norms)
  np.testing.assert_array_equal(act.acts[:, 1 * 4 + 2], norms[:, 1, 2])
  np.testing.assert_array_equal(act.tokens, np.asarray(out.tokens))


def test_batch_size_does_not_change_activity(tiny):
  model, tok = tiny
  a = capture.collect_activity(model, tok, PROMPTS, max_new_tokens=6, batch_size=2)
  b = capture.collect_activity(model, tok, PROMPTS, max_new_tokens=6, batch_size=5)
  c = capture.collect_activity(model, tok, PROMPTS[3:4], max_new_tokens=6, batch_size=1)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_allclose(a.acts, b.acts, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a.acts[3], c.acts[0], rtol=1e-5, atol=1e-6)
  assert a.texts == b.texts and len(a.texts) == len(PROMPTS)


def test_bad_prompts_are_named(tiny):
  model, tok = tiny
  with pytest.raises(ValueError, match="prompt 1"):
    capture.collect_activity(model, tok, ["fine", "  "], max_new_tokens=2)
  with pytest.raises(ValueError, match="no prompts"):
    capture.collect_activity(model, tok, [], max_new_tokens=2)
  with pytest.raises(ValueError, match="batch_size"):
    capture.collect_activity(model, tok, ["x"], max_new_tokens=2, batch_size=0)


def test_model_spec_errors(tmp_path):
  with pytest.raises(ValueError, match="random:"):
    specs.resolve_model("random:")
  with pytest.raises(ValueError, match="non-empty"):
    specs.resolve_model(" ")
  with pytest.raises(FileNotFoundError, match="nowhere"):
    specs.resolve_model(str(tmp_path / "nowhere"))
  assert specs.random_counterpart("default") == "random:default"
  assert specs.random_counterpart("random:default") == "random:default"


def test_fingerprint_tracks_weights(tiny):
  model, _ = tiny
  same = models.Model(model.config, model.params)
  assert specs.model_fingerprint(model) == specs.model_fingerprint(same)
  params = dict(model.params)
  attn = dict(params["layers"]["attn"])
  attn["v"] = attn["v"].at[1, 3, 0, 2].add(1e-3)  # one weight, inside the tensor
  params["layers"] = {**params["layers"], "attn": attn}
  changed = models.Model(model.config, params)
  assert specs.model_fingerprint(model) != specs.model_fingerprint(changed)
  reinit = models.init(model.config, seed=4)
  assert specs.model_fingerprint(model) != specs.model_fingerprint(reinit)


def test_matched_baseline_sees_identical_tokens(tiny, tmp_path):
  """Teacher-forcing a model on its own generations reproduces its generation-time activity,
  and the random baseline scored on the trained model's tokens keeps those tokens exactly."""
  model, tok = tiny
  gen = capture.collect_activity(model, tok, PROMPTS, max_new_tokens=6, batch_size=2)
  forced = capture.score_activity(model, tok, PROMPTS, gen.tokens, batch_size=2)
  np.testing.assert_array_equal(forced.tokens, gen.tokens)
  np.testing.assert_allclose(forced.acts, gen.acts, rtol=2e-4, atol=2e-5)
  other = models.init(model.config, seed=11)
  matched = capture.score_activity(other, tok, PROMPTS, gen.tokens, batch_size=3)
  np.testing.assert_array_equal(matched.tokens, gen.tokens)
  assert matched.acts.shape == gen.acts.shape and np.all(np.isfinite(matched.acts))
  assert not np.allclose(matched.acts, gen.acts)  # other weights, same inputs
  with pytest.raises(ValueError, match="tokens must be"):
    capture.score_activity(other, tok, PROMPTS[:2], gen.tokens)
  with pytest.raises(ValueError, match="prompt 1 fall outside the vocabulary"):
    bad = gen.tokens.copy()
    bad[1, 0] = 10 ** 6
    capture.score_activity(other, tok, PROMPTS, bad)


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory):
  import moe_dirs
  path = moe_dirs.write_tiny_moe(tmp_path_factory.mktemp("moe"))
  return models.load(path), models.load_tokenizer(path)


def test_expert_units_follow_the_unit_table(tiny_moe):
  """units=experts / heads+experts: the series are generate's expert_norms (B, L_moe, E+S, T) and
  head_norms (B, L, H, T) laid out in the unit table's order."""
  import moe_dirs
  model, tok = tiny_moe
  both = capture.collect_activity(model, tok, PROMPTS[:2], max_new_tokens=5, batch_size=2,
                                  units="heads+experts")
  experts = capture.collect_activity(model, tok, PROMPTS[:2], max_new_tokens=5, batch_size=2,
                                     units="experts")
  batch = batching.left_pad(capture.encode_prompts(tok, PROMPTS[:2]), model.config)
  out = models.generate(model, batch.ids, batch.mask, max_new_tokens=5)
  heads, exp = np.asarray(out.head_norms), np.asarray(out.expert_norms)
  n_heads = moe_dirs.NUM_LAYERS * moe_dirs.NUM_HEADS
  per = moe_dirs.NUM_EXPERTS + moe_dirs.NUM_SHARED
  assert both.acts.shape == (2, n_heads + len(moe_dirs.MOE_LAYERS) * per, 5)
  assert both.units.name(n_heads + per + moe_dirs.NUM_EXPERTS) == "L2 S0"
  np.testing.assert_array_equal(both.acts[:, 2 * moe_dirs.NUM_HEADS + 1], heads[:, 2, 1])
  np.testing.assert_array_equal(both.acts[:, n_heads + per + 3], exp[:, 1, 3])  # L2 E3
  np.testing.assert_array_equal(experts.acts, both.acts[:, n_heads:])
  assert experts.units == both.units.subset(np.arange(n_heads, both.units.size))
  assert np.all(np.isfinite(both.acts)) and np.all(both.acts[:, n_heads:] > 0)
  routed = capture.collect_activity(model, tok, PROMPTS[:2], max_new_tokens=5, batch_size=2,
                                    units="experts", expert_activity="routed")
  unrouted = routed.acts[:, :moe_dirs.NUM_EXPERTS]  # layer 0's routed experts: top-2 of 4
  assert np.any(unrouted == 0.0) and np.all((unrouted == 0.0).sum(axis=1) == 2)


def test_expert_units_of_a_dense_model_name_the_model(tiny):
  model, tok = tiny
  with pytest.raises(ValueError, match="llama model has no experts"):
    capture.collect_activity(model, tok, PROMPTS[:1], max_new_tokens=2, units="experts")
