#!/usr/bin/env bash
# Creates .venv and installs skelkit into it from the dependency locks (scripts/lock.sh writes them).
# Idempotent: a second run with unchanged locks and pin only checks (a second or two).
#   1. requirements-dev.lock (or requirements.lock when SKELKIT_EXTRAS=none), every file checked
#      against its sha256, no resolver (--no-deps): the versions CI and the Docker image run.
#   2. torch at the version pinned in pyproject.toml, outside the hash lock: its build depends on
#      the machine (a plain `torch` from PyPI pulls several GB of CUDA wheels onto a CPU machine),
#      its own dependencies are already in the lock.
#   3. skelkit itself, editable, --no-deps.
# Settings (environment): PYTHON (interpreter for a new venv, default python3);
# SKELKIT_VENV (default .venv); SKELKIT_EXTRAS=dev|none (default dev); SKELKIT_DEPS_ONLY=1 stops
# after step 2 (the Docker dependency layer); SKELKIT_TORCH_INDEX (an index URL for torch).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${SKELKIT_VENV:-.venv}
case ${SKELKIT_EXTRAS:-dev} in
  dev) LOCK=requirements-dev.lock ;;
  none) LOCK=requirements.lock ;;
  *) echo "install: SKELKIT_EXTRAS must be dev or none, not '${SKELKIT_EXTRAS}'" >&2; exit 2 ;;
esac
[ -x "$VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$VENV"
VPY=$VENV/bin/python
PIP=("$VPY" -m pip install --quiet --disable-pip-version-check)
TORCH_VERSION=$("$VPY" scripts/torch_pin.py)

# Step 1 is skipped when the stamp records the same lock file contents and torch pin.
STAMP=$VENV/.skelkit-deps
wanted="$LOCK $(sha256sum "$LOCK" | cut -d' ' -f1) torch==$TORCH_VERSION"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$wanted" ]; then
  echo "[install] $LOCK (hash-checked)"
  "${PIP[@]}" --require-hashes --no-deps -r "$LOCK"
  rm -f "$STAMP"
fi

# Step 2: the installed torch must be the pinned release (any local build tag: +cpu, +cu128, ...).
installed=$("$VPY" -c "from importlib.metadata import version; print(version('torch'))" 2>/dev/null || true)
if [ "${installed%%+*}" != "$TORCH_VERSION" ]; then
  [ -z "$installed" ] || echo "[install] replacing torch $installed with the pinned $TORCH_VERSION"
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
if [ ! -f "$STAMP" ]; then
  # torch's requirements against the locked versions; any conflict fails here, not at run time.
  "$VPY" -m pip check --disable-pip-version-check >/dev/null || { "$VPY" -m pip check; exit 1; }
  echo "$wanted" >"$STAMP"
fi
[ "${SKELKIT_DEPS_ONLY:-0}" = 1 ] && { echo "[install] dependencies ready in $VENV (torch $TORCH_VERSION)"; exit 0; }

# Step 3: editable install of this checkout, unless the venv already points here. setuptools comes
# from the lock, so no isolated build environment has to be fetched.
if ! "$VPY" -c "import pathlib, sys, skelkit; sys.exit(pathlib.Path(skelkit.__file__).parent != pathlib.Path('skelkit').resolve())" 2>/dev/null \
   || [ ! -x "$VENV/bin/skeltrain" ]; then
  "${PIP[@]}" --no-deps --no-build-isolation -e .
fi
echo "[install] skelkit $("$VPY" -c 'import skelkit; print(skelkit.__version__)') ready in $VENV (torch $TORCH_VERSION)"
