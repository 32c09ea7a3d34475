"""Resolving a model name to a local Hugging Face-layout directory.

  "default"        -> synergy_jax/assets/default/ (the model shipped with the package)
  an existing path -> itself
  "owner/name"     -> a snapshot in the local Hugging Face cache; downloaded when a network is
  "name"              available and HF_HUB_OFFLINE is not set, otherwise FileNotFoundError. Ids
                      without a namespace ("gpt2", "distilgpt2") are hub ids as well.
  "ID@REVISION"    -> that revision (branch, tag or commit, e.g. "EleutherAI/pythia-160m@step1000"):
                      offline it is found through the cache's refs/<revision> → snapshots/<commit>.
"""
from __future__ import annotations

import os
import pathlib
import re

DEFAULT_NAME = "default"
DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "default"
_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]
# A hub repo id: an optional "owner/" and a name, letters, digits, "-", "_", "." (no "..").
_HUB_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


def with_revision(name: str, revision: str | None) -> str:
  """``name`` with ``revision`` attached as NAME@REVISION (``revision`` None: ``name`` as it is).

  Raises ValueError when both ``name`` carries "@..." and ``revision`` is given differently.
  """
  if not revision:
    return name
  _, own = split_revision(name)
  if own is not None and own != revision:
    raise ValueError(f"model {name!r} names revision {own!r} but --revision={revision!r} was also "
                     "given; give one of them")
  return name if own is not None else f"{name}@{revision}"


def split_revision(name: str) -> tuple[str, str | None]:
  """("owner/name", "rev") for "owner/name@rev"; (name, None) without "@" or for an existing path."""
  if "@" not in name or pathlib.Path(name).expanduser().exists():
    return name, None
  repo, revision = name.rsplit("@", 1)
  if not repo or not revision:
    raise ValueError(f"model {name!r}: expected ID@REVISION with both parts non-empty")
  return repo, revision


def _offline() -> bool:
  return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir() -> str:
  if os.environ.get("HF_HUB_CACHE"):
    return os.environ["HF_HUB_CACHE"]
  if os.environ.get("HF_HOME"):
    return os.path.join(os.environ["HF_HOME"], "hub")
  from huggingface_hub import constants
  return constants.HF_HUB_CACHE


def resolve(path_or_id: str | os.PathLike) -> pathlib.Path:
  """Local directory for a model name (see module docstring). Raises FileNotFoundError."""
  name = os.fspath(path_or_id)
  if name == DEFAULT_NAME:
    if not (DEFAULT_DIR / "config.json").exists():
      raise FileNotFoundError(
          f"the shipped default model is missing: {DEFAULT_DIR} has no config.json (it is "
          "written by the training pipeline, synergy_jax.training)")
    return DEFAULT_DIR
  repo, revision = split_revision(name)
  path = pathlib.Path(repo).expanduser()
  if path.exists():
    if not path.is_dir():
      raise FileNotFoundError(f"{path} is a file; a model is a directory with config.json and "
                              "*.safetensors")
    return path
  looks_like_id = (_HUB_ID.match(repo) is not None and ".." not in repo
                   and not repo.startswith((".", "~")))
  if not looks_like_id:
    raise FileNotFoundError(f"model directory {name!r} does not exist (and it is not a hub id "
                            "such as gpt2 or owner/name)")
  return _hub_snapshot(repo, revision)


def _hub_snapshot(repo_id: str, revision: str | None = None) -> pathlib.Path:
  from huggingface_hub import snapshot_download
  from huggingface_hub.errors import LocalEntryNotFoundError

  cache = _cache_dir()
  what = repo_id if revision is None else f"{repo_id} at revision {revision!r}"
  try:
    return pathlib.Path(snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                          local_files_only=True, allow_patterns=_PATTERNS))
  except LocalEntryNotFoundError:  # also an incomplete cached snapshot
    pass
  if _offline():
    raise FileNotFoundError(f"{what} is not a local directory, and as a hub model it is not in the "
                            f"local Hugging Face cache ({cache}); HF_HUB_OFFLINE is set, so it "
                            "cannot be downloaded")
  try:
    return pathlib.Path(snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                          allow_patterns=_PATTERNS))
  except (OSError, ValueError) as e:  # network failures, unknown repos or revisions, gated repos
    raise FileNotFoundError(f"{what} is not a local directory, and as a hub model it is not in the "
                            f"local Hugging Face cache ({cache}) and downloading it failed: "
                            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from e
