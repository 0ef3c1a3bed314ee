"""PKU-MMD phase II readers: skeleton text (numba), label lines and split files (docs/design.md §2.2).

PKU clips do not go through body selection: CMD's ``pku_gendata`` keeps the two bodies in
file order, and the golden clips (second body always empty) agree with that.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np

from skelkit.prep.errors import RawFormatError
from skelkit.prep.kernels.parse_ntu import (
    EMPTY,
    OK,
    WRONG_FIELDS,
    _only_space_left,
    _read_line,
    describe_status,
)


@numba.njit(cache=True, nogil=True)
def _parse_pku_kernel(buf: np.ndarray, bodies: int, joints: int):
    """Returns (frames array (T, bodies, joints, 3), status, line, bad offset, found, expected)."""
    n = buf.shape[0]
    per_line = bodies * joints * 3
    # A valid line holds per_line numbers and per_line - 1 separators: this bounds the frame
    # count without a counting pass.
    capacity = n // (2 * per_line - 1) + 1
    out = np.zeros((capacity, bodies, joints, 3), dtype=np.float32)
    if _only_space_left(buf, 0):
        return out[:0], EMPTY, 1, -1, 0, 0
    vals = np.empty(per_line + 1, dtype=np.float64)
    pos = 0
    line = 0
    frames = 0
    while pos < n:
        if _only_space_left(buf, pos):
            break
        line += 1
        count, pos, status, bad = _read_line(buf, pos, vals)
        if status != OK:
            return out[:frames], status, line, bad, 0, 0
        if count != per_line:
            return out[:frames], WRONG_FIELDS, line, -1, count, per_line
        k = 0
        for m in range(bodies):
            for v in range(joints):
                for c in range(3):
                    out[frames, m, v, c] = vals[k]
                    k += 1
        frames += 1
    return out[:frames], OK, 0, -1, 0, 0


def parse_pku_skeleton(path: str | os.PathLike[str], num_joints: int,
                       bodies: int = 2) -> np.ndarray:
    """One PKU-MMD skeleton file -> (T, bodies, V, 3) float32, one frame per line."""
    with open(path, "rb") as f:
        data = f.read()
    frames, status, line, bad, found, expected = _parse_pku_kernel(
        np.frombuffer(data, dtype=np.uint8), int(bodies), int(num_joints)
    )
    if status != OK:
        reason = describe_status(status, data, bad, found, expected, 0)
        raise RawFormatError(reason, file=os.fspath(path), line=line)
    return frames.copy()  # drops the over-allocated tail of the kernel's buffer


@dataclass(frozen=True)
class PkuClip:
    label0: int
    """0-based action label (the file's labels are 1-based)."""
    start: int
    end: int
    """Frames start..end-1 form the clip."""
    confidence: int
    line: int
    """1-based line of the label file, for error reports."""


def parse_pku_labels(path: str | os.PathLike[str]) -> list[PkuClip]:
    """``label,start,end,confidence`` lines -> clips; blank lines are skipped."""
    file = os.fspath(path)
    clips: list[PkuClip] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, text in enumerate(f, start=1):
            text = text.strip()
            if not text:
                continue
            fields = [s.strip() for s in text.split(",")]
            if len(fields) != 4:
                raise RawFormatError(
                    f"expected 4 comma-separated fields (label,start,end,confidence), "
                    f"found {len(fields)}", file=file, line=number)
            try:
                label, start, end, confidence = (int(s) for s in fields)
            except ValueError:
                raise RawFormatError(f"non-integer field in {text!r}", file=file,
                                     line=number) from None
            if label < 1:
                raise RawFormatError(f"label {label} is not a 1-based class", file=file,
                                     line=number)
            if start < 0 or end <= start:
                raise RawFormatError(f"empty or negative frame range {start}..{end}",
                                     file=file, line=number)
            clips.append(PkuClip(label - 1, start, end, confidence, number))
    if not clips:
        raise RawFormatError("no label lines", file=file, line=0)
    return clips


def parse_pku_split(path: str | os.PathLike[str]) -> list[str]:
    """The training video names: the line after ``Training videos:``."""
    file = os.fspath(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for number, text in enumerate(lines, start=1):
        if text.strip().lower().startswith("training videos"):
            if number >= len(lines):
                raise RawFormatError("no line after 'Training videos:'", file=file,
                                     line=number)
            names = [s.strip() for s in lines[number].split(",") if s.strip()]
            if not names:
                raise RawFormatError("empty training video list", file=file, line=number + 1)
            return names
    raise RawFormatError("no 'Training videos:' line", file=file, line=0)


def cut_pku_clip(skeleton: np.ndarray, clip: PkuClip,
                 label_file: str | os.PathLike[str] = "") -> np.ndarray:
    """Frames start..end-1 of a (T, bodies, V, 3) skeleton as (bodies, end - start, V, 3).

    A clip that runs past the end of the skeleton file is bad input: RawFormatError naming
    the label file and its line.
    """
    frames = skeleton.shape[0]
    if clip.end > frames:
        raise RawFormatError(
            f"label range {clip.start}..{clip.end} runs past the end of its skeleton file "
            f"({frames} frames)", file=os.fspath(label_file), line=clip.line)
    return np.ascontiguousarray(skeleton[clip.start:clip.end].transpose(1, 0, 2, 3))
