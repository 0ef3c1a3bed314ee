"""PKU-MMD phase II: labelled clips of long videos, one skeleton file a video (docs/design.md §2.2).

``RAW/skeleton/<video>.txt`` holds the frames, ``RAW/label/<video>.txt`` the clips (label,
start, end); a worker parses a video once and cuts every clip from it. Protocols xsub and xview
list the training videos in ``cross_subject_v2.txt`` and ``cross_view_v2.txt``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from skelkit.prep.errors import DatasetError, RawFormatError, first_line
from skelkit.prep.kernels.parse_pku import parse_pku_labels, parse_pku_skeleton, parse_pku_split
from skelkit.prep.kernels.sample import prepare_bodies, sample_problem
from skelkit.prep.tasks import DatasetSpec, Discovery, FileTask, PreparedPair, SampleSpec, Skip, listed_splits
from skelkit.store.layout import Layout
from skelkit.store.schema import MAX_BODIES

PKU_VIDEO = re.compile(r"^A(\d+)N(\d+)-([LMR])$")
PKU_VIEW_CAMERA = {"L": 1, "M": 2, "R": 3}
PKU_SPLIT_FILES = {"xsub": "cross_subject_v2.txt", "xview": "cross_view_v2.txt"}


def pku_video_ids(video: str) -> tuple[int, int, int]:
    """(subject, camera, replication) from names like A01N01-L; -1 where the name says nothing."""
    m = PKU_VIDEO.match(video)
    if m is None:
        return -1, -1, -1
    return int(m.group(1)), PKU_VIEW_CAMERA[m.group(3)], int(m.group(2))


def discover_pku(raw: Path, missing: set[str]) -> Discovery:
    """One task per video with a label file; unreadable label files and listed clips are skips."""
    skel_dir, label_dir = raw / "skeleton", raw / "label"
    files = sorted(skel_dir.glob("*.txt")) if skel_dir.is_dir() else []
    if not files:
        raise DatasetError(f"no PKU-MMD skeleton file in {skel_dir}")
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
        subject, camera, replication = pku_video_ids(video)
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


def prepare_pku_task(task: FileTask, layout: Layout, frames: int, out: list[PreparedPair],
                     skipped: list[Skip]) -> None:
    """Parse one video, then cut and prepare each of its clips; a bad clip costs only itself."""
    try:
        video = parse_pku_skeleton(task.file, layout.num_joints, bodies=MAX_BODIES)  # (T,M,V,3)
    except RawFormatError as e:
        for spec in task.samples:
            skipped.append(Skip(spec.name, e.file or task.file, e.line or None, e.reason, e.kind))
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
            skipped.append(Skip(*where, f"{type(e).__name__}: {first_line(e)}", "error"))
            continue
        problem = sample_problem(sample)
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


PKU2 = DatasetSpec(
    name="pku2", layout="ntu25", protocols=("xsub", "xview"), missing_resource=None,
    discover_fn=discover_pku, splits_fn=listed_splits("group"), prepare=prepare_pku_task,
)
