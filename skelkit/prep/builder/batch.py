"""Batches of file tasks: how they are cut, prepared on a worker and turned into store rows."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from skelkit.prep.builder.file_progress import file_parsed
from skelkit.prep.tasks import DatasetSpec, FileTask, PreparedPair, SampleSpec, Skip, TaskPreparer
from skelkit.store.layout import Layout
from skelkit.store.schema import MODALITIES
from skelkit.store.writer import SampleBatch

BATCH_SIZE_ENV = "SKELKIT_PREP_BATCH_SIZE"
"""Overrides the samples per batch (tests use tiny batches to interrupt builds mid-way)."""
MIN_BATCH, MAX_BATCH = 64, 256
IN_FLIGHT_SAMPLES = 2048
"""Bound on prepared samples held by the driver (~240 KB each): the build's memory ceiling."""


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


def prepare_batch(tasks: list[FileTask], layout: Layout, frames: int,
                  prepare: TaskPreparer, batch_index: int = -1) -> PreparedBatch:
    """Parse and prepare every sample of ``tasks`` with the dataset's preparer (on a worker),
    reporting each finished file of batch ``batch_index`` for the driver's progress bar."""
    done: list[PreparedPair] = []
    skipped: list[Skip] = []
    for task in tasks:
        prepare(task, layout, frames, done, skipped)
        file_parsed(batch_index)
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
