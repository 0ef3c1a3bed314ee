"""Raw-coordinate baselines of a store, computed with numpy / scikit-learn only.

What an encoder has to beat: the store's fixed joints (``fixed/joint``, the 50-frame IKEM view:
origin-relative, shoulders turned onto x per frame), flattened to one vector per sample.

- KNN: cosine 1-NN of the test side against the train side (k = 1), top-1.
- linear (``--linear``): a logistic regression on the same vectors standardised with train-side
  statistics (scikit-learn, L2, C = 1, lbfgs, 2000 iterations).

These are the numbers ``skeleval knn|linear --store S --protocol P --raw`` reports; this script
is the independent second way of getting them (no torch, no skelkit evaluator).

    python bench/raw_baselines.py STORE [--protocol xsub] [--linear] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelkit.store.reader import open_store


def fixed_joint_vectors(store_path: Path, protocol: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{side: (N, 3*50*V*M) float64 vectors, (N,) labels} of the store's fixed joints."""
    store = open_store(store_path)
    fixed = store.fixed("joint")
    labels = store.samples["label"].to_numpy(np.int64)
    out = {}
    for side in ("train", "test"):
        rows = store.indices(protocol, side)
        x = np.asarray(fixed.oindex[rows], np.float64).reshape(len(rows), -1)
        out[side] = (x, labels[rows])
    return out


def cosine_1nn(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
               test_y: np.ndarray) -> float:
    def unit(a: np.ndarray) -> np.ndarray:
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    nearest = (unit(test_x) @ unit(train_x).T).argmax(1)
    return float((train_y[nearest] == test_y).mean())


def standardised_logistic(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                          test_y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression

    mean, std = train_x.mean(0), train_x.std(0)
    std[std < 1e-8] = 1.0  # constant columns (an absent second body) carry nothing
    clf = LogisticRegression(max_iter=2000)
    clf.fit((train_x - mean) / std, train_y)
    return float(clf.score((test_x - mean) / std, test_y))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--protocol", default="xsub")
    ap.add_argument("--linear", action="store_true", help="also the standardised logistic probe")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sides = fixed_joint_vectors(args.store, args.protocol)
    result = {"store": str(args.store), "protocol": args.protocol,
              "n_train": len(sides["train"][1]), "n_test": len(sides["test"][1]),
              "knn_top1": cosine_1nn(*sides["train"], *sides["test"])}
    if args.linear:
        result["linear_top1"] = standardised_logistic(*sides["train"], *sides["test"])
    if args.json:
        print(json.dumps(result))
        return
    print(f"{args.store} {args.protocol}: {result['n_train']} train / {result['n_test']} test")
    print(f"raw fixed joints, cosine 1-NN top-1: {100 * result['knn_top1']:.1f} %")
    if args.linear:
        print(f"raw fixed joints, standardised logistic top-1: {100 * result['linear_top1']:.1f} %")


if __name__ == "__main__":
    main()
