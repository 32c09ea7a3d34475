"""Learning smoke checks on the shipped default model: GRPO on an easy level raises held-out
greedy accuracy above the base within the quick budget (paired exact sign test on the same
examples), and SFT lowers the next-token loss of held-out solutions."""
import math

import numpy as np
import pytest

from synergy_jax import models
from synergy_jax.tasks import evaluation, families
from synergy_jax.training import finetune, freeze, grpo, loop, modelstate, sft, tuning


@pytest.fixture(scope="module")
def default():
  return models.load("default"), models.load_tokenizer("default")


def _one_sided_sign_p(wins: int, losses: int) -> float:
  """P(X >= wins) for X ~ Binomial(wins + losses, 1/2): McNemar's exact test, one-sided."""
  n = wins + losses
  return sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def test_grpo_raises_accuracy_above_base(default):
  model, tok = default
  cfg = tuning.TuneConfig(method="grpo", steps=24, warmup_steps=2, batch_size=8, group_size=8,
                          families=("add",), levels=(2,))
  opt, programs = finetune._programs(model, cfg)
  mask = freeze.entry_mask(model, np.ones((6, 8), bool))
  step_fn = grpo.make_step_fn(model, tok, cfg, programs, mask)
  examples = families.sample("add", 2, 128, 99)
  split, params = modelstate.split(model)

  def correct(m):
    texts = evaluation.generate_answers(m, tok, examples)
    return np.array([families.check(e, t) for e, t in zip(examples, texts)])

  base = correct(model)
  state = {"params": params, "opt_state": opt.init(params)}
  rewards = []
  for s in range(cfg.steps):
    state, metrics = step_fn(state, s)
    rewards.append(metrics["reward"])
    assert np.isfinite(float(metrics["loss"])), s
  tuned = correct(split.merge(state["params"]))
  wins, losses = int((tuned & ~base).sum()), int((~tuned & base).sum())
  assert 0.2 < base.mean() < 0.9  # an easy level with room to improve
  assert tuned.mean() > base.mean()
  assert _one_sided_sign_p(wins, losses) < 0.05, (base.mean(), tuned.mean(), wins, losses)


def test_sft_lowers_the_loss_on_its_pairs(default, tmp_path):
  """SFT on a JSONL of prompt/completion pairs in a format the model never saw (reversing
  letters) fits them: the loss on those pairs falls, with only 16 heads trained."""
  model, tok = default
  rng = np.random.default_rng(0)
  path = tmp_path / "pairs.jsonl"
  lines = []
  for _ in range(8):
    w = "".join(rng.choice(list("abcdefgh"), 4))
    lines.append('{"prompt": "rev %s=", "completion": "%s\\n"}' % (w, w[::-1]))
  path.write_text("\n".join(lines) + "\n")
  cfg = tuning.TuneConfig(method="sft", steps=20, warmup_steps=0, learning_rate=3e-3,
                          batch_size=8, jsonl=str(path))
  opt, programs = finetune._programs(model, cfg)
  heads = np.zeros((6, 8), bool)
  heads[2:4] = True
  mask = freeze.entry_mask(model, heads)
  pairs = sft.tokenize_pairs(tok, tuning.read_pairs(path), cfg)
  assert pairs[0][1][-1] == tok("\n", add_special_tokens=False)["input_ids"][0]
  every = sft.pack(pairs, sft.row_length(cfg, pairs), 0)
  loss_fn = loop.next_token_loss()

  def pairs_loss(m):
    return float(loss_fn(m, (every["inputs"], every["targets"], every["weights"]))[0])

  step_fn = sft.make_step_fn(model, tok, cfg, programs, mask)
  split, params = modelstate.split(model)
  state = {"params": params, "opt_state": opt.init(params)}
  before = pairs_loss(model)
  for s in range(cfg.steps):
    state, _ = step_fn(state, s)
  after = pairs_loss(split.merge(state["params"]))
  assert np.isfinite(before) and np.isfinite(after)
  assert after < 0.7 * before, (before, after)


def test_sft_pair_file_errors_name_file_and_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    tuning.read_pairs(tmp_path / "nope.jsonl")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
  with pytest.raises(ValueError, match=r"bad.jsonl, line 2: .*'prompt' and 'completion'"):
    tuning.read_pairs(bad)
