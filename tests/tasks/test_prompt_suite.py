"""The six-category prompt suite and the JSONL loader."""
import json

import pytest

from synergy_jax import tasks

SIX = {"syntax_grammar", "part_of_speech", "numerical_reasoning", "common_sense",
       "abstract_creative", "emotional_social"}


def test_six_categories_ten_each():
  suite = tasks.prompt_suite()
  assert set(tasks.CATEGORIES) == SIX
  for c in SIX:
    texts = [p.text for p in suite if p.category == c]
    assert len(texts) >= 10, c
    assert len(set(texts)) == len(texts)
    assert all(t.isascii() and 10 < len(t) < 110 for t in texts)
  assert len(tasks.prompt_suite("common_sense")) >= 10
  with pytest.raises(ValueError, match="bogus"):
    tasks.prompt_suite("bogus")


def test_load_prompts_roundtrip(tmp_path):
  p = tmp_path / "p.jsonl"
  p.write_text(json.dumps({"text": "Hello there", "category": "x", "difficulty": 2}) + "\n\n"
               + json.dumps({"text": "Only text"}) + "\n")
  got = tasks.load_prompts(p)
  assert got == [tasks.Prompt("Hello there", "x", 2.0), tasks.Prompt("Only text", None, None)]


@pytest.mark.parametrize("line, match", [
    ("{not json", "line 2: not valid JSON"),
    ("[1, 2]", "line 2: expected a JSON object"),
    ('{"category": "x"}', "line 2: 'text'"),
    ('{"text": ""}', "line 2: 'text'"),
    ('{"text": "a", "category": 3}', "line 2: 'category'"),
    ('{"text": "a", "difficulty": "hard"}', "line 2: 'difficulty'"),
    ('{"text": "a", "colour": "red"}', "line 2: unknown key"),
])
def test_load_prompts_bad_line_is_named(tmp_path, line, match):
  p = tmp_path / "bad.jsonl"
  p.write_text('{"text": "fine"}\n' + line + "\n")
  with pytest.raises(ValueError, match=match) as e:
    tasks.load_prompts(p)
  assert "bad.jsonl" in str(e.value)


def test_load_prompts_missing_and_empty(tmp_path):
  with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
    tasks.load_prompts(tmp_path / "nowhere.jsonl")
  (tmp_path / "empty.jsonl").write_text("\n\n")
  with pytest.raises(ValueError, match="no prompts"):
    tasks.load_prompts(tmp_path / "empty.jsonl")
