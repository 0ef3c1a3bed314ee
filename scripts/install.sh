#!/usr/bin/env bash
# Creates .venv and installs skelkit into it. Idempotent: a second run only checks.
# torch first, chosen for the machine: a CUDA build only where a GPU answers, otherwise the CPU
# build (a plain `torch` requirement would pull several GB of CUDA wheels onto a CPU-only machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
TORCH_VERSION=${SKELKIT_TORCH_VERSION:-2.13.0}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "[install] GPU found: torch==$TORCH_VERSION (CUDA build)"
    "${PIP[@]}" "torch==$TORCH_VERSION"
  elif [ -n "${SKELKIT_TORCH_INDEX:-}" ]; then
    echo "[install] no GPU: torch==$TORCH_VERSION from $SKELKIT_TORCH_INDEX"
    "${PIP[@]}" "torch==$TORCH_VERSION" --index-url "$SKELKIT_TORCH_INDEX"
  else
    # Where pip's find-links holds the CPU wheel (as on our machines) this picks it: the local
    # version 2.13.0+cpu sorts above the registry's 2.13.0.
    echo "[install] no GPU: torch==$TORCH_VERSION (CPU build where available)"
    "${PIP[@]}" "torch==$TORCH_VERSION"
  fi
fi
"${PIP[@]}" -e ".[dev]"
echo "[install] skelkit $(.venv/bin/python -c 'import skelkit; print(skelkit.__version__)') ready in .venv"
