"""NTU RGB+D 60 / 120: one ``.skeleton`` file a sample (docs/design.md §2.1).

Discovery reads the names ``SsssCcccPpppRrrrAaaa``; a worker parses a file with the numba
parser, keeps the two most active bodies and prepares them. Protocols: xsub (the published
training performers), xview (cameras 2 and 3 train; NTU-60), xset (even setups train; NTU-120).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skelkit.prep.errors import DatasetError, RawFormatError, first_line
from skelkit.prep.kernels.bodies import select_bodies
from skelkit.prep.kernels.parse_ntu import parse_ntu_file
from skelkit.prep.kernels.sample import PreparedSample, prepare_bodies, sample_problem
from skelkit.prep.tasks import DatasetSpec, Discovery, FileTask, PreparedPair, SampleSpec, Skip, SplitFn
from skelkit.store.layout import Layout
from skelkit.store.protocols import NTU60_XSUB_TRAIN, NTU120_XSUB_TRAIN, NTU_XVIEW_TRAIN_CAMERAS
from skelkit.store.schema import FIXED_FRAMES, MAX_BODIES

NTU_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})$")


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


def discover_ntu(raw: Path, missing: set[str], *, max_setup: int, max_action: int,
                 dataset: str) -> Discovery:
    """Every ``.skeleton`` file of ``dataset`` under ``raw`` in name order; bad names, listed
    missing samples and duplicates become skips, files of the larger NTU-120 are counted apart."""
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


def ntu_splits(xsub_train: frozenset[int], protocol_names: tuple[str, ...]) -> SplitFn:
    def splits(columns: dict[str, np.ndarray],
               split_lists: dict[str, list[str]]) -> dict[str, np.ndarray]:
        subject, camera, setup = columns["subject"], columns["camera"], columns["setup"]
        out = {"xsub": ~np.isin(subject, sorted(xsub_train))}
        if "xview" in protocol_names:
            out["xview"] = ~np.isin(camera, sorted(NTU_XVIEW_TRAIN_CAMERAS))
        if "xset" in protocol_names:
            out["xset"] = (setup % 2) != 0  # even setups train
        return {k: v.astype(np.int8) for k, v in out.items()}
    return splits


# ---------------------------------------------------------------------------------------------
# Worker side: one file -> one sample, or one Skip naming the file (and line where known).


def prepare_ntu_file(path: str | os.PathLike[str], layout: Layout,
                     frames: int = FIXED_FRAMES) -> PreparedSample:
    """Parse an NTU ``.skeleton`` file, keep its two most active bodies and prepare them.

    Raises RawFormatError (with file and line) on bad input, and for a recording without a
    single body: storing it would be a silent all-zero sample.
    """
    parsed = parse_ntu_file(path, layout.num_joints)
    bodies, num_bodies = select_bodies(parsed.slots, MAX_BODIES)
    if num_bodies == 0:
        raise RawFormatError(f"no body in any of the {parsed.num_frames} frames",
                             file=os.fspath(path), line=0)
    return prepare_bodies(bodies, layout, frames, num_bodies=num_bodies)


def first_nonfinite_line(path: str) -> int | None:
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


def prepare_ntu_task(task: FileTask, layout: Layout, frames: int, out: list[PreparedPair],
                     skipped: list[Skip]) -> None:
    spec = task.samples[0]
    try:
        sample = prepare_ntu_file(task.file, layout, frames)
    except RawFormatError as e:
        skipped.append(Skip(spec.name, e.file or task.file, e.line or None, e.reason, e.kind))
        return
    except Exception as e:  # an unexpected failure costs one sample, not the whole build
        skipped.append(Skip(spec.name, task.file, None, f"{type(e).__name__}: {first_line(e)}",
                            "error"))
        return
    problem = sample_problem(sample)
    if problem is not None:
        kind, reason = problem
        line = {"non_finite": first_nonfinite_line(task.file), "zero_frames": 1}.get(kind)
        skipped.append(Skip(spec.name, task.file, line, reason, kind))
        return
    out.append((spec, sample))


def _discover_ntu60(raw: Path, missing: set[str]) -> Discovery:
    return discover_ntu(raw, missing, max_setup=17, max_action=60, dataset="ntu60")


def _discover_ntu120(raw: Path, missing: set[str]) -> Discovery:
    return discover_ntu(raw, missing, max_setup=32, max_action=120, dataset="ntu120")


NTU60 = DatasetSpec(
    name="ntu60", layout="ntu25", protocols=("xsub", "xview"),
    missing_resource="ntu60_missing.txt", discover_fn=_discover_ntu60,
    splits_fn=ntu_splits(NTU60_XSUB_TRAIN, ("xsub", "xview")), prepare=prepare_ntu_task,
    splits_from_columns=True,
)
NTU120 = DatasetSpec(
    name="ntu120", layout="ntu25", protocols=("xsub", "xset"),
    missing_resource="ntu120_missing.txt", discover_fn=_discover_ntu120,
    splits_fn=ntu_splits(NTU120_XSUB_TRAIN, ("xsub", "xset")), prepare=prepare_ntu_task,
    splits_from_columns=True,
)
