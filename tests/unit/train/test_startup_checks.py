"""`skeltrain run` checks before it writes: a run that fails its data checks leaves nothing a
rerun would take for a run, and a run dir being trained names its holder, not "already holds a
run" (which its epoch-0 checkpoint would otherwise answer)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from skelkit.train.cli import main
from skelkit.train.data import write_random_walk_store

TRAIN = ["--set", "data.num_workers=0", "--set", "engine.knn_every=0", "--set",
         "model.queue_size=16", "--set", "engine.threads=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("rw") / "rw.zarr", classes=3,
                                   per_class=6, frames=(20, 40), seed=5)


def run(store: Path, run_dir: Path, *extra: str) -> tuple[int, list[str]]:
    args = ["run", "skeletonclr", "--config", "tiny", "--store", str(store), "--protocol", "xsub",
            "--epochs", "1", "--device", "cpu", "--no-progress", "--run-dir", str(run_dir),
            *TRAIN, *extra]
    result = CliRunner().invoke(main, args)
    return result.exit_code, result.stderr.strip().splitlines()


def test_a_failed_data_check_writes_nothing_and_a_rerun_goes_ahead(store: Path,
                                                                   tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code, lines = run(store, run_dir, "--batch-size", "64")  # the train side has fewer samples
    assert code == 2
    assert len(lines) == 1 and "fewer than one batch of 64" in lines[0], lines
    assert not run_dir.exists()
    code, lines = run(store, run_dir, "--batch-size", "4")
    assert code == 0, lines
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_a_run_dir_being_trained_names_its_holder(store: Path, tmp_path: Path) -> None:
    """The state a second `skeltrain run` meets while the first trains past epoch 0: a
    checkpoint, and a lock file naming a live process (this one)."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.pt").write_bytes(b"epoch 0")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": "skeltrain run"}
    (run_dir / "writer.lock").write_text(json.dumps(holder) + "\n")
    code, lines = run(store, run_dir, "--batch-size", "4")
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith(
        f"skeltrain run: error: {run_dir} is being written by pid {os.getpid()} on host "
        f"{socket.gethostname()} (skeltrain run, since "), lines
    # A lock file left by a dead process is no holder: the usual answer follows.
    (run_dir / "writer.lock").write_text(json.dumps({**holder, "pid": 2**22 + 12345}) + "\n")
    code, lines = run(store, run_dir, "--batch-size", "4")
    assert code == 2 and "already holds a run" in lines[-1], lines
