"""The `skelprep build` pipeline: raw files -> batches prepared on dask -> an ordered, resumable store.

The driver discovers the raw files (sorted, so every run cuts the same batches), keeps at most
``2 * workers`` batches (and IN_FLIGHT_SAMPLES samples) in flight, writes finished batches
strictly in order through StoreWriter and commits progress after each one. Memory is therefore
bounded by the batches in flight, never by the dataset, and a killed build resumes at the first
batch that was not committed. Samples that fail become report entries; the build goes on.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tqdm

from skelkit.prep.datasets import (
    DatasetError,
    DatasetSpec,
    Discovery,
    FileTask,
    SampleSpec,
    Skip,
    get_dataset,
)
from skelkit.prep.report import build_report
from skelkit.store import Layout, get_layout
from skelkit.store.errors import StoreError
from skelkit.store.schema import MAX_BODIES, MODALITIES
from skelkit.store.writer import SampleBatch, StoreWriter

BATCH_SIZE_ENV = "SKELKIT_PREP_BATCH_SIZE"
"""Overrides the samples per batch (tests use tiny batches to interrupt builds mid-way)."""
BATCH_PAUSE_ENV = "SKELKIT_PREP_BATCH_PAUSE"
"""Seconds to sleep after each committed batch: a throttle so tests can kill a build mid-way."""
MIN_BATCH, MAX_BATCH = 64, 256
IN_FLIGHT_SAMPLES = 2048
"""Bound on prepared samples held by the driver (~240 KB each): the build's memory ceiling."""


class BuildError(Exception):
    """A build that cannot start or continue (exit code 2, one line)."""


@dataclass
class BuildOptions:
    dataset: str
    raw: Path
    out: Path
    frames: int = 50
    workers: int | None = None
    scheduler: str | None = None
    missing: Path | None = None
    resume: bool = False
    overwrite: bool = False
    batch_size: int | None = None
    progress: bool = True
    # --dataset generic only (skelkit/prep/generic.py)
    manifest: Path | None = None
    layout: str | None = None
    normalise: str = "layout"


# ---------------------------------------------------------------------------------------------
# Worker side: one batch of files -> arrays ready to append, plus the samples that failed.


@dataclass
class PreparedBatch:
    specs: list[SampleSpec]
    raw: list[np.ndarray]
    fixed: dict[str, np.ndarray]
    num_frames: np.ndarray
    num_bodies: np.ndarray
    gamma: np.ndarray
    skipped: list[Skip] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def _classify(reason: str) -> str:
    """A short kind for the report's per-reason counts (the full reason stays in each entry)."""
    r = reason.lower()
    for kind, words in (
        ("non_finite", ("nan value", "infinite value", "non-finite")),
        ("zero_frames", ("zero frames",)),
        ("truncated", ("truncated",)),
        ("joint_count", ("wrong joint count",)),
        ("field_count", ("values, expected",)),
        ("non_numeric", ("non-numeric", "non-integer")),
        ("empty_file", ("empty file",)),
        ("no_bodies", ("no body",)),
    ):
        if any(w in r for w in words):
            return kind
    return "raw_format"


def _first_nonfinite_line(path: str) -> int | None:
    """1-based line of the first token that parses to NaN or inf (only called on failure)."""
    with open(path, encoding="ascii", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            for token in line.split():
                try:
                    if not math.isfinite(float(token)):
                        return number
                except ValueError:
                    continue
    return None


def _sample_problem(sample: Any) -> tuple[str, str] | None:
    """(kind, reason) when a prepared sample cannot go into the store, else None."""
    if sample.num_frames <= 0 or sample.raw.shape[0] == 0:
        return "zero_frames", "zero frames"
    if sample.num_bodies == 0:
        return "no_bodies", "no body in any frame"
    if not np.isfinite(sample.raw).all():
        return "non_finite", "non-finite value (NaN or inf) in the joints"
    for name, arr in sample.fixed.items():
        if not np.isfinite(arr).all():
            return "non_finite", f"non-finite value (NaN or inf) in modality {name}"
    return None


def _prepare_ntu_task(task: FileTask, layout: Layout, frames: int, out: list, skipped: list) -> None:
    from skelkit.prep.errors import RawFormatError
    from skelkit.prep.sample import prepare_ntu_file

    spec = task.samples[0]
    try:
        sample = prepare_ntu_file(task.file, layout, frames)
    except RawFormatError as e:
        skipped.append(Skip(spec.name, e.file or task.file, e.line or None, e.reason,
                            _classify(e.reason)))
        return
    except Exception as e:  # an unexpected failure costs one sample, not the whole build
        skipped.append(Skip(spec.name, task.file, None, f"{type(e).__name__}: {_first_line(e)}",
                            "error"))
        return
    problem = _sample_problem(sample)
    if problem is not None:
        kind, reason = problem
        line = {"non_finite": _first_nonfinite_line(task.file), "zero_frames": 1}.get(kind)
        skipped.append(Skip(spec.name, task.file, line, reason, kind))
        return
    out.append((spec, sample))


def _prepare_pku_task(task: FileTask, layout: Layout, frames: int, out: list, skipped: list) -> None:
    from skelkit.prep.errors import RawFormatError
    from skelkit.prep.parse_pku import parse_pku_skeleton
    from skelkit.prep.sample import prepare_bodies

    try:
        video = parse_pku_skeleton(task.file, layout.num_joints, bodies=MAX_BODIES)  # (T,M,V,3)
    except RawFormatError as e:
        for spec in task.samples:
            skipped.append(Skip(spec.name, e.file or task.file, e.line or None, e.reason,
                                _classify(e.reason)))
        return
    total = video.shape[0]
    for spec in task.samples:
        where = (spec.name, spec.label_file, spec.label_line)
        if spec.end > total:
            skipped.append(Skip(*where, f"label frames {spec.start}..{spec.end - 1} run past the "
                                f"end of {task.file} ({total} frames)", "label_past_end"))
            continue
        if spec.end <= spec.start:
            skipped.append(Skip(*where, f"zero frames (start {spec.start}, end {spec.end})",
                                "zero_frames"))
            continue
        clip = np.ascontiguousarray(video[spec.start:spec.end].transpose(1, 0, 2, 3))
        try:
            sample = prepare_bodies(clip, layout, frames)
        except Exception as e:
            skipped.append(Skip(*where, f"{type(e).__name__}: {_first_line(e)}", "error"))
            continue
        problem = _sample_problem(sample)
        if problem is not None:
            kind, reason = problem
            if kind == "non_finite":
                bad = np.flatnonzero(~np.isfinite(clip).all(axis=(0, 2, 3)))
                line = int(spec.start + bad[0] + 1) if bad.size else None
                skipped.append(Skip(spec.name, task.file, line, reason, kind))
            else:
                skipped.append(Skip(*where, reason, kind))
            continue
        out.append((spec, sample))


def prepare_batch(tasks: list[FileTask], layout: Layout, frames: int, kind: str) -> PreparedBatch:
    """Parse and prepare every sample of ``tasks`` (runs on a dask worker)."""
    if kind in ("ntu", "pku"):
        prepare = _prepare_ntu_task if kind == "ntu" else _prepare_pku_task
    else:  # array-file kinds: generic:<normalisation>, utd
        from skelkit.prep.generic import task_preparer

        prepare = task_preparer(kind)
    done: list[tuple[SampleSpec, Any]] = []
    skipped: list[Skip] = []
    for task in tasks:
        prepare(task, layout, frames, done, skipped)
    fixed: dict[str, np.ndarray] = {}
    if done:
        for name in MODALITIES:
            fixed[name] = np.stack([s.fixed[name] for _, s in done]).astype(np.float32, copy=False)
    return PreparedBatch(
        specs=[spec for spec, _ in done],
        raw=[np.asarray(s.raw, dtype=np.float32) for _, s in done],
        fixed=fixed,
        num_frames=np.array([s.num_frames for _, s in done], dtype=np.int32),
        num_bodies=np.array([s.num_bodies for _, s in done], dtype=np.int8),
        gamma=np.array([s.gamma for _, s in done], dtype=np.float32),
        skipped=skipped,
        files=len(tasks),
        bytes=sum(t.size for t in tasks),
    )


# ---------------------------------------------------------------------------------------------
# Where batches run. Every runner computes the same one-task dask graph per batch; they differ
# only in the scheduler that executes it.


class _Ready:
    """A batch computed lazily in the driver when its result is asked for (one worker)."""

    def __init__(self, task: Any) -> None:
        self._task = task

    def result(self) -> Any:
        import dask

        return dask.compute(self._task, scheduler="synchronous")[0]


class Runner:
    slots: int = 1
    description: str = "synchronous"

    def submit(self, fn: Any, *args: Any) -> Any:
        import dask

        return _Ready(dask.delayed(fn, pure=False)(*args))

    def close(self) -> None:
        pass


class LocalRunner(Runner):
    """dask's local process scheduler on one persistent pool of ``workers`` processes.

    Each batch is its own ``dask.compute`` call issued from a dispatch thread, so finished
    batches come back one by one (a single compute over all batches would hold them all).
    Spawned, not forked: the driver runs zarr's event-loop thread, which fork does not copy.
    """

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

        self.slots = workers
        self.description = f"dask local processes ({workers})"
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        self._dispatch = ThreadPoolExecutor(2 * workers, thread_name_prefix="skelprep-dispatch")

    def submit(self, fn: Any, *args: Any) -> Any:
        import dask

        task = dask.delayed(fn, pure=False)(*args)
        return self._dispatch.submit(
            lambda: dask.compute(task, scheduler="processes", pool=self._pool)[0]
        )

    def close(self) -> None:
        self._dispatch.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)


class DistributedRunner(Runner):
    """An existing dask.distributed cluster (``--scheduler tcp://host:8786``)."""

    def __init__(self, address: str) -> None:
        _check_reachable(address)
        try:
            from distributed import Client

            self._client = Client(address, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise BuildError(f"cannot connect to the dask scheduler at {address}: {e}") from None
        threads = sum(self._client.nthreads().values())
        self.slots = max(1, threads)
        self.description = f"dask.distributed {address} ({self.slots} threads)"

    def submit(self, fn: Any, *args: Any) -> Any:
        import dask

        return self._client.compute(dask.delayed(fn, pure=False)(*args))

    def close(self) -> None:
        self._client.close()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after the client's retry window, when nothing listens at a tcp address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # inproc, ucx, ...: leave it to distributed
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BuildError(f"--scheduler {address!r} is not an address like tcp://host:8786")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise BuildError(f"cannot connect to the dask scheduler at {address}: {e}") from None


def make_runner(workers: int, scheduler: str | None) -> Runner:
    if scheduler:
        return DistributedRunner(scheduler)
    if workers <= 1:
        return Runner()
    return LocalRunner(workers)


# ---------------------------------------------------------------------------------------------
# Driver side.


def to_sample_batch(prepared: PreparedBatch, dataset: DatasetSpec,
                    split_lists: dict[str, list[str]]) -> SampleBatch:
    specs = prepared.specs
    columns: dict[str, np.ndarray] = {
        "name": np.array([s.name for s in specs], dtype=object),
        "label": np.array([s.label for s in specs], dtype=np.int64),
        "subject": np.array([s.subject for s in specs], dtype=np.int32),
        "camera": np.array([s.camera for s in specs], dtype=np.int32),
        "setup": np.array([s.setup for s in specs], dtype=np.int32),
        "replication": np.array([s.replication for s in specs], dtype=np.int32),
        "num_frames": prepared.num_frames,
        "num_bodies": prepared.num_bodies,
        "gamma": prepared.gamma,
    }
    groups = np.array([s.group for s in specs], dtype=object)
    splits = dataset.splits({**columns, "group": groups}, split_lists)
    return SampleBatch(columns=columns, splits=splits, raw=prepared.raw, fixed=prepared.fixed)


def choose_batch_size(num_tasks: int, workers: int, override: int | None = None) -> int:
    """~4 batches per worker for load balance, 64-256 samples (256 = the store's shard), and
    small enough that 2 batches per worker stay within IN_FLIGHT_SAMPLES."""
    if override is None and os.environ.get(BATCH_SIZE_ENV):
        override = int(os.environ[BATCH_SIZE_ENV])
    if override is not None:
        return max(1, override)
    if workers <= 1:
        return MAX_BATCH  # nothing to balance; full shards make the cheapest store writes
    size = min(math.ceil(num_tasks / (4 * workers)), IN_FLIGHT_SAMPLES // (2 * workers))
    return int(np.clip(size, MIN_BATCH, MAX_BATCH))


def max_in_flight(slots: int, batch_size: int) -> int:
    """Batches submitted but not yet written: 2 per worker, within IN_FLIGHT_SAMPLES."""
    return max(2, min(2 * slots, IN_FLIGHT_SAMPLES // max(1, batch_size)))


def make_batches(tasks: list[FileTask], batch_size: int) -> list[list[FileTask]]:
    """Consecutive runs of tasks holding about ``batch_size`` samples each."""
    batches: list[list[FileTask]] = []
    current: list[FileTask] = []
    count = 0
    for task in tasks:
        current.append(task)
        count += len(task.samples)
        if count >= batch_size:
            batches.append(current)
            current, count = [], 0
    if current:
        batches.append(current)
    return batches


def fingerprint(batches: list[list[FileTask]], frames: int, dataset: str) -> str:
    """Identifies the work list so a resume refuses a raw folder that changed meanwhile."""
    h = hashlib.sha256(f"{dataset}|{frames}|{len(batches)}".encode())
    for i, batch in enumerate(batches):
        for t in batch:
            h.update(f"{i}|{Path(t.file).name}|{t.size}|{len(t.samples)}\n".encode())
    return h.hexdigest()


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
    normalisation = getattr(dataset, "normalisation_attrs", None) or {
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
    progress = Progress(stamp, batch_size, len(batches))
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
                                           dataset.kind))

    for _ in range(max_in_flight(runner.slots, progress.batch_size)):
        submit_next()
    with tqdm.tqdm(total=len(disc.tasks), initial=progress.files_done, unit="file",
                   desc=f"skelprep {dataset.name}", disable=not opts.progress, file=sys.stderr,
                   mininterval=0.5, dynamic_ncols=True) as bar:
        while in_flight:
            try:
                prepared: PreparedBatch = in_flight.popleft().result()
            except Exception as e:  # a dead worker or an unimportable package on a cluster
                raise BuildError(
                    f"a worker failed on batch {progress.batches_done + 1} of {len(batches)} "
                    f"({type(e).__name__}: {_first_line(e)}); fix it and rerun with --resume"
                ) from e
            submit_next()
            writer.append(to_sample_batch(prepared, dataset, disc.split_lists))
            progress.batches_done += 1
            progress.files_done += prepared.files
            progress.bytes_done += prepared.bytes
            progress.skipped.extend(s.to_dict() for s in prepared.skipped)
            progress.seconds = time.perf_counter() - started
            writer.commit_progress(progress.to_attrs())
            bar.update(prepared.files)
            if pause:
                time.sleep(pause)
    progress.seconds = time.perf_counter() - started


def build_store(opts: BuildOptions) -> dict[str, Any]:
    """Build ``opts.out`` from ``opts.raw``; returns the report stored in the store."""
    if opts.dataset == "generic":
        from skelkit.prep.generic import generic_dataset

        dataset = generic_dataset(opts.raw, opts.manifest, opts.layout, opts.normalise,
                                  opts.frames)
    elif opts.manifest is not None or opts.layout is not None or opts.normalise != "layout":
        raise BuildError(
            "--manifest, --layout and --normalise are options of --dataset generic only"
        )
    else:
        dataset = get_dataset(opts.dataset)
    if opts.frames < 2:
        raise BuildError(f"--frames must be at least 2, not {opts.frames}")
    layout = get_layout(dataset.layout)
    disc = dataset.discover(opts.raw, opts.missing)
    if opts.out.exists() and opts.out.resolve() == opts.raw.resolve():
        raise BuildError("--out must not be the raw folder")
    workers = opts.workers if opts.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BuildError(f"--workers must be at least 1, not {workers}")
    if opts.out.exists() and opts.resume and _is_complete(opts.out):
        print(f"skelprep build: {opts.out} is already complete; nothing to resume", file=sys.stderr)
        from skelkit.store.reader import open_store

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


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _is_complete(path: Path) -> bool:
    try:
        import zarr

        return bool(zarr.open_group(str(path), mode="r").attrs.get("complete"))
    except Exception:
        return False


__all__ = [
    "BuildError", "BuildOptions", "DatasetError", "PreparedBatch", "build_store",
    "choose_batch_size", "make_batches", "prepare_batch", "to_sample_batch",
]
