"""Difficulty-graded task families with exact checkers, generated offline from a seed.

Every example is one short line of characters: ``prompt`` ends with ``=`` (or ``?``) and the
``answer`` is the greedy continuation up to the newline that ends the line. The difficulty knob
``k`` of each family is a real amount of required computation:

  add    k-digit + k-digit addition (carries over k columns)          k = 1..6
  chain  a start digit followed by k additions ``+d``, mod 10           k = 1..6
  hop    k-hop pointer chasing through variable bindings, with a
         distractor chain of k - 1 bindings, bindings shuffled          k = 1..6
  sort   sorting a list of k digits ascending                          k = 2, 4, 6, 9, 12, 16

``levels(family)`` returns the k values in ascending order. Generation is a pure function of
``(family, level, n, seed)``: the same call returns the same examples on every machine.
"""
from __future__ import annotations

import dataclasses
import string

import numpy as np

FAMILIES = ("add", "chain", "hop", "sort")

_LEVELS = {
    "add": (1, 2, 3, 4, 5, 6),
    "chain": (1, 2, 3, 4, 5, 6),
    "hop": (1, 2, 3, 4, 5, 6),
    "sort": (2, 4, 6, 9, 12, 16),
}

# Answers end at this character (the tokenizer's newline); the model is trained to emit it.
END = "\n"


@dataclasses.dataclass(frozen=True)
class Example:
  """One task instance: ``prompt + answer + END`` is the training line."""
  prompt: str
  answer: str
  family: str
  level: int


def _check_family(family: str) -> None:
  if family not in _LEVELS:
    raise ValueError(f"unknown task family {family!r}; choose one of {', '.join(FAMILIES)}")


def levels(family: str) -> tuple[int, ...]:
  """The difficulty levels (values of k) of ``family``, ascending."""
  _check_family(family)
  return _LEVELS[family]


def _check_level(family: str, level: int) -> None:
  _check_family(family)
  if level not in _LEVELS[family]:
    raise ValueError(f"task family {family!r} has no level {level!r}; its levels are "
                     f"{list(_LEVELS[family])}")


def _digits(rng: np.random.Generator, k: int, leading_nonzero: bool) -> str:
  first = rng.integers(1 if (leading_nonzero and k > 1) else 0, 10)
  rest = rng.integers(0, 10, size=k - 1)
  return str(first) + "".join(str(d) for d in rest)


def _add(rng: np.random.Generator, k: int) -> tuple[str, str]:
  a, b = _digits(rng, k, True), _digits(rng, k, True)
  return f"add {a}+{b}=", str(int(a) + int(b))


def _chain(rng: np.random.Generator, k: int) -> tuple[str, str]:
  value = int(rng.integers(0, 10))
  text = str(value)
  for _ in range(k):
    d = int(rng.integers(0, 10))
    text += f"+{d}"
    value = (value + d) % 10
  return f"chain {text}=", str(value)


def _hop(rng: np.random.Generator, k: int) -> tuple[str, str]:
  letters = rng.permutation(list(string.ascii_lowercase))[: 2 * k - 1]
  target, other = letters[:k], letters[k:]
  d_target, d_other = rng.choice(10, size=2, replace=False)
  bindings = []
  for chain, d in ((target, d_target), (other, d_other)):
    if len(chain) == 0:
      continue
    bindings.append(f"{chain[0]}={d}")
    for prev, cur in zip(chain[:-1], chain[1:]):
      bindings.append(f"{cur}={prev}")
  order = rng.permutation(len(bindings))
  text = ",".join(bindings[i] for i in order)
  return f"hop {text};{target[-1]}?", str(int(d_target))


def _sort(rng: np.random.Generator, k: int) -> tuple[str, str]:
  items = rng.integers(0, 10, size=k)
  return f"sort {''.join(str(x) for x in items)}=", "".join(str(x) for x in np.sort(items))


_GENERATORS = {"add": _add, "chain": _chain, "hop": _hop, "sort": _sort}


def sample_one(family: str, level: int, rng: np.random.Generator) -> Example:
  """One example drawn with ``rng`` (advances it). Used by the training corpus."""
  prompt, answer = _GENERATORS[family](rng, level)
  return Example(prompt, answer, family, level)


def sample(family: str, level: int, n: int, seed: int) -> list[Example]:
  """``n`` examples of ``family`` at ``level``; a pure function of its arguments.

  The stream for each (family, level, seed) is independent of the others, and the first ``m``
  examples of ``sample(..., n, seed)`` equal ``sample(..., m, seed)`` for m ≤ n.
  """
  _check_level(family, level)
  if n < 0:
    raise ValueError(f"n must be non-negative, got {n}")
  rng = np.random.default_rng([int(seed), FAMILIES.index(family), int(level), 0x7A5C])
  return [sample_one(family, level, rng) for _ in range(n)]


def solve(example: Example) -> str:
  """Recomputes the answer from the prompt text alone (independent of the generator)."""
  _check_level(example.family, example.level)
  body = example.prompt.split(" ", 1)[1]
  if example.family == "add":
    a, b = body.rstrip("=").split("+")
    return str(int(a) + int(b))
  if example.family == "chain":
    expr = body.rstrip("=")
    value = int(expr[0])
    for op, d in zip(expr[1::2], expr[2::2]):
      value = (value + int(d)) % 10 if op == "+" else (value - int(d)) % 10
    return str(value)
  if example.family == "hop":
    text, query = body.rstrip("?").split(";")
    table = dict(b.split("=") for b in text.split(","))
    name = query
    for _ in range(len(table) + 1):
      name = table[name]
      if name.isdigit():
        return name
    raise ValueError(f"hop prompt {example.prompt!r} has a cycle")
  if example.family == "sort":
    return "".join(sorted(body.rstrip("=")))
  raise AssertionError(example.family)


def check(example: Example, output_text: str) -> bool:
  """Exact match of a model's continuation against ``example.answer``.

  ``output_text`` is what the model produced after the prompt; it is cut at the first newline
  (the line terminator the model is trained to emit) and compared with no other normalisation
  (no stripping of spaces, no numeric parsing): ``"07"`` is wrong where ``"7"`` is right.
  """
  produced = output_text.split(END, 1)[0]
  return produced == example.answer


def max_answer_length(family: str, level: int) -> int:
  """Longest possible answer (characters) at this family and level; sizes generation buffers."""
  _check_level(family, level)
  return {"add": level + 1, "chain": 1, "hop": 1, "sort": level}[family]
