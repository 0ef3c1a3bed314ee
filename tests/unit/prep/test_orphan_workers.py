"""Workers die with their driver: after kill -9 of a `skelprep build --workers 2`, its worker
processes end within seconds instead of living on (about 320 MB each)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from skelkit.prep.builder.batch import BATCH_SIZE_ENV
from skelkit.prep.builder.pipeline import BATCH_PAUSE_ENV
from tests.unit.build_processes import batches_done, children, parent_of, synth_raw

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")


def is_pool_worker(pid: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"multiprocessing.spawn" in command or b"spawn_main" in command


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_raw(tmp_path_factory)


@pytest.mark.slow
def test_kill_9_of_the_driver_ends_its_workers(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    driver = subprocess.Popen(
        [sys.executable, "-m", "skelkit.prep.cli", "build", "--dataset", "ntu60", "--raw",
         str(raw), "--out", str(out), "--workers", "2"],
        env={**os.environ, BATCH_SIZE_ENV: "2", BATCH_PAUSE_ENV: "0.5"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while batches_done(out) < 1:
            assert driver.poll() is None, "the build ended before it could be killed"
            assert time.monotonic() < deadline, "the build made no progress"
            time.sleep(0.05)
        workers = [pid for pid in children(driver.pid) if is_pool_worker(pid)]
        assert len(workers) == 2, workers  # the pool of --workers 2 is there ...
        os.kill(driver.pid, signal.SIGKILL)
    finally:
        driver.wait()
    deadline = time.monotonic() + 15
    while any(parent_of(pid) is not None for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [pid for pid in workers if parent_of(pid) is not None]
    for pid in alive:  # leave nothing behind, even when the check fails
        os.kill(pid, signal.SIGKILL)
    assert alive == [], f"workers {alive} outlived their driver by 15 s"  # ... and gone
