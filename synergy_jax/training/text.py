"""Templated sentences in the style of the six prompt categories (default-model training text).

Each generator draws one line (no newline, at most ~120 characters) from word lists with an
``np.random.Generator``; a line is a pure function of the generator's state. The point is not
knowledge but form: after training on these lines the small default model can continue any prompt
of ``synergy_jax.tasks.prompt_suite()`` for 100 characters with varied text.
"""
from __future__ import annotations

import numpy as np

from synergy_jax.tasks.prompts import CATEGORIES

_NAMES = ("Sam", "Mia", "Tom", "Ana", "Leo", "Nora", "Ben", "Lucy", "Omar", "Lea", "Ivy", "Max",
          "Zoe", "Raj", "Eva", "Kai")
_PRONOUN = {"Sam": "he", "Mia": "she", "Tom": "he", "Ana": "she", "Leo": "he", "Nora": "she",
            "Ben": "he", "Lucy": "she", "Omar": "he", "Lea": "she", "Ivy": "she", "Max": "he",
            "Zoe": "she", "Raj": "he", "Eva": "she", "Kai": "he"}


def _pick(rng: np.random.Generator, seq):
  return seq[int(rng.integers(0, len(seq)))]


# --- syntax and grammar correction -------------------------------------------------------------
_SING = ("the dog", "my sister", "a bird", "the teacher", "our neighbor", "he", "she", "the farmer",
         "my brother", "the cat", "a child", "the baker")
_PLUR = ("the dogs", "they", "the children", "we", "my friends", "the birds", "the students",
         "our parents", "the cats", "you", "the workers")
_VERBS = (("run", "runs", "across the yard"), ("eat", "eats", "an apple every morning"),
          ("read", "reads", "a long letter"), ("walk", "walks", "to school every day"),
          ("sing", "sings", "near the window"), ("play", "plays", "in the park"),
          ("like", "likes", "cold soup"), ("want", "wants", "a new kite"),
          ("write", "writes", "short notes"), ("drink", "drinks", "warm milk at night"),
          ("clean", "cleans", "the kitchen"), ("help", "helps", "the old man"))
_BE = (("is", "are", "playing in the park"), ("was", "were", "late for the train"),
       ("has", "have", "three books on the desk"), ("does not", "do not", "like the rain"))


def _cap(s: str) -> str:
  return s[0].upper() + s[1:]


def syntax_grammar(rng: np.random.Generator) -> str:
  plural = bool(rng.integers(0, 2))
  subj = _pick(rng, _PLUR if plural else _SING)
  if rng.integers(0, 3) == 0:
    sing_form, plur_form, rest = _pick(rng, _BE)
  else:
    plur_form, sing_form, rest = _pick(rng, _VERBS)
  right, wrong = (plur_form, sing_form) if plural else (sing_form, plur_form)
  return f"Fix the grammar: {subj} {wrong} {rest}. Corrected: {_cap(subj)} {right} {rest}."


# --- part-of-speech tagging --------------------------------------------------------------------
_DET = ("the", "a", "my", "our", "this")
_ADJ = ("tall", "old", "small", "kind", "happy", "brown", "quiet", "young", "red", "busy")
_NOUN = ("cat", "boy", "farmer", "sister", "bird", "doctor", "river", "child", "teacher", "dog",
         "baker", "girl", "horse", "friend")
_OBJ = ("ball", "house", "bread", "seeds", "letter", "song", "book", "cake", "door", "tree")
_IVERB = ("sleeps", "runs", "sings", "reads", "waits", "laughs", "swims", "walks", "flows")
_TVERB = ("draws", "chases", "sells", "plants", "opens", "finds", "paints", "carries", "sees")
_ADV = ("quickly", "slowly", "quietly", "carefully", "happily", "softly", "loudly")


def part_of_speech(rng: np.random.Generator) -> str:
  words = [(_pick(rng, _DET), "DET")]
  if rng.integers(0, 2):
    words.append((_pick(rng, _ADJ), "ADJ"))
  words.append((_pick(rng, _NOUN), "NOUN"))
  if rng.integers(0, 2):
    words.append((_pick(rng, _IVERB), "VERB"))
    if rng.integers(0, 2):
      words.append((_pick(rng, _ADV), "ADV"))
  else:
    words += [(_pick(rng, _TVERB), "VERB"), (_pick(rng, _DET), "DET"), (_pick(rng, _OBJ), "NOUN")]
  sentence = " ".join(w for w, _ in words)
  tags = " ".join(f"{w}/{t}" for w, t in words)
  return f"Tag the words: {sentence}. Tags: {tags}."


# --- basic numerical reasoning -----------------------------------------------------------------
_ITEMS = ("apples", "pens", "coins", "birds", "cups", "stickers", "marbles", "books", "cows",
          "shells")


def numerical_reasoning(rng: np.random.Generator) -> str:
  name, item = _pick(rng, _NAMES), _pick(rng, _ITEMS)
  a, b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
  kind = int(rng.integers(0, 4))
  if kind == 0:
    q = f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?"
    ans = a + b
  elif kind == 1:
    a, b = max(a, b), min(a, b)
    q = f"{name} had {a} {item} and gave {b} away. How many {item} does {name} have?"
    ans = a - b
  elif kind == 2:
    a, b = a % 5 + 1, b % 5 + 1
    q = f"Each bag holds {a} {item}. How many {item} are in {b} bags?"
    ans = a * b
  else:
    while b == a:
      b = int(rng.integers(1, 10))
    q = f"Which number is larger, {a} or {b}?"
    ans = max(a, b)
  return f"Question: {q} Answer: {ans}."


# --- common-sense reasoning --------------------------------------------------------------------
_CAUSES = (
    ("drop a glass on a hard floor", "it will probably break into pieces"),
    ("leave ice cream in the sun", "it will melt and drip"),
    ("forget to water a plant for a month", "it will dry out and wilt"),
    ("walk outside in the rain", "your clothes will get wet"),
    ("put a metal spoon in a hot pot", "the handle will get hot"),
    ("stay awake all night", "you will feel tired the next day"),
    ("run very fast for a long time", "you will be out of breath"),
    ("leave bread out for many days", "it will become dry and hard"),
    ("open the window on a cold day", "the room will get colder"),
    ("mix red paint and yellow paint", "you will get orange paint"),
    ("shout in an empty hall", "you will hear an echo"),
    ("eat too much candy", "your stomach may hurt"),
    ("plant a seed and water it", "a small plant will grow"),
    ("leave a candle burning", "it will slowly get shorter"),
    ("throw a ball up", "it will fall back down"),
    ("put water in the freezer", "it will turn into ice"),
)


def common_sense(rng: np.random.Generator) -> str:
  cause, effect = _pick(rng, _CAUSES)
  return f"If you {cause}, {effect}."


# --- abstract and creative reasoning -----------------------------------------------------------
_THINGS = (("river", "keep moving"), ("story", "keep moving"), ("library", "hold many lives"),
           ("garden", "grow with care"), ("song", "join two places"), ("bridge", "join two places"),
           ("friendship", "give light in the dark"), ("lamp", "give light in the dark"),
           ("question", "open a door"), ("key", "open a door"), ("seed", "grow with care"),
           ("book", "hold many lives"), ("map", "show a way"), ("teacher", "show a way"))
_WORLDS = (("city", "the clocks run backwards", "people remember tomorrow"),
           ("world", "trees can talk", "the forest tells old stories"),
           ("day", "the sun forgets to set", "nobody knows when to sleep"),
           ("ocean", "the water is glass", "fish glide over their own shadows"),
           ("house", "a new room grows every night", "every morning is a surprise"),
           ("town", "rain falls upward", "umbrellas hang under the roofs"),
           ("forest", "the stones can sing", "the hills hum at night"))


def abstract_creative(rng: np.random.Generator) -> str:
  if rng.integers(0, 2):
    i = int(rng.integers(0, len(_THINGS)))
    same = [t for t, p in _THINGS if p == _THINGS[i][1] and t != _THINGS[i][0]]
    other = same[int(rng.integers(0, len(same)))]
    art = "An" if _THINGS[i][0][0] in "aeiou" else "A"
    return f"{art} {_THINGS[i][0]} is like a {other} because both {_THINGS[i][1]}."
  place, odd, result = _pick(rng, _WORLDS)
  art = "an" if place[0] in "aeiou" else "a"
  return f"Imagine {art} {place} where {odd}. In that {place}, {result}."


# --- emotional and social cognition ------------------------------------------------------------
_EVENTS = (("lost the keys", "worried", "a friend helped to look"),
           ("won the race", "proud", "everyone clapped"),
           ("lost the final game", "sad", "the coach gave a hug"),
           ("was forgotten on a birthday", "hurt", "a friend said sorry"),
           ("saw an old dog again", "happy", "they played all day"),
           ("had to speak in front of the class", "nervous", "a deep breath helped"),
           ("had a toy broken by a sister", "angry", "they talked and made up"),
           ("ate lunch alone", "lonely", "a classmate came to sit nearby"),
           ("got a visit from grandmother", "glad", "they baked a cake"),
           ("helped a stranger with a heavy bag", "kind", "the stranger smiled"),
           ("heard a loud noise at night", "scared", "a parent turned on the light"),
           ("finished a hard puzzle", "proud", "the picture went on the wall"))


def emotional_social(rng: np.random.Generator) -> str:
  name = _pick(rng, _NAMES)
  event, feeling, after = _pick(rng, _EVENTS)
  return f"When {name} {event}, {_PRONOUN[name]} felt {feeling}, so {after}."


GENERATORS = {
    "syntax_grammar": syntax_grammar,
    "part_of_speech": part_of_speech,
    "numerical_reasoning": numerical_reasoning,
    "common_sense": common_sense,
    "abstract_creative": abstract_creative,
    "emotional_social": emotional_social,
}
assert tuple(GENERATORS) == CATEGORIES


def sample_line(category: str, rng: np.random.Generator) -> str:
  """One line of ``category``'s style (see module docstring)."""
  if category not in GENERATORS:
    raise ValueError(f"unknown text category {category!r}; choose one of {', '.join(CATEGORIES)}")
  return GENERATORS[category](rng)
