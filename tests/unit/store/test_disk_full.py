"""A full disk anywhere we write is one line, ``no space left on device writing X; free space,
then --resume`` (exit 2), and leaves no temporary file and nothing that claims to be complete;
after freeing space, ``--resume`` finishes the work. Faults are injected (a failpoint or a
patched write raising ENOSPC), and once on a real 64 KB filesystem where one can be mounted."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr.storage._local as zarr_local
from click.testing import CliRunner

from skelkit import failpoints
from skelkit.store.durable import DiskFullError, is_disk_full, write_atomically
from skelkit.store.embeddings import EmbeddingGroup, write_embeddings
from skelkit.store.reader import open_store
from skelkit.store.rundir import MetricsLog
from skelkit.train.data import write_random_walk_store
from tests.unit.build_processes import synth_raw

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(autouse=True)
def fresh_failpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failpoints, "_passages", {})


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith(".creating")]


def test_write_atomically_keeps_the_old_file_and_no_partial(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-file")
    with pytest.raises(DiskFullError) as err:
        write_atomically(target, b"new" * 1000)
    assert str(err.value) == f"no space left on device writing {target}; free space, then --resume"
    assert target.read_bytes() == b"old" and partials(tmp_path) == []


def test_disk_full_is_recognised_through_wrappers_and_library_messages() -> None:
    assert is_disk_full(ENOSPC)
    assert is_disk_full(OSError(errno.EDQUOT, "quota"))
    wrapped = RuntimeError("write failed")
    wrapped.__cause__ = ENOSPC
    assert is_disk_full(wrapped)
    # h5py formats HDF5's message instead of setting errno
    assert is_disk_full(OSError("Can't write data (file write failed: time = x, filename = 'a', "
                                "errno = 28, error message = 'No space left on device')"))
    assert not is_disk_full(OSError(errno.EACCES, "denied"))
    assert not is_disk_full(ValueError("checksum"))


def test_embeddings_on_a_full_disk_leave_no_partial(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    group = EmbeddingGroup(np.ones((3, 4)), np.arange(3), np.array(["a", "b", "c"]))
    out = tmp_path / "e.h5"
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-embeddings")
    with pytest.raises(DiskFullError) as err:
        write_embeddings(out, {"train": group, "test": group}, {"method": "x"})
    assert str(err.value) == f"no space left on device writing {out}; free space, then rerun"
    assert list(tmp_path.iterdir()) == []


# --- through the commands (in-process) ------------------------------------------------------

def one_line_exit_2(result, prog: str, what: Path, then: str = "--resume") -> None:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.stderr
    assert lines[-1] == (f"{prog}: error: no space left on device writing {what}; "
                         f"free space, then {then}"), result.stderr
    assert not any("Traceback" in line for line in lines)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_raw(tmp_path_factory, classes=2)


def test_build_on_a_full_disk_then_resume_equals_a_clean_build(
        raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skelkit.prep.cli import main

    def build(out: Path, *extra: str):
        return CliRunner().invoke(main, ["build", "--dataset", "ntu60", "--raw", str(raw),
                                         "--out", str(out), "--workers", "1", *extra])

    clean = tmp_path / "clean.zarr"
    assert build(clean).exit_code == 0
    real_put = zarr_local._put

    def put(path: Path, value, exclusive: bool = False) -> int:
        # The disk fills while the first joint shard is written: half its bytes reach zarr's
        # temporary file, then ENOSPC (zarr's own clean-up of the temporary file runs).
        if "/fixed/joint/c/" in Path(path).as_posix():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with zarr_local._atomic_write(Path(path), "wb", exclusive=exclusive) as fh:
                fh.write(bytes(value.as_buffer_like())[:100])
                raise ENOSPC
        return real_put(path, value, exclusive)

    out = tmp_path / "s.zarr"
    monkeypatch.setattr(zarr_local, "_put", put)
    one_line_exit_2(build(out), "skelprep build", out)
    monkeypatch.setattr(zarr_local, "_put", real_put)
    assert partials(tmp_path) == []
    assert not open_store(out, require_complete=False).complete
    assert build(out, "--resume").exit_code == 0
    a, b = open_store(clean), open_store(out)
    assert list(a.samples["name"]) == list(b.samples["name"])
    for name in ("raw/joint", "fixed/joint", "fixed/bone"):
        np.testing.assert_array_equal(a.group[name][:], b.group[name][:])


TRAIN = ["--set", "data.num_workers=0", "--set", "engine.batch_size=4", "--set",
         "engine.knn_every=0", "--set", "model.queue_size=16", "--set", "engine.threads=1"]


@pytest.fixture()
def walk_store(tmp_path: Path) -> Path:
    return write_random_walk_store(tmp_path / "rw.zarr", classes=3, per_class=6,
                                   frames=(20, 40), seed=5)


def skeltrain(*args: object):
    from skelkit.train.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_training_on_a_full_disk_is_one_line_and_resumes(
        walk_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    common = ["--config", "tiny", "--store", walk_store, "--protocol", "xsub", "--epochs", 2,
              "--device", "cpu", "--no-progress", *TRAIN]
    # The third checkpoint write is epoch 1's last.pt (epoch 0 wrote last.pt and epoch_0000.pt).
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-checkpoint:3")
    result = skeltrain("run", "skeletonclr", *common, "--run-dir", run)
    one_line_exit_2(result, "skeltrain run", run / "checkpoints" / "last.pt", f"--resume {run}")
    assert partials(run) == []
    assert not (run / "writer.lock").exists()
    monkeypatch.delenv("SKELKIT_ENOSPC_AT")
    done = skeltrain("run", "skeletonclr", *common, "--resume", run)
    assert done.exit_code == 0, done.stderr
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]


def test_train_log_on_a_full_disk_is_one_line(walk_store: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """train.log's handler turns a full disk into the run's one line (logging's default prints a
    traceback per record and carries on)."""
    run = tmp_path / "run"
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-log:2")
    result = skeltrain("run", "skeletonclr", "--config", "tiny", "--store", walk_store,
                       "--protocol", "xsub", "--epochs", 1, "--device", "cpu", "--no-progress",
                       "--run-dir", run, *TRAIN)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"skeltrain run: error: no space left on device writing {run / 'train.log'};"
                     f" free space, then --resume"], result.stderr
    assert "Logging error" not in result.stderr
    assert partials(run) == [] and not (run / "writer.lock").exists()


def test_the_raw_cache_on_a_full_disk_is_one_line_and_leaves_no_partial(
        walk_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from skelkit.train.data import SkeletonDataset

    cache = tmp_path / "cache"
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-raw-cache")
    with pytest.raises(DiskFullError, match="no space left on device writing the raw cache "):
        SkeletonDataset(walk_store, "xsub", "train", kind="sequence", raw_cache=cache)
    assert list(cache.iterdir()) == []
    monkeypatch.delenv("SKELKIT_ENOSPC_AT")
    SkeletonDataset(walk_store, "xsub", "train", kind="sequence", raw_cache=cache)
    assert [p.suffix for p in cache.iterdir()] == [".npy"]


@pytest.mark.parametrize("first_row", [True, False])  # replaced whole / appended
def test_metrics_rows_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     first_row: bool) -> None:
    log = MetricsLog(tmp_path / "metrics.csv")
    if not first_row:
        log.append({"epoch": 1, "loss": 2.0})
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-metrics")
    with pytest.raises(DiskFullError) as err:
        log.append({"epoch": 2, "loss": 1.0})
    assert str(err.value) == (f"no space left on device writing {log.path}; free space, then "
                              "--resume")
    assert partials(tmp_path) == []


def test_embed_on_a_full_disk_leaves_no_file(walk_store: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    assert skeltrain("run", "skeletonclr", "--config", "tiny", "--store", walk_store,
                     "--protocol", "xsub", "--epochs", 0, "--device", "cpu", "--no-progress",
                     "--run-dir", run, *TRAIN).exit_code == 0
    out = tmp_path / "e.h5"
    monkeypatch.setenv("SKELKIT_ENOSPC_AT", "write-embeddings")
    result = skeltrain("embed", "--run", run, "--out", out, "--device", "cpu", "--no-progress")
    one_line_exit_2(result, "skeltrain embed", out, "rerun")
    assert not out.exists() and partials(tmp_path) == []


# --- a real full filesystem ------------------------------------------------------------------

def _tiny_filesystem_runner() -> list[str] | None:
    """A command prefix running in a private mount namespace where a 64 KB tmpfs can be mounted
    (user namespaces: no root needed), or None where the system does not allow it."""
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return None
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /tmp && true"],
                           capture_output=True, timeout=30)
    return [unshare, "--user", "--map-root-user", "--mount"] if probe.returncode == 0 else None


REAL = """
import sys
from pathlib import Path
import numpy as np
from skelkit.store.durable import DiskFullError, write_atomically
from skelkit.store.embeddings import EmbeddingGroup, write_embeddings
folder = Path(sys.argv[1])
(folder / "small.bin").write_bytes(b"x" * 1000)
for write in (lambda: write_atomically(folder / "last.pt", b"x" * 200_000),
              lambda: write_embeddings(folder / "e.h5", {"train": EmbeddingGroup(
                  np.ones((2000, 64)), np.arange(2000), np.array(["n"] * 2000))}, {})):
    try:
        write()
    except DiskFullError as err:
        print(err)
"""


def test_a_real_full_filesystem_is_one_line_and_leaves_no_partial(tmp_path: Path) -> None:
    """A checkpoint-sized atomic write and an HDF5 embedding file on a 64 KB tmpfs: the real
    ENOSPC of Python's write and HDF5's own message both become the one line."""
    prefix = _tiny_filesystem_runner()
    if prefix is None:
        pytest.skip("cannot mount a size-limited tmpfs here (no user namespaces)")
    mount = tmp_path / "small"
    mount.mkdir()
    script = (f"mount -t tmpfs -o size=64k tmpfs {mount} && {sys.executable} -c '{REAL}' "
              f"{mount} && ls -a {mount}")
    done = subprocess.run([*prefix, "sh", "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        f"no space left on device writing {mount}/last.pt; free space, then --resume",
        f"no space left on device writing {mount}/e.h5; free space, then rerun"], done.stdout
    assert sorted(lines[2:]) == [".", "..", "small.bin"]  # nothing partial, nothing "complete"
