"""One writer at a time: the advisory writer lock, with two real processes for a store build and
for a training run, stale locks of killed processes, and a store replaced under a trainer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skelkit.prep.builder.batch import BATCH_SIZE_ENV
from skelkit.prep.builder.pipeline import BATCH_PAUSE_ENV
from skelkit.store.lock import LockHeldError, WriterLock, store_lock
from skelkit.store.reader import open_store
from skelkit.store.writer import store_build_id
from skelkit.train.data import write_random_walk_store
from tests.unit.build_processes import batches_done, synth_raw

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"
TRAIN_SETTINGS = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=0",
                  "engine.checkpoint_every=0", "model.queue_size=16", "engine.threads=1"]


# --- the lock itself -------------------------------------------------------------------------------

def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    first = WriterLock(tmp_path / "x.lock", "the thing", "first-command").acquire()
    holder = json.loads((tmp_path / "x.lock").read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    # flock belongs to the open file, so even this process cannot take it twice.
    with pytest.raises(LockHeldError) as caught:
        WriterLock(tmp_path / "x.lock", "the thing", "second").acquire()
    message = str(caught.value)
    assert "\n" not in message
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in message
    assert "the thing" in message and "first-command" in message
    first.release()
    assert not (tmp_path / "x.lock").exists()  # a clean release leaves nothing behind
    with WriterLock(tmp_path / "x.lock", "the thing") as again:
        assert again.held and again.took_over is None


def test_a_stale_lock_file_is_taken_over_with_a_message(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    dead = {"pid": 999_999_999, "host": "elsewhere", "started": 0.0, "command": "skelprep build"}
    (tmp_path / "x.lock").write_text(json.dumps(dead))
    with WriterLock(tmp_path / "x.lock", "STORE", "skelprep build") as lock:
        assert lock.took_over is not None and "999999999" in lock.took_over
        assert json.loads((tmp_path / "x.lock").read_text())["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "taking over the stale lock of STORE" in err and "pid 999999999 on host elsewhere" in err


def test_store_lock_lives_beside_the_store(tmp_path: Path) -> None:
    # --overwrite removes the store folder: a lock inside it would vanish while held.
    assert store_lock(tmp_path / "a.zarr").path == tmp_path / "a.zarr.lock"


# --- store builds: two real processes --------------------------------------------------------------

def skelprep(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "skelkit.prep.cli", *args],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, process: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, f"ended before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_raw(tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("second", ["--overwrite", pytest.param("--resume", marks=pytest.mark.skipif(
    REDUCED, reason="reduced: --overwrite takes the same lock"))])
def test_a_second_build_of_a_store_being_built_exits_2_naming_the_holder(
        raw: Path, tmp_path: Path, second: str) -> None:
    out = tmp_path / "s.zarr"
    slow = {BATCH_SIZE_ENV: "2", BATCH_PAUSE_ENV: "0.5"}
    first = skelprep("build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(out),
                     "--workers", "1", env=slow)
    try:
        wait_for(lambda: (out / "zarr.json").is_file(), first, "the first build created the store")
        other = skelprep("build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(out),
                         "--workers", "1", second)
        _, err = other.communicate(timeout=120)
        assert other.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        assert str(out) in lines[0]
        assert first.poll() is None  # the first build was not disturbed ...
    finally:
        _, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    store = open_store(out)  # ... and finished a complete, consistent store
    names = store.samples["name"]
    assert names.is_unique and int(store.offsets[-1]) == store.group["raw/joint"].shape[0]
    assert not store_lock(out).path.exists()


@pytest.mark.slow
def test_a_killed_build_leaves_a_stale_lock_that_resume_takes_over(raw: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    first = skelprep("build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(out),
                     "--workers", "1",
                     env={BATCH_SIZE_ENV: "2", BATCH_PAUSE_ENV: "0.5"})
    wait_for(lambda: batches_done(out) >= 1, first, "the build committed a batch")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert store_lock(out).path.is_file()  # the holder died holding it
    resumed = skelprep("build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(out),
                       "--workers", "1", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"taking over the stale lock of {out} left by pid {first.pid}" in err
    assert open_store(out).complete


def test_build_id_is_new_at_every_creation(tmp_path: Path) -> None:
    path = write_random_walk_store(tmp_path / "a.zarr", classes=2, per_class=2)
    first = store_build_id(path)
    assert first and first != "missing"
    write_random_walk_store(path, classes=2, per_class=2)  # overwrite
    assert store_build_id(path) not in (None, "missing", first)
    assert store_build_id(tmp_path / "absent.zarr") == "missing"


# --- training runs: two real processes ------------------------------------------------------------

@pytest.fixture()
def store(tmp_path: Path) -> Path:
    return write_random_walk_store(tmp_path / "rw.zarr", classes=3, per_class=6,
                                   frames=(20, 40), seed=5)


def skeltrain(store: Path, *where: str, epochs: int = 200) -> subprocess.Popen[str]:
    sets = [item for s in TRAIN_SETTINGS for item in ("--set", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "skelkit.train", "run", "skeletonclr", "--config", "tiny",
         "--store", str(store), "--protocol", "xsub", "--epochs", str(epochs), "--device", "cpu",
         "--no-progress", *where, *sets],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_runs_into_one_run_dir_the_second_exits_2_and_a_stale_lock_is_taken_over(
        store: Path, tmp_path: Path) -> None:
    """A second writer of a run being trained (here `--resume` of it, which the command line
    lets through because a checkpoint exists) stops at the lock with one line."""
    run_dir = tmp_path / "run"
    first = skeltrain(store, "--run-dir", str(run_dir))
    try:
        wait_for(lambda: (run_dir / "checkpoints" / "last.pt").is_file(), first, "a checkpoint")
        assert (run_dir / "writer.lock").is_file()
        second = skeltrain(store, "--resume", str(run_dir))
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("skeltrain run: error: "), err
        assert f"pid {first.pid} on host {socket.gethostname()}" in lines[0]
        config_before = (run_dir / "config.yaml").read_text()
        assert first.poll() is None
    finally:
        first.kill()
        first.communicate()
    assert (run_dir / "config.yaml").read_text() == config_before  # untouched by the second
    resumed = skeltrain(store, "--resume", str(run_dir), epochs=0)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"taking over the stale lock of {run_dir} left by pid {first.pid}" in err
    assert not (run_dir / "writer.lock").exists()


@pytest.mark.slow
def test_a_store_rebuilt_under_a_running_trainer_stops_it_with_one_line(
        store: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    trainer = skeltrain(store, "--run-dir", str(run_dir))
    try:
        with_rows = lambda: (run_dir / "metrics.csv").is_file() and len(  # noqa: E731
            (run_dir / "metrics.csv").read_text().splitlines()) >= 2
        wait_for(with_rows, trainer, "an epoch")
        write_random_walk_store(store, classes=3, per_class=6, frames=(20, 40), seed=6)
        _, err = trainer.communicate(timeout=120)
    finally:
        trainer.kill()
    assert trainer.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"{store} was rebuilt while this run trained" in lines[0] or "removed" in lines[0]
    assert "--resume" in lines[0]
    assert (run_dir / "checkpoints" / "last.pt").is_file()
