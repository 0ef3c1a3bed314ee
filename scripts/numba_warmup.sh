#!/usr/bin/env bash
# Compiles skelkit's numba prep kernels into $NUMBA_CACHE_DIR by building two tiny synthetic stores
# (NTU: parser, body selection, both normalisations, modalities; PKU-MMD: its parser), so the first
# `skelprep build` in a container does not sit ~60 s compiling. The Docker image runs it at build
# time; the cache is then opened to every uid (`docker run --user` with any id reads it, and a
# machine with a different CPU can add its own entries).
set -euo pipefail
: "${NUMBA_CACHE_DIR:?set NUMBA_CACHE_DIR to the cache folder to fill}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for dataset in ntu60 pku2; do
  # Quiet when it works (progress bars in a build log are noise); the whole output when it fails.
  if ! { skelprep synth --dataset "$dataset" --out "$work/$dataset" --classes 2 --performers 2 \
         && skelprep build --dataset "$dataset" --raw "$work/$dataset" --out "$work/$dataset.zarr" \
              --workers 1; } >"$work/log" 2>&1; then
    cat "$work/log" >&2
    echo "[warmup] failed on the tiny $dataset store" >&2
    exit 1
  fi
done
chmod -R a+rwX "$NUMBA_CACHE_DIR"
echo "[warmup] $(find "$NUMBA_CACHE_DIR" -name '*.nbi' | wc -l) numba kernels cached in $NUMBA_CACHE_DIR"
