"""What one unit of build work is: a dataset's spec, its file tasks, sample specs and skips.

A :class:`DatasetSpec` turns a raw folder into an ordered list of :class:`FileTask` (one raw file
and the samples cut from it) plus the samples skipped before any parsing (missing-skeleton list,
bad names, broken label lines). Its ``prepare`` parses one task on a worker; the build pipeline
runs those in parallel. The formats (``skelkit/prep/formats/``) fill these in; nothing here knows
a format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from skelkit.prep.errors import DatasetError
from skelkit.store.layout import Layout


@dataclass(frozen=True)
class Skip:
    """A sample left out of the store, with where and why (one build-report entry)."""

    name: str
    file: str
    line: int | None
    reason: str
    kind: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "file": self.file, "line": self.line,
                "reason": self.reason, "kind": self.kind}


@dataclass(frozen=True)
class SampleSpec:
    """What is known about one sample before its skeleton is read."""

    name: str
    label: int
    subject: int
    camera: int
    setup: int
    replication: int
    group: str = ""
    """Protocol key for datasets whose splits list videos (PKU: the video name)."""
    start: int = 0
    end: int = -1
    """Frames start..end-1 of the file (PKU clips); end -1 means the whole file."""
    label_file: str = ""
    label_line: int = 0


@dataclass(frozen=True)
class FileTask:
    """One raw skeleton file and the samples cut from it, parsed together by one worker."""

    file: str
    samples: tuple[SampleSpec, ...]
    size: int


@dataclass
class Discovery:
    tasks: list[FileTask]
    skipped: list[Skip]
    files_found: int
    excluded: int = 0
    """Files of another dataset in the same folder (NTU-120 files in an ntu60 build)."""
    split_lists: dict[str, list[str]] = field(default_factory=dict)

    @property
    def num_samples(self) -> int:
        return sum(len(t.samples) for t in self.tasks)


DiscoverFn = Callable[[Path, set[str]], Discovery]
SplitFn = Callable[[dict[str, np.ndarray], dict[str, list[str]]], dict[str, np.ndarray]]
PreparedPair = tuple[SampleSpec, Any]
TaskPreparer = Callable[[FileTask, Layout, int, list[PreparedPair], list[Skip]], None]
"""One task on a worker: (task, layout, frames, out, skipped) appends (spec, PreparedSample)
pairs to ``out`` and a Skip per lost sample to ``skipped``; it must pickle (module-level or a
``functools.partial`` of one) because it travels to the dask workers."""


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    layout: str
    protocols: tuple[str, ...]
    missing_resource: str | None
    discover_fn: DiscoverFn
    splits_fn: SplitFn
    prepare: TaskPreparer
    normalisation_attrs: dict[str, str] | None = None
    """The store's ``normalisation`` attribute when it is not the CMD/IKEM default (generic)."""
    splits_from_columns: bool = False
    """The splits follow from the stored id columns alone (no lists), so verify recomputes them."""
    sample_names: str | None = None
    """A tag for the sample-name scheme of a dataset whose names changed between skelkit
    versions (UTD-MHAD); a resume refuses a store started under another scheme."""

    def discover(self, raw: str | Path, missing_file: str | Path | None = None,
                 max_file_bytes: int | None = None) -> Discovery:
        """The ordered work list of ``raw``; DatasetError if the folder holds nothing to build.

        Files larger than ``max_file_bytes`` are skipped with a reason, unread."""
        raw = Path(raw)
        if not raw.exists():
            raise DatasetError(f"raw folder {raw} does not exist")
        if not raw.is_dir():
            raise DatasetError(f"raw path {raw} is not a folder")
        if not any(raw.iterdir()):
            raise DatasetError(f"raw folder {raw} is empty")
        found = self.discover_fn(raw, load_missing(missing_file, self.missing_resource))
        return skip_oversize(found, max_file_bytes) if max_file_bytes is not None else found

    def splits(self, columns: dict[str, np.ndarray],
               split_lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """int8 per sample and protocol: 0 train, 1 test."""
        return self.splits_fn(columns, split_lists)


def skip_oversize(disc: Discovery, max_file_bytes: int) -> Discovery:
    """``disc`` without the tasks whose file is larger than ``max_file_bytes``: each of their
    samples becomes a Skip (kind ``too_large``). Decided from the file's size on disk (a sparse
    file counts at its full size), so such a file is never read."""
    kept = [t for t in disc.tasks if t.size <= max_file_bytes]
    if len(kept) == len(disc.tasks):
        return disc
    limit = f"{max_file_bytes / 1e6:g}"
    skipped = [Skip(spec.name, t.file, None, f"file is {t.size / 1e6:.1f} MB, above "
                    f"--max-file-mb {limit}: not read", "too_large")
               for t in disc.tasks if t.size > max_file_bytes for spec in t.samples]
    return Discovery(kept, [*disc.skipped, *skipped], files_found=disc.files_found,
                     excluded=disc.excluded, split_lists=disc.split_lists)


def load_missing(path: str | Path | None, default_resource: str | None) -> set[str]:
    """Sample names to skip: the packaged official list, or ``path`` in its place."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DatasetError(f"missing-skeleton list {p} does not exist")
        text = p.read_text(encoding="utf-8", errors="replace")
    elif default_resource is not None:
        text = (resources.files("skelkit.prep") / "data" / default_resource).read_text("utf-8")
    else:
        return set()
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.removesuffix(".skeleton"))
    return names


def listed_splits(column: str) -> SplitFn:
    """Splits from lists of train-side keys: a sample is on the train side (0) when its
    ``column`` value (PKU: ``group``, the video; generic: ``name``) is listed, else test (1)."""

    def splits(columns: dict[str, np.ndarray],
               split_lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
        keys = columns[column]
        return {
            protocol: (~np.isin(keys, np.asarray(train, dtype=object))).astype(np.int8)
            for protocol, train in split_lists.items()
        }

    return splits
