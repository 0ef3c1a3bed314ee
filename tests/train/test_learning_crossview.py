"""Learning checks of CrosSCLR, IKEM and the IKEM student (issue 7).

Same measurements as the CMD check (``tests/train/learning.py``): class KNN of the joint stream
and view retrieval on the test side, from the checkpoints of one run per method; checkpoint 0 is
that method's random initialisation. The student distils from the IKEM run of this module.
Stage two (cross-view mining, the implicit exchange) starts halfway through each run, so both
stages are trained. Slow; reduced under SKELKIT_REDUCED=1. The full check prints the report:

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python tests/train/test_learning_crossview.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.train.learning import baseline, build_synth_store, learning_check  # noqa: E402

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"
EPOCHS = [1, 2] if REDUCED else [10, 20]
# Measured with the tiny configs (ST-GCN 1/16, hidden 32) on the default ntu60 synth store,
# seed 0, class KNN top-1 / view retrieval of the test side (%). Random init 6.2 / 0.0 (the
# initial BatchNorm statistics leave the pooled features nearly constant), BN-calibrated 23.1 / 2.0.
#   reduced:  crossclr 26.6 / 2.8 -> 42.1 / 5.7,  ikem 26.6 / 2.8 -> 38.5 / 6.4,
#             student 19.1 / 1.0 -> 30.9 / 3.2  (epochs 1 -> 2)
#   lr 1e-9 (only BN statistics move): crossclr 30.9 / 3.3, ikem 31.3 / 3.5, student 30.1 / 3.5
#   full (20-epoch runs, stage two from 10): crossclr 39.5 -> 37.5, ikem 39.5 -> 36.1,
#             student 40.8 at epoch 10 (epochs 10 -> 20)
# Two epochs are too few for the student to learn more than its BatchNorm statistics (30.9 vs
# 30.1 % with lr 1e-9), so in the reduced run it is only held to checkpoint 0 (it catches a
# student that does not train at all); the full run holds it to the calibrated baseline.
# The margins sit between the lr 1e-9 control and the trained runs, so the control fails them.
KNN_MARGIN = 0.11 if REDUCED else 0.10
VIEW_MARGIN = 0.02


def reference(report: dict[str, float], method: str, views: bool = False) -> float:
    """The untrained score a method must beat (see the measurements above)."""
    if REDUCED and method == "ikem-student":
        return report["random_init_views" if views else "random_init"]
    return baseline(report, views)


def run_checks(store: Path, workdir: Path, epochs: list[int],
               overrides: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    stage_two = (f"model.cross_view_epoch={max(epochs) // 2}", *overrides)
    reports = {m: learning_check(m, store, workdir, epochs, overrides=stage_two)
               for m in ("crossclr", "ikem")}
    teacher = workdir / "ikem"
    reports["ikem-student"] = learning_check("ikem-student", store, workdir, epochs,
                                             overrides=(f"model.teacher={teacher}", *overrides))
    return reports


@pytest.fixture(scope="module")
def reports(synth_store: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, dict[str, float]]:
    torch.set_num_threads(1)
    result = run_checks(synth_store, tmp_path_factory.mktemp("learning-crossview"), EPOCHS)
    for method, report in result.items():
        print(f"{method} learning check:", {k: round(v, 4) for k, v in report.items()})
    return result


@pytest.mark.slow
@pytest.mark.parametrize("method", ["crossclr", "ikem", "ikem-student"])
def test_learns_its_invariances(reports: dict[str, dict[str, float]], method: str) -> None:
    r = reports[method]
    assert r[f"{method}_{EPOCHS[-1]}_views"] > reference(r, method, views=True) + VIEW_MARGIN, r


@pytest.mark.slow
@pytest.mark.parametrize("method", ["crossclr", "ikem", "ikem-student"])
def test_beats_random_init_on_class_knn(reports: dict[str, dict[str, float]],
                                        method: str) -> None:
    r = reports[method]
    trained = [r[f"{method}_{e}"] for e in EPOCHS]
    assert min(trained) > reference(r, method), r
    assert trained[-1] > reference(r, method) + KNN_MARGIN, r


def main() -> None:
    parser = argparse.ArgumentParser(description="Full CrosSCLR/IKEM/student learning check.")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--store", type=Path, default=None, help="Existing synth store.")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_synth_store(Path(tmp))
        t0 = time.perf_counter()
        result = run_checks(store, Path(tmp), sorted(args.epochs), tuple(args.overrides))
        print(f"learning checks on {store} ({time.perf_counter() - t0:.0f} s):")
        for method, report in result.items():
            for key, value in report.items():
                print(f"  {method:>12} {key:>24}: {100 * value:.1f} %")


if __name__ == "__main__":
    main()
