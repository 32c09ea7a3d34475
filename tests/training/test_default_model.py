"""The shipped default model: loads offline, meets its accuracy floor at the easiest level of
every family, declines with difficulty, continues the prompt suite without collapsing, and ships
its emergence checkpoints within the size budget."""
import os

import jax
import numpy as np
import pytest

from flax import nnx

from synergy_jax import models, tasks, training
from synergy_jax.training import loop


def _state(m):
  """The module's nnx.Param state."""
  return nnx.state(m, nnx.Param)


def _flat(m) -> np.ndarray:
  """Every parameter of the module, concatenated (float64)."""
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(_state(m))])

ASSETS = training.ASSETS


@pytest.fixture(scope="module")
def model():
  return models.load("default")


@pytest.fixture(scope="module")
def tok():
  return models.load_tokenizer("default")


def test_files_and_size_budget():
  for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "MODEL_CARD.md"):
    assert (ASSETS / name).is_file(), name
  total = 0
  for root, _, files in os.walk(ASSETS):
    for f in files:
      size = os.path.getsize(os.path.join(root, f))
      assert size < 5 * 2 ** 20, f
      total += size
  assert total <= 20 * 2 ** 20


def test_architecture(model, tok):
  cfg = model.config
  assert cfg.model_type == "llama"
  assert cfg.num_layers >= 6 and cfg.num_heads >= 8
  assert cfg.vocab_size == len(tok)
  ids = tok("add 1+2=")["input_ids"]
  assert ids[0] == tok.bos_token_id == 1 and len(ids) == 9


@pytest.mark.parametrize("family", tasks.FAMILIES)
def test_easiest_level_at_least_90_percent(model, tok, family):
  easiest = tasks.levels(family)[0]
  acc = tasks.evaluate(model, tok, family, easiest, 48, seed=777)
  assert acc >= 0.9, (family, easiest, acc)


def test_accuracy_declines_with_level(model, tok):
  for family in tasks.FAMILIES:
    lv = tasks.levels(family)
    first = tasks.evaluate(model, tok, family, lv[0], 48, seed=778)
    last = tasks.evaluate(model, tok, family, lv[-1], 48, seed=778)
    assert last < first, (family, first, last)


def test_teacher_forced_exact_match_equals_generation(model, tok):
  """The training loop's shortcut (argmax along the true answer) agrees with models.generate."""
  es = loop.make_eval_set(8, 4321)
  tf = np.asarray(loop.exact_match(model, es.ids, es.answer_mask))
  agree = 0
  for i, (family, level) in enumerate(es.keys[::8]):
    examples = tasks.sample(family, level, 8, 4321)
    outs = tasks.generate_answers(model, tok, examples)
    gen = [tasks.check(e, o) for e, o in zip(examples, outs)]
    np.testing.assert_array_equal(tf[8 * i:8 * i + 8], gen, err_msg=f"{family} {level}")
    agree += sum(gen)
  assert agree > 0  # the comparison includes right answers, not only failures


def test_prompt_suite_continuations_do_not_collapse(model, tok):
  for category in tasks.CATEGORIES:
    for p in tasks.prompt_suite(category)[:2]:
      ids = np.asarray([tok(p.text)["input_ids"]], np.int32)
      out = models.generate(model, ids, np.ones_like(ids, bool), max_new_tokens=100)
      new = np.asarray(out.tokens)[0]
      assert new.shape == (100,)
      assert len(set(new.tolist())) > 5, (p.text, tok.decode(new.tolist()))


def test_emergence_checkpoints(model):
  steps = training.emergence_steps()
  assert steps[0] == 0 and len(steps) >= 9 and steps == sorted(set(steps))
  loaded = training.emergence_checkpoints(steps=[steps[0], steps[-1]])
  assert [s for s, _ in loaded] == [steps[0], steps[-1]]
  for _, m in loaded:
    assert m.config == model.config
    assert jax.tree.structure(_state(m)) == jax.tree.structure(_state(model))
  # the last checkpoint is the final model, rounded to float16
  for a, b in zip(jax.tree.leaves(_state(loaded[-1][1])), jax.tree.leaves(_state(model))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)
  # step 0 is the seeded initialisation of the same architecture
  init = models.init(model.config, 0)
  for a, b in zip(jax.tree.leaves(_state(loaded[0][1])), jax.tree.leaves(_state(init))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)
  with pytest.raises(FileNotFoundError, match="no emergence checkpoint for steps"):
    training.emergence_checkpoints(steps=[steps[-1] + 1])


def test_random_baseline(model):
  r0 = training.random_model("default", seed=0)
  r1 = training.random_model("default", seed=1)
  assert r0.config == model.config
  a, b, c = (_flat(m) for m in (r0, r1, model))
  assert not np.array_equal(a, b) and not np.allclose(a, c)
  np.testing.assert_array_equal(a, _flat(training.random_model("default", 0)))


def test_default_model_and_checkpoints_give_the_recorded_logits():
  """The shipped model and two emergence checkpoints, loaded into today's modules and called as
  modules, give the logits recorded before training moved onto the nnx state (data/
  make_default_logits.py at commit e393db5): the weights on disk load unchanged. Tolerance:
  float32 reassociation of sums of ~100 terms (|logits| < 30), not a model difference."""
  ref = np.load(os.path.join(os.path.dirname(__file__), "data", "default_logits_e393db5.npz"))
  ids = ref["input_ids"]
  got = {"final": np.asarray(models.load("default")(ids).logits)}
  steps = sorted(int(k.split("_")[1]) for k in ref.files if k.startswith("step_"))
  for s, m in training.emergence_checkpoints(steps=steps):
    got[f"step_{s}"] = np.asarray(m(ids).logits)
  assert sorted(got) == sorted(k for k in ref.files if k != "input_ids") and len(got) == 3
  for name, logits in got.items():
    want = ref[name]
    assert np.all(np.isfinite(logits)), name
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=2e-5, err_msg=name)
    np.testing.assert_array_equal(logits.argmax(-1), want.argmax(-1), err_msg=name)
  # the three models differ, so matching each is three checks, not one
  assert not np.allclose(got["final"], got[f"step_{steps[0]}"], atol=1e-2)
