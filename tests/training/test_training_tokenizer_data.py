"""The character tokenizer (HF files agree with the fast numpy path) and the corpus batches."""
import numpy as np
import pytest

from synergy_jax import tasks
from synergy_jax.training import data, tokenizer


@pytest.fixture(scope="module")
def hf_tok(tmp_path_factory):
  from transformers import PreTrainedTokenizerFast
  d = tmp_path_factory.mktemp("tok")
  tokenizer.save_tokenizer(d)
  return PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"),
                                 bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                 unk_token="<unk>")


def test_auto_tokenizer_loads_with_specials(tmp_path):
  from transformers import AutoTokenizer
  tokenizer.save_tokenizer(tmp_path)
  tok = AutoTokenizer.from_pretrained(str(tmp_path))
  assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
  assert len(tok) == tokenizer.VOCAB_SIZE == 100


def test_hf_ids_equal_numpy_ids(hf_tok):
  texts = ["add 12+34=46\n", "Fix the grammar: she go. Corrected: She goes.", "~{}|\\`'\"\t é"]
  for t in texts:
    hf = hf_tok(t)["input_ids"]
    assert hf[0] == tokenizer.BOS_ID
    assert hf[1:] == tokenizer.encode(t).tolist()
  # independent reference for printable ASCII: id = 4 + index in "\n" + chr(32..126)
  assert tokenizer.encode("\n A~").tolist() == [4, 5, 5 + ord("A") - 32, 5 + ord("~") - 32]
  assert tokenizer.encode("\t").tolist() == [tokenizer.UNK_ID]


def test_decode_roundtrip(hf_tok):
  t = "hop a=3,b=a;b?3\nWhen Mia lost the keys, she felt worried."
  ids = hf_tok(t)["input_ids"]
  assert hf_tok.decode(ids, skip_special_tokens=True) == t
  assert tokenizer.decode(tokenizer.encode(t)) == t


def test_batch_is_pure_function_of_seed_and_step():
  a = data.batch(3, 17, 4, 128)
  b = data.batch(3, 17, 4, 128)
  c = data.batch(3, 18, 4, 128)
  d = data.batch(4, 17, 4, 128)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a["inputs"], c["inputs"])
  assert not np.array_equal(a["inputs"], d["inputs"])


def test_batch_layout_and_weights():
  b = data.batch(0, 0, 16, 128)
  assert b["inputs"].shape == b["targets"].shape == b["weights"].shape == (16, 128)
  assert (b["inputs"][:, 0] == tokenizer.BOS_ID).all()
  np.testing.assert_array_equal(b["inputs"][:, 1:], b["targets"][:, :-1])
  n_task = 0
  for row in range(16):
    full = np.concatenate([b["inputs"][row], b["targets"][row, -1:]])
    text = tokenizer.decode(full)
    lines = text.split("\n")
    assert lines[-1] == ""  # every line is complete
    assert len(lines) >= 2
    pos = 0  # index into targets of the first character of the current line
    for line in lines[:-1]:
      w = b["weights"][row, pos:pos + len(line) + 1]
      family = line.split(" ", 1)[0]
      if family in tasks.FAMILIES:
        n_task += 1
        cut = max(line.rfind("="), line.rfind("?")) + 1
        np.testing.assert_array_equal(w[:cut], 0.0)
        np.testing.assert_array_equal(w[cut:], 1.0)
      else:
        np.testing.assert_array_equal(w, 1.0)
      pos += len(line) + 1
    # padding carries no weight
    np.testing.assert_array_equal(b["weights"][row, pos:], 0.0)
  assert n_task > 0


def test_task_lines_in_corpus_are_correct():
  """Every task line in a batch has the right answer (checked with tasks.solve)."""
  b = data.batch(1, 2, 32, 128)
  seen = set()
  for row in b["inputs"]:
    for line in tokenizer.decode(row).split("\n")[:-1]:
      family = line.split(" ", 1)[0]
      if family not in tasks.FAMILIES:
        continue
      cut = max(line.rfind("="), line.rfind("?")) + 1
      for level in tasks.levels(family):  # the level only matters for validation of k
        try:
          got = tasks.solve(tasks.Example(line[:cut], line[cut:], family, level))
          break
        except ValueError:
          continue
      assert got == line[cut:], line
      seen.add(family)
  assert seen == set(tasks.FAMILIES)


def test_line_longer_than_row_is_an_error():
  with pytest.raises(ValueError, match="does not fit seq_len=40"):
    data.batch(0, 0, 8, 40, task_fraction=0.0)


def test_bad_task_fraction():
  with pytest.raises(ValueError, match="task_fraction"):
    data.batch(0, 0, 2, 64, task_fraction=1.5)
