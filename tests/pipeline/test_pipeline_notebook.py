"""The Colab notebook runs top to bottom (quick settings, no network), through its Colab branch:
the code is cloned from a repository URL (a local git repository made from this working tree),
the runtime's accelerator is detected, the default model is shown with Flax's display
(treescope) and called as a module, and the default profile runs from the clone."""
import pathlib
import re
import shutil
import subprocess

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ("synergy_jax", "experiments", "run.py", "pyproject.toml", "requirements.txt",
           "README.md")


def _local_repository(path: pathlib.Path) -> pathlib.Path:
  """A git repository holding a copy of this working tree's sources (what a user's clone holds)."""
  path.mkdir()
  for name in SOURCES:
    src = ROOT / name
    if src.is_dir():
      shutil.copytree(src, path / name, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    else:
      shutil.copy(src, path / name)
  git = ["git", "-C", str(path), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
  for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
    subprocess.run(git + args, check=True, capture_output=True, timeout=120)
  return path


@pytest.mark.skipif(not (ROOT / "synergy_jax/assets/default/config.json").exists(),
                    reason="the shipped default model is missing")
def test_colab_notebook_executes_through_its_colab_branch(tmp_path, monkeypatch):
  nb = nbformat.read(ROOT / "experiments" / "colab.ipynb", as_version=4)
  origin = _local_repository(tmp_path / "origin")
  work = tmp_path / "colab"  # the fresh runtime's working directory: no code in it yet
  work.mkdir()
  monkeypatch.setenv("SYNERGY_JAX_FORCE_COLAB", "1")
  monkeypatch.setenv("SYNERGY_JAX_REPO_URL", f"file://{origin}")
  monkeypatch.setenv("SYNERGY_JAX_NOTEBOOK_PIP", "echo pip")  # keep the test's environment as is
  monkeypatch.setenv("SYNERGY_JAX_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  client = NotebookClient(nb, timeout=600, kernel_name="python3",
                          resources={"metadata": {"path": str(work)}})
  client.execute()
  outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                    for o in c.get("outputs", []))
  clone = work / "synergy_jax_repo"
  assert (clone / "run.py").exists() and (clone / ".git").exists()  # cloned from the URL
  assert f"synergy_jax from {clone / 'synergy_jax'}" in outputs  # imported from the clone
  assert "runtime accelerator: cpu" in outputs and "devices:" in outputs
  # the model as a Flax module: treescope's rendering of nnx.display, then a call of the module
  shown = [c for c in nb.cells if c.cell_type == "code" and "nnx.display(model)" in c.source]
  assert len(shown) == 1
  rich = [o for o in shown[0].get("outputs", []) if o.get("output_type") == "display_data"]
  assert rich and "text/html" in rich[0]["data"], shown[0].get("outputs")
  assert "Model is an nnx.Module: True" in outputs
  assert re.search(r"logits \(1, 10, 100\) head_norms \(1, 6, 8, 10\)", outputs), outputs[-2000:]
  assert re.search(r"[\d,]+ parameters in nnx.state\(model, nnx.Param\)", outputs)
  assert "Synergistic-core profile" in outputs
  assert (clone / "runs" / "colab-default" / "results.json").stat().st_size > 0
  assert "Skipping EleutherAI/pythia-160m" in outputs or "colab-hub" in outputs
