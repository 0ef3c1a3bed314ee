#!/usr/bin/env bash
# UTD-MHAD xsub (odd subjects train, even test), everything a reader needs side by side:
# - raw fixed joints without any encoder (cosine 1-NN; standardised logistic regression);
# - the plain supervised script bench/utd_supervised_plain.py (BiGRU 2 x 128, Adam, 20 epochs);
# - per encoder (SkeletonCLR's ST-GCN 1/8, CMD's BiGRU 2 x 128; configs */utd-mhad.yaml):
#   random initialisation (--epochs 0, same seed) and the CPU pre-training, frozen: KNN (k = 1)
#   and linear probe (80 epochs, lr 0.1, x0.1 at 50 and 70; batch 256 and batch 32);
#   supervised from scratch (`skeleval finetune --scratch`, recipe supervised) and fine-tuned
#   from the pre-trained run (recipe i2md, the published fine-tune protocol): classifier top-1.
#
#   scripts/utd_experiment.sh [RAW_DIR] [OUT_DIR]
#
# RAW_DIR defaults to ../shared/data/utd-mhad, OUT_DIR to runs/utd-experiment. Environment:
#   EPOCHS_SKELETONCLR (8), EPOCHS_CMD (22)  pre-training epochs (configs */utd-mhad.yaml)
#   PARALLEL (1)          pre-train both methods at the same time (two processes)
#   DEVICE (cpu), SEED (0), PYTHON (.venv/bin/python), OMP_NUM_THREADS (1)
#   SKELKIT_REDUCED=1     1 epoch each, batch 8, 5-epoch linear probes, 2-epoch fine-tunes and
#                         plain script (the test's smoke run)
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
FINETUNE_ARGS=()
PLAIN_EPOCHS=20
if [[ "${SKELKIT_REDUCED:-0}" == "1" ]]; then
  EPOCHS_SKELETONCLR=1 EPOCHS_CMD=1 LINEAR_EPOCHS=5 LINEAR_MILESTONES=3,4 PLAIN_EPOCHS=2
  TRAIN_ARGS=(--batch-size 8)  # a subset of the files may hold fewer than 32 train samples
  FINETUNE_ARGS=(--epochs 2 --milestones 1 --batch-size 8)
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

echo "== $(date -u +%H:%M:%S) raw fixed joints and the plain supervised script"
if skeleval knn --help | grep -q -- "--raw"; then
  skeleval knn --store "$STORE" --protocol xsub --raw --json --no-record > "$OUT/raw.knn.json"
  skeleval linear --store "$STORE" --protocol xsub --raw --json --no-record > "$OUT/raw.linear.json"
else  # an evaluator without --raw: the same numbers with numpy / scikit-learn
  "$PY" bench/raw_baselines.py "$STORE" --protocol xsub --linear --json > "$OUT/raw.bench.json"
  "$PY" -c "import json,sys; r=json.load(open(sys.argv[1]))
json.dump({'top1': r['knn_top1']}, open(sys.argv[2], 'w'))
json.dump({'top1': r['linear_top1']}, open(sys.argv[3], 'w'))" \
    "$OUT/raw.bench.json" "$OUT/raw.knn.json" "$OUT/raw.linear.json"
fi
"$PY" bench/utd_supervised_plain.py "$STORE" --epochs "$PLAIN_EPOCHS" --seed "$SEED" \
  | tail -n 1 | tee "$OUT/plain.txt"

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

echo "== $(date -u +%H:%M:%S) supervised from scratch and fine-tuned from the pre-trained runs"
for method in skeletonclr cmd; do
  skeleval finetune --run "$OUT/$method-init" --store "$STORE" --protocol xsub --scratch \
    --json --device "$DEVICE" --seed "$SEED" --no-progress --no-record \
    ${FINETUNE_ARGS[@]+"${FINETUNE_ARGS[@]}"} > "$OUT/$method.scratch.json"
  skeleval finetune --run "$OUT/$method" --store "$STORE" --protocol xsub --recipe i2md \
    --json --device "$DEVICE" --seed "$SEED" --no-progress --no-record \
    ${FINETUNE_ARGS[@]+"${FINETUNE_ARGS[@]}"} > "$OUT/$method.finetune.json"
done

"$PY" - "$OUT" <<'EOF'
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])


def load(name):
    return json.loads((out / name).read_text())


raw_knn, raw_linear = load("raw.knn.json"), load("raw.linear.json")
plain = re.search(r"final test top-1 ([0-9.]+) %", (out / "plain.txt").read_text())
rows = [{"method": None, "encoder": "raw fixed joints (no encoder)", "run": None,
         "knn_top1": raw_knn["top1"], "linear_top1": raw_linear["top1"], "linear_b32_top1": None,
         "classifier_top1": None},
        {"method": None, "encoder": "plain supervised script (BiGRU 2 x 128, Adam)",
         "run": None, "knn_top1": None, "linear_top1": None, "linear_b32_top1": None,
         "classifier_top1": float(plain.group(1)) / 100 if plain else None}]
for method in ("skeletonclr", "cmd"):
    for run, what in ((f"{method}-init", "random init (--epochs 0)"), (method, "pre-trained")):
        knn = load(f"{run}.knn.json")
        linear, linear32 = load(f"{run}.linear.json"), load(f"{run}.linear32.json")
        seconds = (out / f"{run}.seconds").read_text().split(":")[-1].strip()
        rows.append({"method": method, "encoder": what, "run": run, "knn_top1": knn["top1"],
                     "linear_top1": linear["top1"], "linear_b32_top1": linear32["top1"],
                     "classifier_top1": None, "n_train": knn["n_train"],
                     "n_test": knn["n_test"], "pretrain": seconds})
    for kind, what in (("scratch", "supervised from scratch (recipe supervised)"),
                       ("finetune", "fine-tuned from pre-trained (recipe i2md)")):
        result = load(f"{method}.{kind}.json")
        rows.append({"method": method, "encoder": what, "run": f"{method}.{kind}",
                     "knn_top1": None, "linear_top1": None, "linear_b32_top1": None,
                     "classifier_top1": result["top1"], "recipe": result["recipe"],
                     "epochs": result["epochs"]})
(out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")


def pct(value):
    return "" if value is None else f"{100 * value:.1f}"


lines = ["| method | encoder | KNN k=1 top-1 (%) | linear top-1 (%), batch 256 | "
         "linear top-1 (%), batch 32 | classifier top-1 (%) |",
         "| --- | --- | ---: | ---: | ---: | ---: |"]
for r in rows:
    lines.append(f"| {r['method'] or '-'} | {r['encoder']} | {pct(r['knn_top1'])} | "
                 f"{pct(r['linear_top1'])} | {pct(r['linear_b32_top1'])} | "
                 f"{pct(r['classifier_top1'])} |")
(out / "results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "== $(date -u +%H:%M:%S) done: $OUT/results.md"
