"""Task generators: deterministic per seed, exact checkers, difficulty knob, answers from an
independent solver written here (not the package's)."""
import re

import numpy as np
import pytest

from synergy_jax import tasks
from synergy_jax.tasks import families


def _reference_answer(ex):
  """Independent solver: parses the prompt with regular expressions."""
  if ex.family == "add":
    a, b = re.fullmatch(r"add (\d+)\+(\d+)=", ex.prompt).groups()
    return str(int(a) + int(b))
  if ex.family == "chain":
    expr = re.fullmatch(r"chain (\d(?:[+-]\d)+)=", ex.prompt).group(1)
    return str(eval(expr) % 10)  # Python's % is non-negative for a positive modulus
  if ex.family == "hop":
    binds, q = re.fullmatch(r"hop ((?:[a-z]=[a-z0-9],?)+);([a-z])\?", ex.prompt).groups()
    env = {}
    for b in binds.split(","):
      env[b[0]] = b[2]
    while not q.isdigit():
      q = env[q]
    return q
  if ex.family == "sort":
    digits = re.fullmatch(r"sort (\d+)=", ex.prompt).group(1)
    return "".join(sorted(digits))
  raise AssertionError(ex.family)


def test_api_shape():
  assert len(tasks.FAMILIES) >= 4
  for f in tasks.FAMILIES:
    lv = tasks.levels(f)
    assert len(lv) >= 6
    assert list(lv) == sorted(lv)


@pytest.mark.parametrize("family", tasks.FAMILIES)
def test_answers_match_independent_solver(family):
  for level in tasks.levels(family):
    for ex in tasks.sample(family, level, 200, seed=3):
      assert ex.family == family and ex.level == level
      assert ex.answer == _reference_answer(ex), ex
      assert ex.answer == families.solve(ex)
      assert len(ex.answer) <= families.max_answer_length(family, level)
      assert len(ex.prompt) + len(ex.answer) < 64, ex
      assert "\n" not in ex.prompt + ex.answer


@pytest.mark.parametrize("family", tasks.FAMILIES)
def test_deterministic_per_seed(family):
  for level in tasks.levels(family):
    a = tasks.sample(family, level, 50, seed=7)
    b = tasks.sample(family, level, 50, seed=7)
    c = tasks.sample(family, level, 50, seed=8)
    assert a == b
    assert a != c
    assert tasks.sample(family, level, 20, seed=7) == a[:20]


def test_difficulty_knob_is_real():
  """Level k means k operations / hops / digits / items in the prompt."""
  for k in tasks.levels("add"):
    ex = tasks.sample("add", k, 20, 0)
    assert all(len(e.prompt.split("+")[1].rstrip("=")) == k for e in ex)
  for k in tasks.levels("chain"):
    ex = tasks.sample("chain", k, 20, 0)
    assert all(sum(e.prompt[6:].count(op) for op in "+-") == k for e in ex)
  for k in tasks.levels("hop"):
    for e in tasks.sample("hop", k, 20, 0):
      binds = e.prompt[4:].split(";")[0].split(",")
      assert len(binds) == 2 * k - 1  # k-chain to the answer, (k-1)-chain distractor
      # following the query takes exactly k lookups
      env = dict(b.split("=") for b in binds)
      q, hops = e.prompt.split(";")[1].rstrip("?"), 0
      while not q.isdigit():
        q, hops = env[q], hops + 1
      assert hops == k
  for k in tasks.levels("sort"):
    assert all(len(e.answer) == k for e in tasks.sample("sort", k, 20, 0))


def test_hop_distractor_has_other_value():
  for e in tasks.sample("hop", 3, 100, 1):
    digits = re.findall(r"=(\d)", e.prompt)
    assert len(digits) == 2 and digits[0] != digits[1]


def test_check_is_exact():
  ex = tasks.Example("add 12+34=", "46", "add", 2)
  assert tasks.check(ex, "46")
  assert tasks.check(ex, "46\nadd 1+2=3\n")  # cut at the line end
  assert not tasks.check(ex, "46 ")
  assert not tasks.check(ex, " 46")
  assert not tasks.check(ex, "046")
  assert not tasks.check(ex, "4")
  assert not tasks.check(ex, "467\n")
  assert not tasks.check(ex, "")
  assert not tasks.check(ex, "\n46")
  z = tasks.Example("chain 3+4=", "7", "chain", 1)
  assert not tasks.check(z, "07")


def test_checker_rejects_wrong_answers():
  rng = np.random.default_rng(0)
  for family in tasks.FAMILIES:
    for ex in tasks.sample(family, tasks.levels(family)[2], 50, 0):
      wrong = str((int(ex.answer) + int(rng.integers(1, 9))) % 10 ** len(ex.answer)).zfill(
          len(ex.answer))
      if wrong != ex.answer:
        assert not tasks.check(ex, wrong)
      assert tasks.check(ex, ex.answer + "\n")


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="nope"):
    tasks.levels("nope")
  with pytest.raises(ValueError, match="level 99"):
    tasks.sample("add", 99, 3, 0)
  with pytest.raises(ValueError, match="non-negative"):
    tasks.sample("add", 1, -1, 0)
