# skelkit in a container: prep, pre-training and evaluation, installed from the dependency locks.
#   docker build --target runtime -t skelkit:runtime .     # the CLIs only (no dev extras, no tests)
#   docker build --target dev -t skelkit:dev .             # + pytest, ruff, scikit-learn and tests/
# Run commands (mounted data, --user, --shm-size) are in README.md, section "Docker".
#
# BASE_IMAGE needs python3 (3.11, the interpreter the locks are compiled for) with venv. A base
# that already holds /opt/venv with torch at the version pinned in pyproject.toml (as the one
# scripts/docker_check.sh builds offline) is used as is; otherwise scripts/install.sh installs that
# torch (from PyPI: the CUDA build on Linux; see README for a CPU-only index).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- dependencies: only the locks, pyproject.toml (the torch pin) and the installer -----------
# Edits to the sources do not invalidate this layer.
FROM ${BASE_IMAGE} AS deps
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SKELKIT_VENV=/opt/venv
# A CPU-only image from a base without torch: --build-arg SKELKIT_TORCH_INDEX=<PyTorch's CPU index>.
ARG SKELKIT_TORCH_INDEX=""
WORKDIR /opt/skelkit
COPY pyproject.toml requirements.lock requirements-dev.lock ./
COPY scripts/install.sh scripts/torch_pin.py scripts/
RUN SKELKIT_EXTRAS=none SKELKIT_DEPS_ONLY=1 bash scripts/install.sh

# Any uid may run the image (`docker run --user "$(id -u):$(id -g)"`), so everything a run writes
# outside /data goes to world-writable places: HOME and matplotlib's config under /tmp, and the
# numba cache filled at build time (scripts/numba_warmup.sh) opened to all.
# The default user is an unprivileged one.
RUN groupadd --gid 1000 skelkit \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /bin/bash skelkit \
 && mkdir -p /data /opt/numba-cache \
 && chmod 1777 /data /opt/numba-cache
ENV HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    NUMBA_CACHE_DIR=/opt/numba-cache

# ---- runtime: the sources, installed editable, kernels compiled -------------------------------
FROM deps AS runtime
COPY README.md ./
COPY skelkit ./skelkit
COPY scripts/numba_warmup.sh scripts/
RUN SKELKIT_EXTRAS=none bash scripts/install.sh \
 && bash scripts/numba_warmup.sh
USER skelkit
RUN skelprep --help >/dev/null && skeltrain --help >/dev/null && skeleval --help >/dev/null
WORKDIR /data
CMD ["skeleval", "--help"]

# ---- dev: the dev extras (their own layer, before the sources), tests and the rest ------------
FROM deps AS dev-deps
RUN SKELKIT_EXTRAS=dev SKELKIT_DEPS_ONLY=1 bash scripts/install.sh

FROM dev-deps AS dev
COPY README.md ./
COPY skelkit ./skelkit
COPY scripts ./scripts
COPY tests ./tests
COPY bench ./bench
RUN SKELKIT_EXTRAS=dev bash scripts/install.sh \
 && bash scripts/numba_warmup.sh
USER skelkit
WORKDIR /opt/skelkit
CMD ["python", "-m", "pytest", "-q", "tests"]
