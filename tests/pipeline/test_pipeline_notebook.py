"""The Colab notebook runs top to bottom on the default model (quick settings, no network)."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not (ROOT / "synergy_jax/assets/default/config.json").exists(),
                    reason="the shipped default model is missing")
def test_colab_notebook_executes(tmp_path, monkeypatch):
  nb = nbformat.read(ROOT / "experiments" / "colab.ipynb", as_version=4)
  # Run in a scratch copy of the working directory layout: the notebook writes runs/ relative to
  # its cwd, and imports synergy_jax from it.
  work = tmp_path / "nb"
  work.mkdir()
  for name in ("synergy_jax", "run.py", "requirements.txt"):
    (work / name).symlink_to(ROOT / name)
  monkeypatch.setenv("SYNERGY_JAX_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(work)}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  assert "Synergistic-core profile" in outputs
  assert (work / "runs" / "colab-default" / "results.json").stat().st_size > 0
  assert "Skipping EleutherAI/pythia-160m" in outputs or "colab-hub" in outputs
