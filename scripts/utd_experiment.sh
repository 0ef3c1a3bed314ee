#!/usr/bin/env bash
# UTD-MHAD xsub (odd subjects train, even test): SkeletonCLR and CMD pre-trained on CPU, against
# the same encoders at random initialisation (--epochs 0, same seed). Reports KNN (k = 1) and
# linear-probe (80 epochs, lr 0.1, x0.1 at 50 and 70) top-1 of the frozen joint embeddings, the
# probe once with the evaluator's batch 256 (2 steps an epoch on 431 train samples) and once
# with batch 32.
#
#   scripts/utd_experiment.sh [RAW_DIR] [OUT_DIR]
#
# RAW_DIR defaults to ../shared/data/utd-mhad, OUT_DIR to runs/utd-experiment. Environment:
#   EPOCHS_SKELETONCLR (8), EPOCHS_CMD (22)  pre-training epochs (configs */utd-mhad.yaml)
#   PARALLEL (1)          pre-train both methods at the same time (two processes)
#   DEVICE (cpu), SEED (0), PYTHON (.venv/bin/python), OMP_NUM_THREADS (1)
#   SKELKIT_REDUCED=1     1 epoch each, batch 8, a 5-epoch linear probe (the test's smoke run)
# Writes OUT_DIR/results.json and OUT_DIR/results.md (the table) and prints the table.
set -euo pipefail

RAW=${1:-../shared/data/utd-mhad}
OUT=${2:-runs/utd-experiment}
PY=${PYTHON:-.venv/bin/python}
DEVICE=${DEVICE:-cpu}
SEED=${SEED:-0}
PARALLEL=${PARALLEL:-1}
EPOCHS_SKELETONCLR=${EPOCHS_SKELETONCLR:-8}
EPOCHS_CMD=${EPOCHS_CMD:-22}
LINEAR_EPOCHS=80
LINEAR_MILESTONES=50,70
TRAIN_ARGS=()
if [[ "${SKELKIT_REDUCED:-0}" == "1" ]]; then
  EPOCHS_SKELETONCLR=1 EPOCHS_CMD=1 LINEAR_EPOCHS=5 LINEAR_MILESTONES=3,4
  TRAIN_ARGS=(--batch-size 8)  # a subset of the files may hold fewer than 32 train samples
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export PYTHONPATH=${PYTHONPATH:-.}

skelprep() { "$PY" -m skelkit.prep.cli "$@"; }
skeltrain() { "$PY" -m skelkit.train.cli "$@"; }
skeleval() { "$PY" -m skelkit.eval.cli "$@"; }

mkdir -p "$OUT"
STORE="$OUT/utd.zarr"
echo "== $(date -u +%H:%M:%S) build $STORE from $RAW"
skelprep build --dataset utd-mhad --raw "$RAW" --out "$STORE" --workers 2 --overwrite
skelprep verify "$STORE"

pretrain() {  # METHOD EPOCHS RUN_DIR
  local start=$SECONDS
  rm -rf "$3" "$3.log" "$3.seconds"  # a rerun starts its runs afresh
  skeltrain run "$1" --store "$STORE" --protocol xsub --config "$1/utd-mhad" --epochs "$2" \
    --device "$DEVICE" --seed "$SEED" --run-dir "$3" --no-progress ${TRAIN_ARGS[@]+"${TRAIN_ARGS[@]}"} \
    > "$3.log" 2>&1 || { echo "skeltrain run $1 failed: $(tail -n 1 "$3.log")" >&2; return 1; }
  echo "$1 $2 epochs: $((SECONDS - start)) s" | tee "$3.seconds"
}

echo "== $(date -u +%H:%M:%S) random-init encoders (--epochs 0)"
pretrain skeletonclr 0 "$OUT/skeletonclr-init"
pretrain cmd 0 "$OUT/cmd-init"

echo "== $(date -u +%H:%M:%S) pre-training (skeletonclr $EPOCHS_SKELETONCLR, cmd $EPOCHS_CMD epochs)"
if [[ "$PARALLEL" == "1" ]]; then
  pretrain skeletonclr "$EPOCHS_SKELETONCLR" "$OUT/skeletonclr" & sclr=$!
  pretrain cmd "$EPOCHS_CMD" "$OUT/cmd" & cmd=$!
  wait "$sclr"
  wait "$cmd"
else
  pretrain skeletonclr "$EPOCHS_SKELETONCLR" "$OUT/skeletonclr"
  pretrain cmd "$EPOCHS_CMD" "$OUT/cmd"
fi

echo "== $(date -u +%H:%M:%S) embed and evaluate"
for run in skeletonclr-init skeletonclr cmd-init cmd; do
  skeltrain embed --run "$OUT/$run" --modality joint --out "$OUT/$run.h5" --device "$DEVICE" \
    --no-progress
  skeleval knn --emb "$OUT/$run.h5" --k 1 --json --device "$DEVICE" --no-record > "$OUT/$run.knn.json"
  skeleval linear --emb "$OUT/$run.h5" --epochs "$LINEAR_EPOCHS" --milestones "$LINEAR_MILESTONES" \
    --json --device "$DEVICE" --seed "$SEED" --no-record > "$OUT/$run.linear.json"
  skeleval linear --emb "$OUT/$run.h5" --epochs "$LINEAR_EPOCHS" --milestones "$LINEAR_MILESTONES" \
    --batch-size 32 --json --device "$DEVICE" --seed "$SEED" --no-record > "$OUT/$run.linear32.json"
done

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = []
for method in ("skeletonclr", "cmd"):
    for run, what in ((f"{method}-init", "random init (--epochs 0)"), (method, "pre-trained")):
        knn = json.loads((out / f"{run}.knn.json").read_text())
        linear = json.loads((out / f"{run}.linear.json").read_text())
        linear32 = json.loads((out / f"{run}.linear32.json").read_text())
        seconds = (out / f"{run}.seconds").read_text().split(":")[-1].strip()
        rows.append({"method": method, "encoder": what, "run": run, "knn_top1": knn["top1"],
                     "linear_top1": linear["top1"], "linear_b32_top1": linear32["top1"],
                     "n_train": knn["n_train"],
                     "n_test": knn["n_test"], "pretrain": seconds})
    rows.append({"method": method, "encoder": "supervised on xsub train", "run": None,
                 "knn_top1": None, "linear_top1": None, "linear_b32_top1": None,
                 "note": "missing: skeltrain has no supervised mode"})
(out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
lines = ["| method | encoder | KNN k=1 top-1 (%) | linear top-1 (%), batch 256 | "
         "linear top-1 (%), batch 32 | pre-training |",
         "| --- | --- | --- | --- | --- | --- |"]
for r in rows:
    if r["knn_top1"] is None:
        lines.append(f"| {r['method']} | {r['encoder']} | n/a | n/a | n/a | {r['note']} |")
    else:
        lines.append(f"| {r['method']} | {r['encoder']} | {100 * r['knn_top1']:.1f} | "
                     f"{100 * r['linear_top1']:.1f} | {100 * r['linear_b32_top1']:.1f} | "
                     f"{r['pretrain']} |")
(out / "results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "== $(date -u +%H:%M:%S) done: $OUT/results.md"
