"""Learning check (issue 3): pre-training must learn more than a random encoder knows.

On a synth store (``skelprep synth`` + ``skelprep build``; a random-walk store if skelprep is
missing) it measures cosine 1-NN top-1 of joint features for raw joints, the random-init encoder
(``--epochs 0``) and CMD with the tiny config after training, and the view retrieval of the
test side: how often a sample's augmented view finds its own other view among all test samples
(what the contrastive task teaches). The tests (slow; reduced under SKELKIT_REDUCED=1:
10 epochs, about a minute on two cores with the store build) fail when training learned
nothing: with the learning rate at 1e-9 (only the BatchNorm statistics move) the reduced run
measured class KNN 54.0 -> 52.0 / 50.3 % and view retrieval 19.9 -> 25.4 / 27.3 %, below both
margins. The full check prints the report:

    PYTHONPATH=. .venv/bin/python tests/learning/test_learning_cmd.py --epochs 25 50
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.learning.harness import baseline, build_synth_store, learning_check, raw_knn  # noqa: E402

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"


# Both versions use the default ntu60 synth store (20 classes, 600 xsub-train samples): on the
# 10-class store (300 samples) the reduced run is too short for class KNN to move.
CLASSES = 20
EPOCHS = [5, 10] if REDUCED else [25, 50]
# Measured with the tiny config (class KNN top-1 / view retrieval of the test side; the
# untrained baseline is the better of the random init and its BN-calibrated copy):
#   fidelity reference (the config's), reduced, seed 0: random init 54.2 / 23.8, epoch 5
#     57.4 / 38.8, epoch 10 56.9 / 44.5 (%)
#   fidelity paper (--set model.fidelity=paper), reduced, seed 0: random init 54.2 / 24.5,
#     epoch 5 58.1 / 38.8, epoch 10 54.2 / 45.6 (epoch 10 ties the random init: the strict
#     "every checkpoint above it" fails by 0.0); seed 1: 53.2 / 23.7, 59.2 / 38.9, 56.7 / 43.6;
#     seed 2: 55.4 / 24.7, 57.7 / 38.9, 55.0 / 46.3 (fails); seed 3: 54.9 / 25.0, 59.2 / 35.9,
#     55.7 / 43.8. Reference, seed 2: 52.3 / 23.7, 57.2 / 37.8, 54.9 / 47.3; seed 3: 53.7 /
#     23.3, 60.1 / 37.6, 55.9 / 43.6. Not a paper-only weakness: in every run class KNN peaks at
#     epoch 5 and falls 0.5-4 points by epoch 10 while view retrieval keeps rising, and the
#     untrained baseline itself moves 52.3-55.4 with the seed, as much as the epoch-10 gain.
#   before the fidelity switches (paper maths, other augmentation draw streams), reduced:
#     seed 0 54.2 / 21.5, 58.7 / 40.1, 55.5 / 47.8; seed 1 53.2 / 19.5, 60.4 / 41.3, 56.4 / 47.7;
#     full, seed 0: raw joints 62.2, random init 54.0 / 19.9, epoch 25 59.0 / 65.6,
#     epoch 50 60.2 / 69.1
# The margins below leave about half the measured gain as headroom for seeds and BLAS.
VIEW_MARGIN = 0.15 if REDUCED else 0.30
KNN_MARGIN = 0.015 if REDUCED else 0.03


@pytest.fixture(scope="module")
def learning_report(synth_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    workdir = tmp_path_factory.mktemp("learning-cmd")
    report = {"raw": raw_knn(synth_store), **learning_check("cmd", synth_store, workdir, EPOCHS)}
    print("learning check:", {k: round(v, 4) for k, v in report.items()})
    return report


@pytest.mark.slow
def test_pretraining_learns_its_invariances(learning_report: dict[str, float]) -> None:
    """The contrastive task itself: trained features match two augmented views of unseen
    samples clearly more often than the random initialisation does, more so with epochs."""
    r = learning_report
    assert r["raw"] > 2.0 / CLASSES  # the store carries class information at all
    first, last = (r[f"cmd_{e}_views"] for e in EPOCHS)
    assert last > baseline(r, views=True) + VIEW_MARGIN, r
    assert last > first, r


@pytest.mark.slow
def test_pretraining_beats_random_init_on_class_knn(learning_report: dict[str, float]) -> None:
    """Class KNN of the joint embeddings: every trained checkpoint above the random-init
    encoder, on average by KNN_MARGIN (untrained, the checkpoints scatter around it)."""
    r = learning_report
    trained = [r[f"cmd_{e}"] for e in EPOCHS]
    assert min(trained) > baseline(r), r
    assert sum(trained) / len(trained) > baseline(r) + KNN_MARGIN, r
    if not REDUCED:  # the full check: the gain grows with epochs
        assert trained[-1] >= trained[0], r


def main() -> None:
    parser = argparse.ArgumentParser(description="Full learning check (issue 3).")
    parser.add_argument("--epochs", type=int, nargs="+", default=[25, 50])
    parser.add_argument("--store", type=Path, default=None, help="Existing synth store.")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        store = args.store or build_synth_store(workdir)
        t0 = time.perf_counter()
        report = {"raw": raw_knn(store),
                  **learning_check("cmd", store, workdir, sorted(args.epochs), args.seed,
                                   tuple(args.overrides))}
        print(f"learning check on {store} ({time.perf_counter() - t0:.0f} s):")
        for key, value in report.items():
            print(f"  {key:>12}: KNN top-1 {100 * value:.1f} %")


if __name__ == "__main__":
    main()
