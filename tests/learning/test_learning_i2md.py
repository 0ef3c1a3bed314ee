"""Learning check of I²MD (issue 6): the tiny config must learn more than its random encoder.

Same measurements as the CMD check (``tests/learning/harness.py``): class KNN of the joint
instance branch (the embedding used for evaluation) and view retrieval on the test side, from
the checkpoints of one run; checkpoint 0 is the random initialisation. Slow; reduced under
SKELKIT_REDUCED=1 (20 epochs instead of 30). The full check prints the report:

    PYTHONPATH=. .venv/bin/python tests/learning/test_learning_i2md.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.learning.harness import baseline, learning_check, standalone_check  # noqa: E402

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"
EPOCHS = [10, 20] if REDUCED else [15, 30]
# Measured with i2md/tiny, seed 0, class KNN top-1 / view retrieval of the test side (%); the
# baseline is the better of the random init and its BN-calibrated copy:
#   the default synth store the tests build (1196 samples): baseline 49.5 / 21.1 (random init
#     47.7 / 19.1); epoch 10 60.4 / 28.9, epoch 20 59.9 / 33.2 with one thread, 60.2 / 29.0
#     and 59.7 / 32.9 with the two threads the checks now use
#   an older synth store (1198 samples): baseline 45.5 / 23.4; epoch 10 52.2 / 31.4, epoch 20
#     55.2 / 35.3; a 30-epoch run 55.2 at epoch 15, 59.0 at epoch 30
# A 10-epoch schedule was too short (older store: 47.8 / 21.4 at epoch 5, 45.8 / 26.6 at 10), and
# with the learning rate at 1e-9 it measured 44.8 / 19.2 and 43.6 / 21.7: below these margins,
# which keep about half the smallest measured gain.
KNN_MARGIN = 0.04 if REDUCED else 0.06
VIEW_MARGIN = 0.06


@pytest.fixture(scope="module")
def report(synth_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    result = learning_check("i2md", synth_store, tmp_path_factory.mktemp("learning-i2md"),
                            EPOCHS)
    print("I²MD learning check:", {k: round(v, 4) for k, v in result.items()})
    return result


@pytest.mark.slow
def test_i2md_learns_its_invariances(report: dict[str, float]) -> None:
    last = report[f"i2md_{EPOCHS[-1]}_views"]
    assert last > baseline(report, views=True) + VIEW_MARGIN, report


@pytest.mark.slow
def test_i2md_beats_random_init_on_class_knn(report: dict[str, float]) -> None:
    trained = [report[f"i2md_{e}"] for e in EPOCHS]
    assert min(trained) > baseline(report), report
    assert sum(trained) / len(trained) > baseline(report) + KNN_MARGIN, report
    if not REDUCED:  # the full check: the gain grows with epochs
        assert trained[-1] >= trained[0], report


def main() -> None:
    standalone_check("I²MD learning check (issue 6)", [15, 30],
                     lambda store, workdir, epochs, overrides: {
                         "i2md": learning_check("i2md", store, workdir, epochs,
                                                overrides=overrides)})


if __name__ == "__main__":
    main()
