#!/usr/bin/env bash
# The main job on the embedded default: generate a small NTU-60-format dataset with the nuisance of
# real recordings (skelkit/synth/nuisance.py), build the store, pre-train CMD (tiny config,
# CPU), export embeddings, and compare KNN / linear-probe accuracy of three representations side by
# side: the raw fixed joints themselves, the CMD encoder at random initialisation (--epochs 0, same
# seed), and the pre-trained CMD encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT=${SKELKIT_DEMO_DIR:-demo}
EPOCHS=${SKELKIT_DEMO_EPOCHS:-50}
NUISANCE=${SKELKIT_DEMO_NUISANCE:-real}
mkdir -p "$OUT"
START=$SECONDS
set -x
skelprep synth --dataset ntu60 --out "$OUT/raw" --seed 0 --nuisance "$NUISANCE" --overwrite
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
# The raw-joint baseline: the store's fixed joints, flattened (cosine 1-NN; standardised probe).
skeleval knn --store "$OUT/ntu60.zarr" --protocol xsub --raw --json > "$OUT/raw.knn.json"
skeleval linear --store "$OUT/ntu60.zarr" --protocol xsub --raw --json > "$OUT/raw.linear.json"
set +x
.venv/bin/python - "$OUT" "$EPOCHS" "$((SECONDS - START))" <<'PY'
import json, sys
out, epochs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
for run, label in (("raw", "raw fixed joints (no encoder)"),
                   ("cmd-random", "CMD encoder, random init (--epochs 0)"),
                   ("cmd-tiny", f"CMD encoder, pre-trained ({epochs} epochs)")):
    knn = json.load(open(f"{out}/{run}.knn.json"))
    lin = json.load(open(f"{out}/{run}.linear.json"))
    rows.append((label, 100 * knn["top1"], 100 * lin["top1"]))
table = ["| representation (joint, xsub) | KNN k=1 top-1 % | linear top-1 % |",
         "| --- | ---: | ---: |"]
table += [f"| {label} | {k:.1f} | {l:.1f} |" for label, k, l in rows]
text = "\n".join(table) + f"\n\n(main job steps after install: {seconds} s)\n"
open(f"{out}/results.md", "w").write(text)
print("\n" + text)
PY
