"""`skelprep build` progress moves per file, not per batch (issue 17, item 5), and a resumed
build's progress and report counts are those of a clean build."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from skelkit.prep.builder.batch import BATCH_SIZE_ENV
from skelkit.prep.builder.file_progress import FileCounter
from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.prep.errors import BuildError
from skelkit.store.reader import open_store

from .test_build import GOLDEN, copy_golden

pytestmark = pytest.mark.skipif(not (GOLDEN / "ntu").is_dir(), reason="shared/golden absent")

FILES, BATCH = 21, 7  # the 21 golden NTU files in 3 batches


def _build(raw: Path, out: Path, workers: int, seen: list[int], **extra: object) -> dict:
    def on_files(files: int, total: int) -> None:
        assert total == FILES
        seen.append(files)

    opts = BuildOptions(dataset="ntu60", raw=raw, out=out, workers=workers, progress=False,
                        on_files=on_files, **extra)
    return build_store(opts)


def _assert_per_file(seen: list[int], start: int = 0) -> None:
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen  # monotone, no repeats
    assert seen[0] > start and seen[-1] == FILES
    assert len(seen) > math.ceil((FILES - start) / BATCH), seen  # finer than one step a batch


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_file(tmp_path: Path, monkeypatch, workers: int) -> None:
    monkeypatch.setenv(BATCH_SIZE_ENV, str(BATCH))
    seen: list[int] = []
    report = _build(copy_golden(tmp_path / "raw"), tmp_path / "s.zarr", workers, seen)
    assert report["batches"] == 3 and report["files_parsed"] == FILES
    _assert_per_file(seen)
    if workers == 1:  # one process: every file is its own step
        assert seen == list(range(1, FILES + 1))


def test_resumed_build_counts_on_from_the_committed_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(BATCH_SIZE_ENV, str(BATCH))
    raw = copy_golden(tmp_path / "raw")
    clean = _build(raw, tmp_path / "clean.zarr", 1, [])

    def stop_in_batch_two(files: int, total: int) -> None:
        if files == BATCH + 3:
            raise KeyboardInterrupt  # an interrupted build leaves batch one committed
    out = tmp_path / "s.zarr"
    with pytest.raises((BuildError, KeyboardInterrupt)):
        build_store(BuildOptions(dataset="ntu60", raw=raw, out=out, workers=1, progress=False,
                                 on_files=stop_in_batch_two))
    assert open_store(out, require_complete=False).attrs["progress"]["files_done"] == BATCH

    seen: list[int] = []
    resumed = _build(raw, out, 1, seen, resume=True)
    assert seen == list(range(BATCH + 1, FILES + 1))
    for key in ("files_found", "files_parsed", "samples_written", "samples_skipped", "batches"):
        assert resumed[key] == clean[key], key
    assert resumed["resumed"] is True


def test_counter_never_goes_back_and_ignores_late_reports() -> None:
    shown: list[int] = []
    counter = FileCounter([3, 2], batches_done=0, files_done=0, show=shown.append)
    counter.file_parsed(1)  # batch 1 (the second) runs ahead of batch 0
    counter.file_parsed(0)
    counter.batch_committed(0)  # batch 0's other two reports are still queued: 3 files now
    counter.file_parsed(0)  # late: ignored
    counter.file_parsed(1)
    counter.file_parsed(1)  # more reports than batch 1 has files: capped
    counter.batch_committed(1)
    assert shown == [1, 2, 4, 5]
