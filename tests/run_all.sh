#!/usr/bin/env bash
# The whole test suite in three pytest processes (README's test command and .ci/run).
# One process for everything once died inside XLA's compiler (SIGSEGV) after ~400 tests, a crash
# we could not reproduce in smaller processes; separate processes also keep each one's compiled
# programs and memory small. Extra arguments go to every pytest call.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q "$@" tests/phiid tests/analysis
python -m pytest -q "$@" tests/models tests/tasks tests/test_*.py
python -m pytest -q "$@" tests/pipeline tests/training
