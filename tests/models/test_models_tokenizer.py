"""The default model's tokenizer loads without PyTorch and encodes exactly as AutoTokenizer does."""
import subprocess
import sys

from synergy_jax import models


def test_default_tokenizer_does_not_import_torch():
  code = ("import sys\nfrom synergy_jax import models\n"
          "tok = models.load_tokenizer('default')\n"
          # Documented layout: 4 special ids, newline = 4, then printable ASCII from space = 5.
          "assert tok('ab')['input_ids'] == [1, 5 + 97 - 32, 5 + 98 - 32], tok('ab')['input_ids']\n"
          "print('torch' in sys.modules)")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "False"


def test_default_tokenizer_matches_autotokenizer():
  from transformers import AutoTokenizer
  ours = models.load_tokenizer("default")
  auto = AutoTokenizer.from_pretrained(str(models.hub.resolve("default")))
  for text in ["add 47+85=", "hop q=1;q?", "Fix the grammar: he go.\nNext", "tab\tand é"]:
    assert ours(text)["input_ids"] == auto(text)["input_ids"], text
  assert (ours.pad_token_id, ours.bos_token_id, ours.eos_token_id) == (
      auto.pad_token_id, auto.bos_token_id, auto.eos_token_id)
