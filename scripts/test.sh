#!/usr/bin/env bash
# Installs, then runs the whole test suite. Slow tests run in reduced form unless SKELKIT_REDUCED=0.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export SKELKIT_REDUCED=${SKELKIT_REDUCED:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q "$@"
