"""The `skelprep build` driver: raw files -> batches prepared on dask -> an ordered, resumable store.

The driver discovers the raw files (sorted, so every run cuts the same batches), keeps at most
``2 * workers`` batches (and IN_FLIGHT_SAMPLES samples) in flight, writes finished batches
strictly in order through StoreWriter and commits progress after each one. Memory is therefore
bounded by the batches in flight, never by the dataset, and a killed build resumes at the first
batch that was not committed. Samples that fail become report entries; the build goes on.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tqdm
import zarr

from skelkit.prep.builder.batch import (
    PreparedBatch,
    choose_batch_size,
    fingerprint,
    make_batches,
    max_in_flight,
    prepare_batch,
    to_sample_batch,
)
from skelkit.prep.builder.file_progress import FileCounter
from skelkit.prep.builder.runners import Runner, make_runner
from skelkit.prep.errors import BuildError, first_line
from skelkit.prep.formats import get_dataset
from skelkit.prep.limits import DEFAULT_MAX_FILE_MB, max_file_bytes
from skelkit.prep.report import build_report
from skelkit.prep.tasks import DatasetSpec, Discovery, FileTask
from skelkit.store.errors import StoreError
from skelkit.store.layout import Layout, get_layout
from skelkit.store.lock import store_lock
from skelkit.store.reader import open_store
from skelkit.store.schema import FIXED_FRAMES, MAX_BODIES, MODALITIES
from skelkit.store.writer import StoreWriter

BATCH_PAUSE_ENV = "SKELKIT_PREP_BATCH_PAUSE"
"""Seconds to sleep after each committed batch: a throttle so tests can kill a build mid-way."""


@dataclass
class BuildOptions:
    dataset: str
    raw: Path
    out: Path
    frames: int = FIXED_FRAMES
    workers: int | None = None
    scheduler: str | None = None
    missing: Path | None = None
    resume: bool = False
    overwrite: bool = False
    batch_size: int | None = None
    progress: bool = True
    on_files: Callable[[int, int], None] | None = None
    """Called with (files parsed or committed so far, files in all) as each file finishes; from a
    progress thread when workers are local processes."""
    # --dataset generic only (skelkit/prep/formats/generic.py)
    manifest: Path | None = None
    layout: str | None = None
    normalise: str = "layout"
    allow_outside_raw: bool = False
    max_file_mb: float | None = DEFAULT_MAX_FILE_MB
    """Raw files larger than this (MB, 10^6 bytes) are skipped unread; None: no limit."""


# ---------------------------------------------------------------------------------------------
# Driver side.


def _open_writer(opts: BuildOptions, dataset: DatasetSpec, layout: Layout,
                 disc: Discovery) -> tuple[StoreWriter, bool]:
    out = opts.out
    if out.exists() and not out.is_dir():
        raise BuildError(f"{out} exists and is not a folder")
    if out.exists() and opts.resume:
        try:
            writer = StoreWriter.resume(out)
        except StoreError:
            raise
        except Exception as e:
            raise BuildError(
                f"cannot resume {out} ({type(e).__name__}: {e}); use --overwrite"
            ) from None
        attrs = writer.group.attrs
        if attrs.get("dataset") != dataset.name or int(attrs.get("frames", -1)) != opts.frames:
            raise BuildError(
                f"{out} holds dataset {attrs.get('dataset')} with {attrs.get('frames')} frames; "
                f"cannot resume it as {dataset.name} with {opts.frames} frames"
            )
        return writer, True
    if out.exists() and not opts.overwrite:
        raise BuildError(f"{out} already exists (use --resume to finish it or --overwrite)")
    if out.exists() and not (out / "zarr.json").is_file() and any(out.iterdir()):
        raise BuildError(f"refusing to overwrite {out}: it is not a skelkit store")
    source = {
        "raw": str(opts.raw.resolve()),
        "files_found": disc.files_found,
        "missing_list": str(opts.missing) if opts.missing else dataset.missing_resource,
    }
    normalisation = dataset.normalisation_attrs or {
        "raw": "CMD pre-normalisation (docs/design.md §3.3), T_orig frames per sample",
        "fixed": f"IKEM fixed length ({opts.frames} frames), gamma = T_orig / {opts.frames}",
    }
    writer = StoreWriter.create(
        out, dataset=dataset.name, layout=layout, frames=opts.frames, max_bodies=MAX_BODIES,
        modalities=list(MODALITIES), normalisation=normalisation, source=source,
        protocols=list(dataset.protocols), overwrite=opts.overwrite,
    )
    return writer, False


@dataclass
class Progress:
    """What is durably in the store; committed after every batch as attrs["progress"]."""

    fingerprint: str
    batch_size: int
    batches: int
    batches_done: int = 0
    files_done: int = 0
    bytes_done: int = 0
    seconds: float = 0.0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    sample_names: str | None = None
    """DatasetSpec.sample_names when the build started (absent in older stores)."""

    def to_attrs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _start_progress(opts: BuildOptions, dataset: DatasetSpec, disc: Discovery, workers: int,
                    stored: dict[str, Any]) -> tuple[Progress, list[list[FileTask]]]:
    # A resume must cut the same batches as the interrupted run, whatever the worker count now.
    batch_size = int(stored.get("batch_size") or
                     choose_batch_size(len(disc.tasks), workers, opts.batch_size))
    batches = make_batches(disc.tasks, batch_size)
    stamp = fingerprint(batches, opts.frames, dataset.name)
    if stored.get("fingerprint") not in (None, stamp):
        raise BuildError(f"the raw folder changed since {opts.out} was started; use --overwrite")
    started_names = stored.get("sample_names")
    if stored.get("fingerprint") is not None and started_names != dataset.sample_names:
        raise BuildError(
            f"{opts.out} was started with another {dataset.name} sample-name scheme "
            f"({started_names or 'the file stems'}; this skelkit writes {dataset.sample_names}); "
            "rebuild it with --overwrite"
        )
    progress = Progress(stamp, batch_size, len(batches), sample_names=dataset.sample_names)
    if stored.get("fingerprint") is not None:
        for key in ("batches_done", "files_done", "bytes_done", "seconds", "skipped"):
            setattr(progress, key, stored[key])
    return progress, batches


def _run_batches(writer: StoreWriter, progress: Progress, batches: list[list[FileTask]],
                 opts: BuildOptions, dataset: DatasetSpec, layout: Layout, disc: Discovery,
                 runner: Runner) -> None:
    """Prepare every batch not yet committed on the runner; append and commit them in order."""
    started = time.perf_counter() - progress.seconds
    pause = float(os.environ.get(BATCH_PAUSE_ENV, "0") or 0)
    pending = iter(range(progress.batches_done, len(batches)))
    in_flight: deque = deque()

    def submit_next() -> None:
        i = next(pending, None)
        if i is not None:
            in_flight.append(runner.submit(prepare_batch, batches[i], layout, opts.frames,
                                           dataset.prepare, i))

    total = len(disc.tasks)
    with tqdm.tqdm(total=total, initial=progress.files_done, unit="file",
                   desc=f"skelprep {dataset.name}", disable=not opts.progress, file=sys.stderr,
                   mininterval=0.5, miniters=1, dynamic_ncols=True) as bar:

        shown = [progress.files_done]

        def show(files: int) -> None:  # called under the counter's lock, from any thread
            bar.update(files - shown[0])
            shown[0] = files
            if opts.on_files is not None:
                opts.on_files(files, total)

        counter = FileCounter([len(b) for b in batches], progress.batches_done,
                              progress.files_done, show)
        runner.listen(counter.file_parsed)
        for _ in range(max_in_flight(runner.slots, progress.batch_size)):
            submit_next()
        while in_flight:
            try:
                prepared: PreparedBatch = in_flight.popleft().result()
            except Exception as e:  # a dead worker or an unimportable package on a cluster
                raise BuildError(
                    f"a worker failed on batch {progress.batches_done + 1} of {len(batches)} "
                    f"({type(e).__name__}: {first_line(e)}); fix it and rerun with --resume"
                ) from e
            submit_next()
            writer.append(to_sample_batch(prepared, dataset, disc.split_lists))
            progress.batches_done += 1
            progress.files_done += prepared.files
            progress.bytes_done += prepared.bytes
            progress.skipped.extend(s.to_dict() for s in prepared.skipped)
            progress.seconds = time.perf_counter() - started
            writer.commit_progress(progress.to_attrs())
            counter.batch_committed(progress.batches_done - 1)
            if pause:
                time.sleep(pause)
    progress.seconds = time.perf_counter() - started


def build_store(opts: BuildOptions) -> dict[str, Any]:
    """Build ``opts.out`` from ``opts.raw``; returns the report stored in the store."""
    dataset = get_dataset(opts.dataset, opts.raw, manifest=opts.manifest, layout=opts.layout,
                          normalise=opts.normalise, frames=opts.frames,
                          allow_outside_raw=opts.allow_outside_raw)
    if opts.frames < 2:
        raise BuildError(f"--frames must be at least 2, not {opts.frames}")
    layout = get_layout(dataset.layout)
    disc = dataset.discover(opts.raw, opts.missing, max_file_bytes=max_file_bytes(opts.max_file_mb))
    if opts.out.exists() and opts.out.resolve() == opts.raw.resolve():
        raise BuildError("--out must not be the raw folder")
    workers = opts.workers if opts.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BuildError(f"--workers must be at least 1, not {workers}")
    # One writer at a time: a second build, --resume or --overwrite of this store stops here
    # with one line naming the holder, before it touches anything.
    with store_lock(opts.out):
        return _build_locked(opts, dataset, layout, disc, workers)


def _build_locked(opts: BuildOptions, dataset: DatasetSpec, layout: Layout, disc: Discovery,
                  workers: int) -> dict[str, Any]:
    if opts.out.exists() and opts.resume and _is_complete(opts.out):
        print(f"skelprep build: {opts.out} is already complete; nothing to resume", file=sys.stderr)
        return open_store(opts.out).report

    # The runner first: a scheduler that cannot be reached must not leave an empty store behind.
    runner = make_runner(workers, opts.scheduler)
    try:
        writer, resumed = _open_writer(opts, dataset, layout, disc)
        stored = writer.progress if resumed else {}
        if resumed and stored.get("fingerprint") is None and writer.n_samples:
            raise BuildError(f"{opts.out} has samples but no build progress; use --overwrite")
        progress, batches = _start_progress(opts, dataset, disc, runner.slots, stored)
        _run_batches(writer, progress, batches, opts, dataset, layout, disc, runner)
    finally:
        runner.close()

    report = build_report(
        dataset=dataset.name, raw=opts.raw, frames=opts.frames, discovery=disc,
        samples_written=writer.n_samples,
        skipped=[s.to_dict() for s in disc.skipped] + progress.skipped,
        seconds=progress.seconds, files_done=progress.files_done,
        bytes_done=progress.bytes_done, workers=runner.slots, scheduler=runner.description,
        batch_size=progress.batch_size, batches=progress.batches, resumed=resumed,
        missing_list=str(opts.missing) if opts.missing else dataset.missing_resource,
    )
    writer.finalize(report)
    return report


def _is_complete(path: Path) -> bool:
    try:
        return bool(zarr.open_group(str(path), mode="r").attrs.get("complete"))
    except Exception:
        return False
