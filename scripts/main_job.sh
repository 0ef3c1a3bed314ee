#!/usr/bin/env bash
# The main job on the embedded default: generate a small NTU-60-format dataset, build the store,
# pre-train CMD (tiny config, CPU), export embeddings, and compare KNN / linear-probe accuracy of
# the pre-trained encoder against the same encoder at random initialisation.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT=${SKELKIT_DEMO_DIR:-demo}
EPOCHS=${SKELKIT_DEMO_EPOCHS:-20}
mkdir -p "$OUT"
set -x
skelprep synth --dataset ntu60 --out "$OUT/raw" --seed 0
skelprep build --dataset ntu60 --raw "$OUT/raw" --out "$OUT/ntu60.zarr" --overwrite
skelprep info "$OUT/ntu60.zarr"
skelprep verify "$OUT/ntu60.zarr"
skeltrain run cmd --store "$OUT/ntu60.zarr" --protocol xsub --config tiny --epochs "$EPOCHS" \
  --device auto --run-dir "$OUT/runs/cmd-tiny" --seed 0
skeltrain run cmd --store "$OUT/ntu60.zarr" --protocol xsub --config tiny --epochs 0 \
  --device auto --run-dir "$OUT/runs/cmd-random" --seed 0
for run in cmd-tiny cmd-random; do
  skeltrain embed --run "$OUT/runs/$run" --modality joint --out "$OUT/$run.h5"
  skeleval knn --emb "$OUT/$run.h5" --json > "$OUT/$run.knn.json"
  skeleval linear --emb "$OUT/$run.h5" --json > "$OUT/$run.linear.json"
done
set +x
.venv/bin/python - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
rows = []
for run, label in (("cmd-random", "random init"), ("cmd-tiny", "CMD pre-trained")):
    knn = json.load(open(f"{out}/{run}.knn.json"))
    lin = json.load(open(f"{out}/{run}.linear.json"))
    rows.append((label, 100 * knn["top1"], 100 * lin["top1"]))
print("\n| encoder (joint, xsub) | KNN k=1 top-1 % | linear top-1 % |")
print("| --- | ---: | ---: |")
for label, k, l in rows:
    print(f"| {label} | {k:.1f} | {l:.1f} |")
PY
