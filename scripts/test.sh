#!/usr/bin/env bash
# Installs, then runs the tests in layers (README, "Tests in layers"):
#   bash scripts/test.sh                   the fast layers: tests/unit, tests/golden, tests/smoke
#                                          and tests/test_*.py, slow tests left out (< 3 minutes)
#   bash scripts/test.sh ci                the fast layers, then, in their own pytest run, the
#                                          slow tests (the learning checks, ...) in reduced form
#   SKELKIT_FULL=1 bash scripts/test.sh    every test, the slow ones at full size
# Further arguments go to every pytest run (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=fast
if [[ "${1:-}" == "ci" ]]; then
  mode=ci
  shift
fi
bash scripts/install.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
pytest=(.venv/bin/python -m pytest -q)
fast_layers=(tests/unit tests/golden tests/smoke tests/test_*.py)

if [[ "${SKELKIT_FULL:-0}" == "1" ]]; then
  export SKELKIT_REDUCED=0
  exec "${pytest[@]}" tests "$@"
fi

export SKELKIT_REDUCED=1
echo "[test] fast layers: ${fast_layers[*]} (not slow)"
"${pytest[@]}" -m "not slow" "${fast_layers[@]}" "$@"
if [[ "$mode" == "ci" ]]; then
  echo "[test] slow tests, reduced (SKELKIT_REDUCED=1): learning checks and the rest of -m slow"
  "${pytest[@]}" -m slow tests "$@"
fi
