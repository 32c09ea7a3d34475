"""The package as a user installs it: a real (non-editable) install into a scratch folder, then
the README's "ΦID in one minute" code run verbatim from another directory, and the package data
(shipped default model, prompt suite) found in the installed copy."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def readme_section_code(title: str) -> str:
  """The ```python blocks of the README section ``## <title>``, joined in order."""
  text = (ROOT / "README.md").read_text()
  start = text.index(f"## {title}")
  end = text.find("\n## ", start + 1)
  blocks = re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)
  assert blocks, f"README section {title!r} has no python code"
  return "\n".join(blocks)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """site-packages-like folder holding only synergy_jax, installed by pip from a copy of the
  sources (so the build leaves nothing in the working tree)."""
  tmp = tmp_path_factory.mktemp("install")
  src = tmp / "src"
  src.mkdir()
  for name in ("synergy_jax", "pyproject.toml", "requirements.txt", "README.md"):
    copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
    copy(ROOT / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                     if (ROOT / name).is_dir() else {}))
  site = tmp / "site"
  proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                         "--no-build-isolation", "--target", str(site), str(src)],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return site


def _run_outside(code: str, site: pathlib.Path, cwd: pathlib.Path):
  script = cwd / "snippet.py"
  script.write_text(code)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)  # only the installed copy: the repository is not on the path
  return subprocess.run([sys.executable, str(script)], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def test_readme_snippet_runs_verbatim_from_anywhere_and_package_data_is_installed(installed,
                                                                                 tmp_path):
  # The README code exactly as printed, then checks of the installed copy in the same process.
  check = ("\nimport importlib.metadata, synergy_jax\n"
           "from synergy_jax import models, tasks\n"
           "print('file', synergy_jax.__file__)\n"
           "print('version', importlib.metadata.version('synergy_jax'))\n"
           "print('layers', models.load('default').config.num_layers)\n"
           "print('prompts', len(tasks.prompt_suite()))\n")
  proc = _run_outside(readme_section_code("ΦID in one minute") + check, installed, tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert "(32,)" in lines and "xty" in proc.stdout  # y follows x: the unique x → y atom is printed
  out = dict(line.split(" ", 1) for line in lines[-4:])
  assert pathlib.Path(out["file"]).is_relative_to(installed)  # not the repository's copy
  assert out["version"] == "0.1.0"
  assert int(out["layers"]) >= 1 and int(out["prompts"]) >= 60
