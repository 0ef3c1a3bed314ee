"""`--dataset utd-mhad`: UTD-MHAD Kinect v1 skeletons (docs/design.md §2.3).

Files ``a{action}_s{subject}_t{trial}_skeleton.mat`` hold ``d_skel`` shaped (20, 3, T) in the
``kinect20`` joint order. One performer per recording: body 0 is the recording, body 1 zeros.
Protocol xsub: odd subjects train, even subjects test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from skelkit.prep.errors import DatasetError, RawFormatError
from skelkit.prep.formats.generic import Normalisation, prepare_array_task
from skelkit.prep.tasks import DatasetSpec, Discovery, FileTask, PreparedPair, SampleSpec, Skip
from skelkit.store.layout import Layout

UTD_NAME = re.compile(r"^a(\d+)_s(\d+)_t(\d+)_skeleton\.mat$")
UTD_ACTIONS, UTD_SUBJECTS = 27, 8
UTD_JOINTS = 20
UTD_VARIABLE = "d_skel"


def parse_utd_name(filename: str) -> tuple[int, int, int]:
    """(action, subject, trial), 1-based as in the name; ValueError if the name does not fit."""
    m = UTD_NAME.match(filename)
    if m is None:
        raise ValueError(
            f"name {filename!r} does not match a<action>_s<subject>_t<trial>_skeleton.mat"
        )
    action, subject, trial = (int(g) for g in m.groups())
    if not (1 <= action <= UTD_ACTIONS and 1 <= subject <= UTD_SUBJECTS and trial >= 1):
        raise ValueError(f"name {filename!r} is outside UTD-MHAD's {UTD_ACTIONS} actions and "
                         f"{UTD_SUBJECTS} subjects")
    return action, subject, trial


UTD_NAMES = "a<action>_s<subject>_t<trial>"
"""Sample names without the files' ``_skeleton`` suffix; stores built before this recorded the
file stem (``a1_s1_t1_skeleton``). Recorded in the build progress so a resume cannot mix the two."""


def utd_sample_name(action: int, subject: int, trial: int) -> str:
    return f"a{action}_s{subject}_t{trial}"


def discover_utd(raw: Path, missing: set[str]) -> Discovery:
    """Every ``*_skeleton.mat`` under ``raw``, in name order; bad names are reported skips."""
    files = sorted(Path(raw).rglob("*_skeleton.mat"), key=lambda p: (p.name, str(p)))
    if not files:
        raise DatasetError(f"no UTD-MHAD *_skeleton.mat file in {raw}")
    tasks: list[FileTask] = []
    skipped: list[Skip] = []
    for f in files:
        stem = f.name.removesuffix(".mat")
        try:
            action, subject, trial = parse_utd_name(f.name)
        except ValueError as e:
            skipped.append(Skip(stem, str(f), None, str(e), "bad_name"))
            continue
        if not f.is_file():  # a dangling link or a folder named like a sample
            skipped.append(Skip(stem, str(f), None, "not a readable file", "raw_format"))
            continue
        name = utd_sample_name(action, subject, trial)
        if name in missing or stem in missing:  # lists written either way
            skipped.append(Skip(name, str(f), None, "in the missing list", "missing_list"))
            continue
        spec = SampleSpec(name=name, label=action - 1, subject=subject, camera=-1, setup=-1,
                          replication=trial)
        tasks.append(FileTask(str(f), (spec,), f.stat().st_size))
    return Discovery(tasks, skipped, files_found=len(files))


def utd_splits(columns: dict[str, np.ndarray],
               split_lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """xsub: odd subjects train (0), even subjects test (1)."""
    return {"xsub": (np.asarray(columns["subject"]) % 2 == 0).astype(np.int8)}


def read_utd_skeleton(path: str | Path) -> np.ndarray:
    """``d_skel`` of one file as (T, 20, 3) float32; RawFormatError naming the file otherwise."""
    try:
        content = scipy.io.loadmat(str(path), variable_names=[UTD_VARIABLE])
    except Exception as e:  # scipy raises several types for a damaged or foreign file
        raise RawFormatError(f"not a readable MATLAB file ({type(e).__name__}: {e})",
                             file=str(path)) from None
    if UTD_VARIABLE not in content:
        raise RawFormatError(f"no variable {UTD_VARIABLE!r}", file=str(path))
    skel = np.asarray(content[UTD_VARIABLE])
    if skel.ndim != 3 or skel.shape[0] != UTD_JOINTS or skel.shape[1] != 3:
        raise RawFormatError(f"{UTD_VARIABLE} is shaped {skel.shape}, expected "
                             f"({UTD_JOINTS}, 3, T) (joint count)", file=str(path))
    if skel.dtype.kind not in "fiu":
        raise RawFormatError(f"{UTD_VARIABLE} holds {skel.dtype}, expected numbers",
                             file=str(path))
    return np.ascontiguousarray(skel.transpose(2, 0, 1), dtype=np.float32)


def prepare_utd_task(task: FileTask, layout: Layout, frames: int, out: list[PreparedPair],
                     skipped: list[Skip]) -> None:
    """One ``.mat`` file -> one sample in ``out``, or one Skip with file and reason."""
    spec = task.samples[0]
    try:
        skel = read_utd_skeleton(task.file)
    except RawFormatError as e:
        kind = "joint_count" if "joint count" in e.reason else "raw_format"
        skipped.append(Skip(spec.name, task.file, None, e.reason, kind))
        return
    prepare_array_task(task, skel, layout, frames, Normalisation("layout"), out, skipped)


UTD_MHAD = DatasetSpec(
    name="utd-mhad", layout="kinect20", protocols=("xsub",), missing_resource=None,
    discover_fn=discover_utd, splits_fn=utd_splits, prepare=prepare_utd_task,
    splits_from_columns=True, sample_names=UTD_NAMES,
)
