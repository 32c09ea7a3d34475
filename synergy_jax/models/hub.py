"""Resolving a model name to a local Hugging Face-layout directory.

  "default"        -> synergy_jax/assets/default/ (the model shipped with the package)
  an existing path -> itself
  "owner/name"     -> a snapshot in the local Hugging Face cache; downloaded when a network is
                      available and HF_HUB_OFFLINE is not set, otherwise FileNotFoundError.
"""
from __future__ import annotations

import os
import pathlib

DEFAULT_NAME = "default"
DEFAULT_DIR = pathlib.Path(__file__).resolve().parents[1] / "assets" / "default"
_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]


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
  path = pathlib.Path(name).expanduser()
  if path.exists():
    if not path.is_dir():
      raise FileNotFoundError(f"{path} is a file; a model is a directory with config.json and "
                              "*.safetensors")
    return path
  looks_like_id = (name.count("/") == 1 and not name.startswith((".", "/", "~"))
                   and all(name.split("/")))
  if not looks_like_id:
    raise FileNotFoundError(f"model directory {name!r} does not exist (and it is not a hub id "
                            "of the form owner/name)")
  return _hub_snapshot(name)


def _hub_snapshot(repo_id: str) -> pathlib.Path:
  from huggingface_hub import snapshot_download
  from huggingface_hub.errors import LocalEntryNotFoundError

  cache = _cache_dir()
  try:
    return pathlib.Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True,
                                          allow_patterns=_PATTERNS))
  except LocalEntryNotFoundError:
    pass
  if _offline():
    raise FileNotFoundError(f"{repo_id!r} is not a local directory, and as a hub model it is not "
                            f"in the local Hugging Face cache ({cache}); HF_HUB_OFFLINE is set, so "
                            "it cannot be downloaded")
  try:
    return pathlib.Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=_PATTERNS))
  except (OSError, ValueError) as e:  # network failures, unknown repos, gated repos
    raise FileNotFoundError(f"{repo_id!r} is not a local directory, and as a hub model it is not "
                            f"in the local Hugging Face cache ({cache}) and downloading it failed: "
                            f"{type(e).__name__}: {e}") from e
