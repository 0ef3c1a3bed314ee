#!/usr/bin/env bash
# Builds the Docker image's runtime target offline-ish and runs synth -> build -> train (1 epoch,
# tiny) -> embed -> knn in it, printing each step. Needs root, docker.io and debootstrap; no image
# registry (Debian's mirror and PyPI only). Too slow for CI (vfs storage: ~28 min on 2 cores); idempotent:
# each step is skipped when its result exists.
#   1. dockerd (vfs storage, no iptables, no bridge), log in $SKELKIT_DOCKER_LOG
#   2. a Debian bookworm rootfs in $SKELKIT_DOCKER_ROOTFS (debootstrap when the folder is empty),
#      imported as local/bookworm-py
#   3. local/skelkit-base:torch-PIN: a venv /opt/venv with the CPU torch wheel at the pin of
#      pyproject.toml (from pip's find-links, else `pip download`) and this machine's CA bundle
#   4. docker build --network host --target runtime (the time is printed; a second build after a
#      source edit reuses the dependency layer)
#   5. docker run --pull never --network none --user UID:GID --shm-size 2g -v DATA:/data
set -euo pipefail
cd "$(dirname "$0")/.."
ROOTFS=${SKELKIT_DOCKER_ROOTFS:-/work/dockerwork/rootfs}
LOG=${SKELKIT_DOCKER_LOG:-/work/dockerwork/dockerd.log}
IMAGE=${SKELKIT_DOCKER_IMAGE:-skelkit:runtime}
ROOT_IMAGE=local/bookworm-py
TORCH_VERSION=$(python3 scripts/torch_pin.py)
BASE_IMAGE=local/skelkit-base:torch-$TORCH_VERSION
export DOCKER_BUILDKIT=0  # the classic builder finds local/* base images without a registry
step() { echo; echo "=== [docker_check] $* ($(date -u +%T))"; }

step "1. dockerd"
if ! docker info >/dev/null 2>&1; then
  mkdir -p "$(dirname "$LOG")"
  nohup dockerd --storage-driver vfs --iptables=false --bridge=none >>"$LOG" 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $LOG" >&2; exit 1; }
  echo "started dockerd (pid $!), log $LOG"
else
  echo "dockerd already running"
fi

step "2. root filesystem $ROOTFS -> $ROOT_IMAGE"
if [ -z "$(ls -A "$ROOTFS" 2>/dev/null)" ]; then
  # Debian's mirror as apt on this machine has it configured (deb822 or one-line format).
  mirror=$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
             /etc/apt/sources.list.d /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^[:space:]]+' | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "debootstrap bookworm from $mirror"
  mkdir -p "$ROOTFS"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$ROOTFS" "$mirror"
  docker image rm -f "$ROOT_IMAGE" >/dev/null 2>&1 || true
fi
if ! docker image inspect "$ROOT_IMAGE" >/dev/null 2>&1; then
  tar -C "$ROOTFS" -c . | docker import - "$ROOT_IMAGE"
fi
docker image ls "$ROOT_IMAGE"

step "3. base image $BASE_IMAGE (torch $TORCH_VERSION CPU wheel, CA bundle)"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  wheel=""
  for dir in ${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}; do
    wheel=$(ls "$dir"/torch-"$TORCH_VERSION"+cpu-cp311-*.whl 2>/dev/null | head -1) && [ -n "$wheel" ] && break
  done
  if [ -n "$wheel" ]; then cp "$wheel" "$ctx/"; else python3 -m pip download --no-deps -d "$ctx" "torch==$TORCH_VERSION"; fi
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $ROOT_IMAGE
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY torch-*.whl /tmp/wheels/
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/python -m pip install --no-deps --no-index --no-cache-dir /tmp/wheels/torch-*.whl \\
 && rm -rf /tmp/wheels
DOCKERFILE
  docker build --network host -t "$BASE_IMAGE" "$ctx"
fi
docker run --rm --pull never --network none "$BASE_IMAGE" /opt/venv/bin/python -c \
  "from importlib.metadata import version; print('base torch', version('torch'))"

step "4. docker build --target runtime -> $IMAGE"
start=$SECONDS
docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" --target runtime -t "$IMAGE" .
echo "[docker_check] build took $((SECONDS - start)) s"

step "5. synth -> build -> train -> embed -> knn in $IMAGE"
data=$(mktemp -d)
user="$(id -u):$(id -g)"
if [ "$(id -u)" = 0 ]; then
  # Running as root here would hide permission problems: use an unprivileged uid the image has
  # never heard of, owning the mounted folder, as a user's own uid would.
  user=${SKELKIT_DOCKER_USER:-4321:4321}
  chown "$user" "$data"
fi
echo "data folder $data, --user $user"
start=$SECONDS
docker run --rm --pull never --network none --user "$user" --shm-size=2g -v "$data:/data" "$IMAGE" bash -c '
set -euxo pipefail
skelprep synth --dataset ntu60 --out raw --classes 5 --performers 6 --seed 0
skelprep build --dataset ntu60 --raw raw --out ntu60.zarr --workers 2
skeltrain run cmd --store ntu60.zarr --protocol xsub --config tiny --epochs 1 --device cpu --run-dir runs/cmd-tiny --seed 0
skeltrain embed --run runs/cmd-tiny --modality joint --out cmd-tiny.h5
skeleval knn --emb cmd-tiny.h5'
echo "[docker_check] run took $((SECONDS - start)) s; outputs in $data"
ls -ln "$data"
