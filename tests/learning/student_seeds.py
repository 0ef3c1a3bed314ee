"""The IKEM student's learning check at several student seeds on one teacher (issue 12): the
measurement behind the numbers in ``ikem-student/tiny.yaml``'s comment.

Trains the reduced check's teacher once (``ikem`` tiny, 5 epochs, stage two from epoch 2, seed 0,
as ``test_learning_crossview.py`` does), then one student run per seed, and prints for every
student epoch the class KNN of the joint stream and the effective rank of its pooled train
features (1.0: the samples vary along one direction only), with that seed's threshold (the
BN-calibrated random init + 10 points, as the check) and whether the check would pass. Slow
(about 2 minutes for the teacher and 1.5 per seed on two cores); not collected by pytest:

    PYTHONPATH=. .venv/bin/python tests/learning/student_seeds.py --seeds 0 1 2
    PYTHONPATH=. .venv/bin/python tests/learning/student_seeds.py --fidelity paper
    PYTHONPATH=. .venv/bin/python tests/learning/student_seeds.py --set model.queue_size=1024
    PYTHONPATH=. .venv/bin/python tests/learning/student_seeds.py --teacher-set model.cross_view_epoch=5

The teacher's line also says how much of its targets' variance lies on one axis and how
that axis follows a second body being present (what the student collapses onto first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from skelkit.store.rundir import checkpoint_name  # noqa: E402
from skelkit.train.runs import side_order  # noqa: E402
from tests.learning.harness import (  # noqa: E402
    THREADS,
    build_synth_store,
    calibrate_batchnorm,
    checkpoint_features,
    checkpoint_knn,
    effective_rank,
    evaluation_loaders,
    knn_top1,
    leading_direction,
    pretrain,
    torch_threads,
)

TEACHER_EPOCHS = 5
KNN_MARGIN = 0.10  # the check's (test_learning_crossview.KNN_MARGIN)


@torch.no_grad()
def teacher_targets(teacher: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per side: the teacher's unit concatenated embeddings t (what the student distils; eval
    mode, the evaluation view), the labels, and whether each clip has a second body."""
    model, loaders = evaluation_loaders(teacher, "last.pt")
    model.eval()
    sides = {}
    for side, (loader, dataset) in loaders.items():
        targets, two_bodies, rows = [], [], []
        for batch in loader:
            x, gamma = batch["x"], batch["gamma"]
            views = [model.branch(v).query(model.derive_input(x, gamma, v))[0]
                     for v in model.modalities]
            targets.append(F.normalize(torch.cat(views, dim=1), dim=1).numpy())
            two_bodies.append((x[..., 1].abs().flatten(1).sum(1) > 0).numpy())
            rows.append(batch["index"].numpy())
        order = side_order(dataset, np.concatenate(rows))
        sides[side] = (np.concatenate(targets), dataset.meta.labels[order],
                       np.concatenate(two_bodies).astype(np.float64))
    return sides


def teacher_report(teacher: Path) -> str:
    """Class KNN of the teacher's pooled features and of its targets t, and how much of t's
    variance lies on its first principal direction (and that direction's correlation with a
    second body being present): a student learns the dominant axis of t first."""
    sides = teacher_targets(teacher)
    (train_t, train_y, two_bodies), (test_t, test_y, _) = sides["train"], sides["test"]
    share, correlation = leading_direction(train_t, two_bodies)
    return (f"teacher {teacher}: class KNN {100 * checkpoint_knn(teacher, 'last.pt'):.1f} % "
            f"(pooled), {100 * knn_top1(train_t, train_y, test_t, test_y):.1f} % (its targets "
            f"t); t's first principal direction holds {100 * share:.0f} % of its variance, "
            f"|correlation| with a second body present {correlation:.2f}, effective rank "
            f"{effective_rank(train_t):.1f}")


def student_report(store: Path, run: Path, teacher: Path, epochs: int, seed: int,
                   overrides: tuple[str, ...]) -> list[str]:
    """One student run; a line per checkpoint (0 = random init, then every epoch)."""
    pretrain("ikem-student", store, run, epochs, seed,
             ("engine.checkpoint_every=1", f"model.teacher={teacher}", *overrides))
    control = max(checkpoint_knn(run, checkpoint_name(0)),
                  checkpoint_knn(run, calibrate_batchnorm(run, checkpoint_name(0))))
    lines = [f"seed {seed}: control {100 * control:.1f} %, threshold "
             f"{100 * (control + KNN_MARGIN):.1f} %"]
    for epoch in range(1, epochs + 1):
        sides = checkpoint_features(run, checkpoint_name(epoch))
        knn = knn_top1(*sides["train"], *sides["test"])
        verdict = "pass" if knn > control + KNN_MARGIN else "FAIL"
        lines.append(f"  epoch {epoch}: class KNN {100 * knn:.1f} % ({verdict}), effective rank "
                     f"{effective_rank(sides['train'][0]):.1f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5, help="Student epochs (the check's: 5).")
    parser.add_argument("--fidelity", default="",
                        help="model.fidelity of teacher and student (the check's "
                             "SKELKIT_CHECK_FIDELITY); empty: the tiny configs' own.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="Override of the student run only, e.g. model.temperature=0.1.")
    parser.add_argument("--store", type=Path, default=None, help="Existing synth store.")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="Existing ikem run to distil (default: train the check's).")
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_EPOCHS,
                        help="Epochs of the teacher trained here (stage two from half way).")
    parser.add_argument("--teacher-set", dest="teacher_overrides", action="append", default=[],
                        help="Override of the teacher run trained here, e.g. "
                             "model.encoder_args.channel_multiplier=0.125 or "
                             "model.cross_view_epoch=N (N = its epochs: stage one only).")
    parser.add_argument("--keep", type=Path, default=None,
                        help="Folder to keep the runs in (default: a temporary one).")
    args = parser.parse_args()
    fidelity = (f"model.fidelity={args.fidelity}",) if args.fidelity else ()
    with tempfile.TemporaryDirectory() as tmp, torch_threads(THREADS):
        work = args.keep or Path(tmp)
        store = args.store or build_synth_store(work, nuisance="none")
        teacher = args.teacher
        if teacher is None:
            teacher = work / "ikem"
            pretrain("ikem", store, teacher, args.teacher_epochs, 0,
                     (f"model.cross_view_epoch={args.teacher_epochs // 2}", *fidelity,
                      *args.teacher_overrides))
        print(teacher_report(teacher), flush=True)
        for seed in args.seeds:
            lines = student_report(store, work / f"student-{seed}", teacher, args.epochs, seed,
                                   (*fidelity, *args.overrides))
            print("\n".join(lines), flush=True)


if __name__ == "__main__":  # DataLoader workers re-import this module
    main()
