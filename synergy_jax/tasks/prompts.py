"""Prompt suites for the profile experiment, and a loader for a user's JSONL prompts.

The built-in suite covers the six cognitive categories of the study, ten or more prompts each,
written for this project. The prompts are phrased like the category text the default model was
trained on (see ``synergy_jax.training.text``), so the small model can continue each of them for
100 tokens.

JSONL format, one object per line (blank lines are skipped)::

  {"text": "Fix the grammar: he have two cat.", "category": "syntax_grammar", "difficulty": 2}

``text`` is required (a non-empty string); ``category`` (string) and ``difficulty`` (number) are
optional.
"""
from __future__ import annotations

import dataclasses
import json
import os

CATEGORIES = (
    "syntax_grammar",
    "part_of_speech",
    "numerical_reasoning",
    "common_sense",
    "abstract_creative",
    "emotional_social",
)


@dataclasses.dataclass(frozen=True)
class Prompt:
  """A text prompt with an optional category name and an optional difficulty number."""
  text: str
  category: str | None = None
  difficulty: float | None = None


_SUITE = {
    "syntax_grammar": (
        "Fix the grammar: the dogs runs across the yard. Corrected:",
        "Fix the grammar: she have three books on her desk. Corrected:",
        "Fix the grammar: yesterday we goes to the market. Corrected:",
        "Fix the grammar: the teacher are reading a long letter. Corrected:",
        "Fix the grammar: my brother dont like cold soup. Corrected:",
        "Fix the grammar: they was late for the small train. Corrected:",
        "Fix the grammar: a birds sings near the window. Corrected:",
        "Fix the grammar: he eat an apple every morning. Corrected:",
        "Fix the grammar: the children is playing in the park. Corrected:",
        "Fix the grammar: i has a red bike and a blue kite. Corrected:",
        "Fix the grammar: our neighbor walk her dog at night. Corrected:",
    ),
    "part_of_speech": (
        "Tag the words: the cat sleeps. Tags:",
        "Tag the words: a tall boy runs quickly. Tags:",
        "Tag the words: the old farmer plants seeds. Tags:",
        "Tag the words: my sister reads slowly. Tags:",
        "Tag the words: the small bird sings. Tags:",
        "Tag the words: a kind doctor helps people. Tags:",
        "Tag the words: the river flows quietly. Tags:",
        "Tag the words: the happy child draws a house. Tags:",
        "Tag the words: our teacher writes carefully. Tags:",
        "Tag the words: a brown dog chases the ball. Tags:",
        "Tag the words: the baker sells fresh bread. Tags:",
    ),
    "numerical_reasoning": (
        "Question: Sam has 4 apples and buys 3 more. How many apples does Sam have now? Answer:",
        "Question: A box holds 6 pens and Lea takes 2. How many pens are left? Answer:",
        "Question: Tom has 5 coins and finds 4 more. How many coins does Tom have now? Answer:",
        "Question: There are 9 birds on a wire and 3 fly away. How many birds are left? Answer:",
        "Question: Ana reads 2 pages each day for 4 days. How many pages does she read? Answer:",
        "Question: A shelf has 7 cups and Ben adds 2. How many cups are on the shelf now? Answer:",
        "Question: Mia had 8 stickers and gave 5 away. How many stickers does Mia have? Answer:",
        "Question: Each bag holds 3 oranges. How many oranges are in 3 bags? Answer:",
        "Question: Leo has 6 marbles and loses 1. How many marbles does Leo have now? Answer:",
        "Question: A farm has 2 cows and buys 5 more. How many cows does the farm have? Answer:",
        "Question: Which number is larger, 7 or 4? Answer:",
    ),
    "common_sense": (
        "If you drop a glass on a hard floor,",
        "If you leave ice cream in the sun,",
        "If you forget to water a plant for a month,",
        "If it starts to rain while you walk outside,",
        "If you put a metal spoon in a hot pot,",
        "If you stay awake all night,",
        "If you run very fast for a long time,",
        "If you leave bread out for many days,",
        "If you open the window on a cold day,",
        "If you mix red paint and yellow paint,",
        "If you shout in an empty hall,",
    ),
    "abstract_creative": (
        "A river is like a story because",
        "Imagine a city where the clocks run backwards. In that city,",
        "A library is like a garden because",
        "Imagine a world where trees can talk. In that world,",
        "A song is like a bridge because",
        "Imagine a day when the sun forgets to set. On that day,",
        "A friendship is like a lamp because",
        "Imagine an ocean made of glass. In that ocean,",
        "A question is like a key because",
        "Imagine a house that grows a new room every night. In that house,",
        "Time is like a river because",
    ),
    "emotional_social": (
        "When Mia lost her keys, she felt",
        "When Omar won the race, he felt",
        "When the team lost the final game, the players felt",
        "When Lucy's friend forgot her birthday, she felt",
        "When Ben saw his old dog again, he felt",
        "When Nora had to speak in front of the class, she felt",
        "When Sam's little sister broke his toy, he felt",
        "When the new student ate lunch alone, she felt",
        "When Leo's grandmother came to visit, he felt",
        "When Ana helped a stranger carry a heavy bag, she felt",
        "When Tom heard a loud noise at night, he felt",
    ),
}


def prompt_suite(category: str | None = None) -> list[Prompt]:
  """The built-in prompts, in category order; only ``category``'s prompts where given."""
  if category is not None and category not in _SUITE:
    raise ValueError(f"unknown prompt category {category!r}; choose one of {', '.join(CATEGORIES)}")
  chosen = CATEGORIES if category is None else (category,)
  return [Prompt(text, c) for c in chosen for text in _SUITE[c]]


def jsonl_records(path: str | os.PathLike, what: str):
  """Yields (where, obj) for every non-blank line of a JSONL file; ``where`` is "PATH, line N"
  (1-based) for the caller's own field errors.

  Raises FileNotFoundError naming ``what`` and the path for a missing file, and ValueError naming
  the file and line for a line that is not valid JSON.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what} {path!r} does not exist")
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path}, line {lineno}"
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e.msg})") from None
      yield where, obj


def load_prompts(path: str | os.PathLike) -> list[Prompt]:
  """Reads prompts from a JSONL file (format in the module docstring).

  Raises FileNotFoundError for a missing file and ValueError naming the file and 1-based line
  number for a line that is not a JSON object, lacks a non-empty string ``text``, has a
  non-string ``category``, a non-numeric ``difficulty``, or an unknown key; and for a file with no
  prompts.
  """
  path = os.fspath(path)
  prompts = []
  for where, obj in jsonl_records(path, "prompt file"):
    if not isinstance(obj, dict):
      raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"text", "category", "difficulty"}
    if unknown:
      raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: text, category, "
                       "difficulty")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
      raise ValueError(f"{where}: 'text' must be a non-empty string, got {text!r}")
    category = obj.get("category")
    if category is not None and not isinstance(category, str):
      raise ValueError(f"{where}: 'category' must be a string, got {category!r}")
    difficulty = obj.get("difficulty")
    if difficulty is not None and (isinstance(difficulty, bool)
                                   or not isinstance(difficulty, (int, float))):
      raise ValueError(f"{where}: 'difficulty' must be a number, got {difficulty!r}")
    prompts.append(Prompt(text, category, None if difficulty is None else float(difficulty)))
  if not prompts:
    raise ValueError(f"prompt file {path!r} holds no prompts")
  return prompts
