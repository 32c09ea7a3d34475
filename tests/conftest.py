"""Shared test setup.

Eight simulated CPU devices so that sharding tests run on a laptop or CI; this must be set before
JAX initialises its backends, hence at import time of the root conftest.
"""
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
STORIES260K = SHARED / "models" / "stories260k"


@pytest.fixture(scope="session")
def stories260k_dir():
  """Path to the real pretrained Llama in ../shared; skips where the folder is absent."""
  if not (STORIES260K / "config.json").exists():
    pytest.skip(f"{STORIES260K} is absent (a fresh clone outside CI has no ../shared/)")
  return STORIES260K


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_programs():
  """Drops JAX's compiled programs after each test module. Every XLA:CPU executable keeps its
  machine code in memory mappings of its own; one pytest process that compiles a few thousand
  programs reaches the kernel's limit on mappings per process (vm.max_map_count, 65 530 by
  default) and dies inside XLA's compiler with SIGSEGV (seen 2026-12-04: tests/models alone
  reached 64 000 mappings after ~270 tests). Programs are rarely shared across modules, so the
  recompilation this costs is small."""
  yield
  import jax
  jax.clear_caches()
  import gc
  gc.collect()
