"""Dataset specs: which raw files form a dataset, how names map to labels, and the protocols.

A spec turns a raw folder into an ordered list of :class:`FileTask` (one raw file and the samples
cut from it) plus the samples skipped before any parsing (missing-skeleton list, bad names,
broken label lines). It does not parse skeletons; the build pipeline does that in parallel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from skelkit.prep.errors import RawFormatError


class DatasetError(Exception):
    """A raw folder that cannot be built at all (stops the command with exit code 2)."""


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


# ---------------------------------------------------------------------------------------------
# NTU RGB+D 60 / 120 (docs/design.md §2.1)

NTU_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")
NTU60_XSUB_TRAIN = frozenset(
    (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
)
NTU120_XSUB_TRAIN = NTU60_XSUB_TRAIN | frozenset(
    (45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
     89, 91, 92, 93, 94, 95, 97, 98, 100, 103)
)
NTU_XVIEW_TRAIN_CAMERAS = frozenset((2, 3))


@dataclass(frozen=True)
class NtuName:
    setup: int
    camera: int
    performer: int
    replication: int
    action: int


def parse_ntu_name(stem: str) -> NtuName:
    """``SsssCcccPpppRrrrAaaa`` -> its five numbers (1-based, as in the name); ValueError if not."""
    m = NTU_NAME.match(stem)
    if m is None:
        raise ValueError(f"name {stem!r} does not match SsssCcccPpppRrrrAaaa")
    s, c, p, r, a = (int(g) for g in m.groups())
    if not (1 <= s <= 32 and 1 <= c <= 3 and p >= 1 and r >= 1 and 1 <= a <= 120):
        raise ValueError(f"name {stem!r} is outside the NTU RGB+D 120 ranges")
    return NtuName(s, c, p, r, a)


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


def _discover_ntu(raw: Path, missing: set[str], *, max_setup: int, max_action: int,
                  dataset: str) -> Discovery:
    files = sorted(raw.rglob("*.skeleton"), key=lambda p: (p.name, str(p)))
    if not files:
        raise DatasetError(f"no NTU .skeleton file in {raw}")
    tasks: list[FileTask] = []
    skipped: list[Skip] = []
    seen: dict[str, str] = {}
    excluded = 0
    for f in files:
        stem = f.name.removesuffix(".skeleton")
        try:
            n = parse_ntu_name(stem)
        except ValueError as e:
            skipped.append(Skip(stem, str(f), None, str(e), "bad_name"))
            continue
        if n.setup > max_setup or n.action > max_action:
            excluded += 1
            continue
        if stem in missing:
            skipped.append(Skip(stem, str(f), None, "in the missing-skeleton list", "missing_list"))
            continue
        if stem in seen:
            skipped.append(Skip(stem, str(f), None, f"duplicate of {seen[stem]}", "duplicate"))
            continue
        seen[stem] = str(f)
        spec = SampleSpec(name=stem, label=n.action - 1, subject=n.performer, camera=n.camera,
                          setup=n.setup, replication=n.replication)
        tasks.append(FileTask(str(f), (spec,), f.stat().st_size))
    if not tasks and not skipped:
        raise DatasetError(
            f"no {dataset} file in {raw} ({len(files)} .skeleton files, all of another dataset)"
        )
    return Discovery(tasks, skipped, files_found=len(files), excluded=excluded)


def _ntu_splits(xsub_train: frozenset[int], protocol_names: tuple[str, str]):
    def splits(columns: dict[str, np.ndarray], split_lists: dict[str, list[str]]):
        subject, camera, setup = columns["subject"], columns["camera"], columns["setup"]
        out = {"xsub": ~np.isin(subject, sorted(xsub_train))}
        if "xview" in protocol_names:
            out["xview"] = ~np.isin(camera, sorted(NTU_XVIEW_TRAIN_CAMERAS))
        if "xset" in protocol_names:
            out["xset"] = (setup % 2) != 0  # even setups train
        return {k: v.astype(np.int8) for k, v in out.items()}
    return splits


# ---------------------------------------------------------------------------------------------
# PKU-MMD phase II (docs/design.md §2.2)

PKU_VIDEO = re.compile(r"^A(\d+)N(\d+)-([LMR])$")
PKU_VIEW_CAMERA = {"L": 1, "M": 2, "R": 3}
PKU_SPLIT_FILES = {"xsub": "cross_subject_v2.txt", "xview": "cross_view_v2.txt"}


def _pku_video_ids(video: str) -> tuple[int, int, int]:
    """(subject, camera, replication) from names like A01N01-L; -1 where the name says nothing."""
    m = PKU_VIDEO.match(video)
    if m is None:
        return -1, -1, -1
    return int(m.group(1)), PKU_VIEW_CAMERA[m.group(3)], int(m.group(2))


def _discover_pku(raw: Path, missing: set[str]) -> Discovery:
    skel_dir, label_dir = raw / "skeleton", raw / "label"
    files = sorted(skel_dir.glob("*.txt")) if skel_dir.is_dir() else []
    if not files:
        raise DatasetError(f"no PKU-MMD skeleton file in {skel_dir}")
    from skelkit.prep.parse_pku import parse_pku_labels, parse_pku_split

    split_lists: dict[str, list[str]] = {}
    for protocol, fname in PKU_SPLIT_FILES.items():
        p = raw / fname
        if not p.is_file():
            raise DatasetError(f"PKU-MMD split file {p} does not exist")
        try:
            split_lists[protocol] = [v.strip() for v in parse_pku_split(p)]
        except RawFormatError as e:
            raise DatasetError(f"{p}:{e.line}: {e.reason}") from None
    tasks: list[FileTask] = []
    skipped: list[Skip] = []
    for f in files:
        video = f.stem
        label_file = label_dir / f.name
        if not label_file.is_file():
            skipped.append(Skip(f.name, str(f), None, f"no label file {label_file}", "no_label"))
            continue
        try:
            clips = parse_pku_labels(label_file)
        except RawFormatError as e:
            skipped.append(Skip(f.name, str(label_file), e.line, e.reason, "bad_label"))
            continue
        subject, camera, replication = _pku_video_ids(video)
        specs = []
        for index, clip in enumerate(clips):
            name = f"{f.name}_{index}"
            if name in missing:
                skipped.append(Skip(name, str(f), None, "in the missing list", "missing_list"))
                continue
            specs.append(SampleSpec(
                name=name, label=clip.label0, subject=subject, camera=camera, setup=-1,
                replication=replication, group=video, start=clip.start, end=clip.end,
                label_file=str(label_file), label_line=clip.line,
            ))
        if specs:
            tasks.append(FileTask(str(f), tuple(specs), f.stat().st_size))
    return Discovery(tasks, skipped, files_found=len(files), split_lists=split_lists)


def _pku_splits(columns: dict[str, np.ndarray], split_lists: dict[str, list[str]]):
    groups = columns["group"]
    return {
        protocol: (~np.isin(groups, np.asarray(train, dtype=object))).astype(np.int8)
        for protocol, train in split_lists.items()
    }


# ---------------------------------------------------------------------------------------------
# UTD-MHAD (skelkit/prep/utd.py, which imports this module, hence the imports on call)


def _discover_utd(raw: Path, missing: set[str]) -> Discovery:
    from skelkit.prep.utd import discover_utd

    return discover_utd(raw, missing)


def _utd_splits(columns: dict[str, np.ndarray], split_lists: dict[str, list[str]]):
    from skelkit.prep.utd import utd_splits

    return utd_splits(columns, split_lists)


# ---------------------------------------------------------------------------------------------
# The registry

SplitFn = Callable[[dict[str, np.ndarray], dict[str, list[str]]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    """Raw format: "ntu" (one .skeleton file a sample) or "pku" (labelled clips of videos)."""
    layout: str
    protocols: tuple[str, ...]
    missing_resource: str | None
    discover_fn: Callable[[Path, set[str]], Discovery]
    splits_fn: SplitFn

    def discover(self, raw: str | Path, missing_file: str | Path | None = None) -> Discovery:
        """The ordered work list of ``raw``; DatasetError if the folder holds nothing to build."""
        raw = Path(raw)
        if not raw.exists():
            raise DatasetError(f"raw folder {raw} does not exist")
        if not raw.is_dir():
            raise DatasetError(f"raw path {raw} is not a folder")
        if not any(raw.iterdir()):
            raise DatasetError(f"raw folder {raw} is empty")
        return self.discover_fn(raw, load_missing(missing_file, self.missing_resource))

    def splits(self, columns: dict[str, np.ndarray],
               split_lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
        """int8 per sample and protocol: 0 train, 1 test."""
        return self.splits_fn(columns, split_lists)


DATASETS: dict[str, DatasetSpec] = {
    "ntu60": DatasetSpec(
        "ntu60", "ntu", "ntu25", ("xsub", "xview"), "ntu60_missing.txt",
        lambda raw, missing: _discover_ntu(raw, missing, max_setup=17, max_action=60,
                                           dataset="ntu60"),
        _ntu_splits(NTU60_XSUB_TRAIN, ("xsub", "xview")),
    ),
    "ntu120": DatasetSpec(
        "ntu120", "ntu", "ntu25", ("xsub", "xset"), "ntu120_missing.txt",
        lambda raw, missing: _discover_ntu(raw, missing, max_setup=32, max_action=120,
                                           dataset="ntu120"),
        _ntu_splits(NTU120_XSUB_TRAIN, ("xsub", "xset")),
    ),
    "pku2": DatasetSpec(
        "pku2", "pku", "ntu25", ("xsub", "xview"), None, _discover_pku, _pku_splits,
    ),
    "utd-mhad": DatasetSpec(
        "utd-mhad", "utd", "kinect20", ("xsub",), None, _discover_utd, _utd_splits,
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}"
        ) from None


def dataset_names() -> Iterable[str]:
    return DATASETS.keys()
