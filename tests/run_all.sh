#!/usr/bin/env bash
# The whole test suite in three pytest processes (README's test command and .ci/run).
# One process for everything once died inside XLA's compiler (SIGSEGV) after ~400 tests; the
# likely cause, found 2026-12-04, is the kernel's limit on memory mappings per process (every
# XLA:CPU executable maps its code; tests/conftest.py now drops compiled programs after each
# module). Separate processes still keep each one's compiled programs and memory small. Extra
# arguments go to every pytest call.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q "$@" tests/phiid tests/analysis
python -m pytest -q "$@" tests/models tests/tasks tests/test_*.py
python -m pytest -q "$@" tests/pipeline tests/training
