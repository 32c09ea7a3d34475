"""The default model's character-level tokenizer, built with the ``tokenizers`` library.

Vocabulary (100 ids): ``<pad>``=0, ``<s>``=1 (BOS), ``</s>``=2 (EOS), ``<unk>``=3, then the newline
and the 95 printable ASCII characters (space .. ``~``) in code-point order. Encoding a text adds
BOS in front (like Llama tokenizers); any other character maps to ``<unk>``. Decoding joins the
characters with nothing in between.

``encode`` is a numpy table lookup that gives exactly the ids of ``tokenizer.json`` (a test checks
this) and is what the training corpus uses, because it is ~100x faster than a per-line call.
"""
from __future__ import annotations

import json
import os

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
CHARS = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(SPECIALS) + len(CHARS)  # 100
NEWLINE_ID = len(SPECIALS)

_TABLE = np.full(128, UNK_ID, np.int32)
for _i, _c in enumerate(CHARS):
  _TABLE[ord(_c)] = len(SPECIALS) + _i


def vocab() -> dict[str, int]:
  """Token string → id for all 100 tokens."""
  table = {s: i for i, s in enumerate(SPECIALS)}
  table.update({c: len(SPECIALS) + i for i, c in enumerate(CHARS)})
  return table


def encode(text: str) -> np.ndarray:
  """Character ids of ``text`` (no BOS), int32 of shape (len(text),)."""
  codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
  return np.where(codes < 128, _TABLE[np.minimum(codes, 127)], UNK_ID).astype(np.int32)


def decode(ids) -> str:
  """Inverse of ``encode`` for character ids; special tokens are dropped."""
  out = []
  for i in np.asarray(ids).reshape(-1).tolist():
    if i >= len(SPECIALS):
      out.append(CHARS[i - len(SPECIALS)])
    elif i == UNK_ID:
      out.append("\ufffd")
  return "".join(out)


def build_tokenizer():
  """A ``tokenizers.Tokenizer`` for the vocabulary above (BPE with no merges = characters)."""
  from tokenizers import Tokenizer, decoders, models, processors

  tok = Tokenizer(models.BPE(vocab=vocab(), merges=[], unk_token=UNK))
  tok.add_special_tokens(list(SPECIALS))
  tok.post_processor = processors.TemplateProcessing(
      single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, BOS_ID)])
  tok.decoder = decoders.Fuse()
  return tok


def save_tokenizer(directory: str | os.PathLike) -> None:
  """Writes ``tokenizer.json`` and ``tokenizer_config.json`` (HF layout) into ``directory``.

  The files load with ``transformers.PreTrainedTokenizerFast(tokenizer_file=...)`` or
  ``AutoTokenizer.from_pretrained(directory)``.
  """
  directory = os.fspath(directory)
  os.makedirs(directory, exist_ok=True)
  tok = build_tokenizer()
  tmp = os.path.join(directory, "tokenizer.json.tmp")
  tok.save(tmp)
  os.replace(tmp, os.path.join(directory, "tokenizer.json"))
  config = {
      "tokenizer_class": "PreTrainedTokenizerFast",
      "bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK,
      "padding_side": "left",
      "model_max_length": 4096,
      "clean_up_tokenization_spaces": False,
  }
  tmp = os.path.join(directory, "tokenizer_config.json.tmp")
  with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
  os.replace(tmp, os.path.join(directory, "tokenizer_config.json"))
