#!/usr/bin/env bash
# Refreshes the dependency locks from pyproject.toml (the one command; commit both files after):
#   requirements.lock      runtime dependencies, every file's sha256
#   requirements-dev.lock  runtime + the `dev` extra, runtime versions held to requirements.lock
# Compiled with uv (pinned below; installed into .venv on first use) for CPython 3.11 on x86_64
# Linux, the interpreter of CI and of the Docker image. torch is resolved (its own dependencies are
# locked) but not written: its build differs per machine (CPU wheel here, CUDA wheel on GPU hosts),
# so scripts/install.sh installs it by the version pinned in pyproject.toml (scripts/torch_pin.py).
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
[ -x .venv/bin/python ] || { echo "lock: .venv is missing; run 'bash scripts/install.sh' first" >&2; exit 2; }
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
TORCH_VERSION=$(python3 scripts/torch_pin.py)
# Resolve against torch's CPU build, whose dependencies are platform-neutral (the CUDA build adds
# nvidia-* wheels that a CPU machine must not be forced to install). Its wheel comes from pip's
# find-links where configured (this machine: /etc/pip.conf), else from PyTorch's CPU index.
override=$(mktemp)
trap 'rm -f "$override"' EXIT
echo "torch==$TORCH_VERSION+cpu" >"$override"
sources=()
find_links=${SKELKIT_TORCH_FIND_LINKS:-${PIP_FIND_LINKS:-$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)}}
if [ -n "$find_links" ]; then
  for dir in $find_links; do sources+=(--find-links "$dir"); done
else
  sources+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi
compile=(.venv/bin/uv pip compile pyproject.toml --quiet --generate-hashes --no-emit-package torch
         --override "$override" "${sources[@]}" --python-version 3.11
         --python-platform x86_64-manylinux_2_28 --custom-compile-command "bash scripts/lock.sh")
"${compile[@]}" --output-file requirements.lock
"${compile[@]}" --extra dev --constraint requirements.lock --output-file requirements-dev.lock
echo "[lock] torch==$TORCH_VERSION (pinned in pyproject.toml, installed outside the hash lock)"
echo "[lock] requirements.lock: $(grep -c '^[a-z0-9]' requirements.lock) packages;" \
     "requirements-dev.lock: $(grep -c '^[a-z0-9]' requirements-dev.lock) packages"
