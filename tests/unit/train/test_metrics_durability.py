"""metrics.csv survives kill -9: rows are appended durably and ``--resume`` reconciles them with
the checkpoint's epoch, so a killed-and-resumed run logs exactly the rows of an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skelkit.store.rundir import MetricsLog
from skelkit.train.data import write_random_walk_store

EPOCHS = 4
REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"  # CI: fewer kills, the same windows
SETTINGS = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=2",
            "engine.checkpoint_every=0", "model.queue_size=16", "engine.threads=1",
            "engine.embed_batch_size=16"]
# Columns that depend on the wall clock, not on the computation.
TIMING = {"seconds", "samples_per_s"}


# --- the log itself ------------------------------------------------------------------------------

def test_rows_are_appended_and_a_torn_line_is_ignored(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv", columns=("knn_top1",))
    log.append({"epoch": 1, "loss": 2.5})
    log.append({"epoch": 2, "loss": 2.0, "knn_top1": 0.5})
    text = log.path.read_text()
    assert text == "epoch,loss,knn_top1\n1,2.5,\n2,2.0,0.5\n"
    with log.path.open("a") as handle:  # what a kill in the middle of an append leaves
        handle.write("3,1.")
    assert [r["epoch"] for r in log.rows()] == ["1", "2"]
    # Appending after a torn line replaces the file without it, never glues onto it.
    log.append({"epoch": 3, "loss": 1.5})
    assert log.path.read_text() == "epoch,loss,knn_top1\n1,2.5,\n2,2.0,0.5\n3,1.5,\n"


def test_a_later_column_extends_the_header_and_keeps_every_row(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv")
    log.append({"epoch": 1, "loss": 2.5})
    log.append({"epoch": 2, "loss": 2.0, "stage": 2.0})
    assert log.path.read_text() == "epoch,loss,stage\n1,2.5,\n2,2.0,2.0\n"
    assert not (tmp_path / "metrics.csv.partial").exists()


def test_reconcile_keeps_rows_up_to_the_checkpoint_and_says_what_it_dropped(
        tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "loss": 3.0 - epoch})
    with log.path.open("a") as handle:
        handle.write("4,0.")
    message = log.reconcile(2)
    assert message is not None
    assert "epochs 3" in message and "incomplete" in message
    assert log.path.read_text() == "epoch,loss\n1,2.0\n2,1.0\n"
    assert log.reconcile(2) is None  # nothing left to say
    message = log.reconcile(3)
    assert message is not None and "no rows for epochs 3" in message


# --- kill -9 of a real training process ------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("durable") / "rw.zarr", classes=3,
                                   per_class=6, frames=(20, 40), seed=3)


def skeltrain(store: Path, run_dir: Path, *, resume: bool, kill_at: str | None = None
              ) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SKELKIT_KILL_AT", None)
    if kill_at:
        env["SKELKIT_KILL_AT"] = kill_at
    where = ["--resume", str(run_dir)] if resume else ["--run-dir", str(run_dir)]
    sets = [item for s in SETTINGS for item in ("--set", s)]
    command = [sys.executable, "-m", "skelkit.train", "run", "skeletonclr", "--config", "tiny",
               "--store", str(store), "--protocol", "xsub", "--epochs", str(EPOCHS),
               "--device", "cpu", "--no-progress", *where, *sets]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "metrics.csv").open(newline="") as handle:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def reference(store: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    code, err = finish(skeltrain(store, run_dir, resume=False))
    assert code == 0, err
    table = rows(run_dir)
    assert [r["epoch"] for r in table] == [str(e) for e in range(1, EPOCHS + 1)]
    assert [bool(r["knn_top1"]) for r in table] == [False, True, False, True]
    return table


def resume_until_done(store: Path, run_dir: Path) -> str:
    code, err = finish(skeltrain(store, run_dir, resume=True))
    assert code == 0, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("kill_at, dropped", [
    pytest.param("train-metrics-row:1", "epochs 1",  # row of epoch 1 durable, checkpoint not
                 marks=pytest.mark.skipif(REDUCED, reason="reduced: epoch 3 covers the window")),
    ("train-metrics-row:3", "epochs 3"),
    ("train-checkpoint:2", None),                    # row and checkpoint of epoch 2 durable
])
def test_kill_at_a_named_point_then_resume_logs_the_uninterrupted_rows(
        store: Path, reference: list[dict[str, str]], tmp_path: Path, kill_at: str,
        dropped: str | None) -> None:
    run_dir = tmp_path / "run"
    code, _ = finish(skeltrain(store, run_dir, resume=False, kill_at=kill_at))
    assert code == -9
    err = resume_until_done(store, run_dir)
    if dropped:
        assert f"dropped the rows of {dropped}" in err
    else:
        assert "dropped" not in err
    assert rows(run_dir) == reference


@pytest.mark.slow
def test_kills_at_random_moments_then_resume_logs_the_uninterrupted_rows(
        store: Path, reference: list[dict[str, str]], tmp_path: Path) -> None:
    """Two kills at random moments of one run (after a random delay, wherever the process is:
    importing, training, writing a row or a checkpoint), each followed by ``--resume``."""
    draw = random.Random(14)
    run_dir = tmp_path / "run"
    started = False
    for _ in range(1 if REDUCED else 2):
        # Until last.pt exists only a fresh start is possible; afterwards always resume.
        process = skeltrain(store, run_dir, resume=started)
        deadline = time.monotonic() + draw.uniform(4.0, 12.0)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()
        process.communicate()
        started = (run_dir / "checkpoints" / "last.pt").is_file()
    if started:
        resume_until_done(store, run_dir)
    else:
        code, err = finish(skeltrain(store, run_dir, resume=False))
        assert code == 0, err
    assert rows(run_dir) == reference
