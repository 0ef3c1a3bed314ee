"""NTU RGB+D ``.skeleton`` reader: one numba pass over the file's bytes (docs/design.md §2.1).

The text is never split into Python strings: ``_read_line`` tokenises one line of a uint8
array in place and ``_parse_number`` turns each token into a float64 with a hand-written
decimal parser. Bad input comes back from the kernel as a status code with a 1-based line
number and is raised in Python as :class:`RawFormatError` with a readable reason.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np

from skelkit.prep.errors import RawFormatError
from skelkit.store.layout import NTU25

# Kernel status codes; _REASONS turns them into messages.
OK = 0
EMPTY = 1
NOT_A_NUMBER = 2
NAN = 3
INF = 4
NOT_A_COUNT = 5
ZERO_FRAMES = 6
TRUNCATED = 7
WRONG_JOINTS = 8
WRONG_FIELDS = 9
TRAILING = 10
BLANK_LINE = 11

BODY_FIELDS = 10  # bodyID clippedEdges handLeftConfidence ... trackingState
JOINT_FIELDS = 12  # x y z depthX depthY colorX colorY orientationW X Y Z trackingState

_SPACE, _TAB, _CR, _LF = 32, 9, 13, 10
_POW10 = np.array([10.0**k for k in range(23)])  # exact in float64 up to 1e22


@numba.njit(cache=True, inline="always")
def _is_delim(c: int) -> bool:
    return c == _SPACE or c == _TAB or c == _CR or c == _LF


@numba.njit(cache=True)
def _token_end(buf: np.ndarray, pos: int) -> int:
    n = buf.shape[0]
    while pos < n and not _is_delim(buf[pos]):
        pos += 1
    return pos


@numba.njit(cache=True)
def _match_word(buf: np.ndarray, pos: int, word: np.ndarray) -> bool:
    """Case-insensitive match of ``word`` (lower-case bytes) at ``pos``, ending at a delimiter."""
    n = buf.shape[0]
    for k in range(word.shape[0]):
        if pos + k >= n or (buf[pos + k] | 32) != word[k]:
            return False
    end = pos + word.shape[0]
    return end >= n or _is_delim(buf[end])


_NAN_WORD = np.frombuffer(b"nan", dtype=np.uint8)
_INF_WORD = np.frombuffer(b"inf", dtype=np.uint8)
_INFINITY_WORD = np.frombuffer(b"infinity", dtype=np.uint8)


@numba.njit(cache=True)
def _parse_number(buf: np.ndarray, pos: int, need_value: bool) -> tuple[float, int, int]:
    """Parse the token at ``pos``: (value, position after it, status).

    With ``need_value`` False the token is only validated (grammar, NaN, overflow) and 0.0 is
    returned: a joint line carries nine fields nobody reads.

    Up to 19 significant digits are kept in an int64 mantissa; for the usual <= 15 digits and
    |exponent| <= 22 the result is the correctly rounded float64 (one exact multiply or divide),
    i.e. what Python's ``float()`` gives, which the reference scripts use.
    """
    n = buf.shape[0]
    start = pos
    negative = False
    if buf[pos] == 45:  # '-'
        negative = True
        pos += 1
    elif buf[pos] == 43:  # '+'
        pos += 1
    mantissa = 0
    digits = 0
    exp10 = 0
    seen_digit = False
    while pos < n and 48 <= buf[pos] <= 57:
        seen_digit = True
        if digits < 19:
            mantissa = mantissa * 10 + (buf[pos] - 48)
            if mantissa != 0:
                digits += 1
        else:
            exp10 += 1
        pos += 1
    if pos < n and buf[pos] == 46:  # '.'
        pos += 1
        while pos < n and 48 <= buf[pos] <= 57:
            seen_digit = True
            if digits < 19:
                mantissa = mantissa * 10 + (buf[pos] - 48)
                exp10 -= 1
                if mantissa != 0:
                    digits += 1
            pos += 1
    if not seen_digit:
        word_at = pos
        if _match_word(buf, word_at, _NAN_WORD):
            return np.nan, _token_end(buf, start), NAN
        if _match_word(buf, word_at, _INF_WORD) or _match_word(buf, word_at, _INFINITY_WORD):
            return np.inf, _token_end(buf, start), INF
        return 0.0, _token_end(buf, start), NOT_A_NUMBER
    if pos < n and (buf[pos] == 101 or buf[pos] == 69):  # 'e' 'E'
        pos += 1
        exp_negative = False
        if pos < n and (buf[pos] == 45 or buf[pos] == 43):
            exp_negative = buf[pos] == 45
            pos += 1
        if pos >= n or not 48 <= buf[pos] <= 57:
            return 0.0, _token_end(buf, start), NOT_A_NUMBER
        e = 0
        while pos < n and 48 <= buf[pos] <= 57:
            if e < 100000:
                e = e * 10 + (buf[pos] - 48)
            pos += 1
        exp10 += -e if exp_negative else e
    if pos < n and not _is_delim(buf[pos]):
        return 0.0, _token_end(buf, start), NOT_A_NUMBER
    if not need_value and (mantissa == 0 or digits + exp10 < 308):
        return 0.0, pos, OK  # |value| < 10 ** (digits + exp10): cannot overflow
    value = float(mantissa)
    if mantissa != 0 and exp10 != 0:
        if 0 < exp10 <= 22:
            value *= _POW10[exp10]
        elif -22 <= exp10 < 0:
            value /= _POW10[-exp10]
        else:
            value = value * 10.0**exp10
    if negative:
        value = -value
    if np.isinf(value):
        return value, pos, INF
    return value, pos, OK


@numba.njit(cache=True)
def _skip_plain_decimal(buf: np.ndarray, pos: int) -> int:
    """End of a token like ``-123.456`` (no exponent, under 300 integer digits), else -1.

    The fast path for fields that are validated but not kept; anything else goes through
    ``_parse_number``.
    """
    n = buf.shape[0]
    if buf[pos] == 45:  # '-'
        pos += 1
    start = pos
    while pos < n and 48 <= buf[pos] <= 57:
        pos += 1
    integer_digits = pos - start
    fraction_digits = 0
    if pos < n and buf[pos] == 46:  # '.'
        pos += 1
        fraction_start = pos
        while pos < n and 48 <= buf[pos] <= 57:
            pos += 1
        fraction_digits = pos - fraction_start
    if integer_digits + fraction_digits == 0 or integer_digits >= 300:
        return -1
    if pos < n and not _is_delim(buf[pos]):
        return -1
    return pos


@numba.njit(cache=True)
def _read_line(buf: np.ndarray, pos: int, vals: np.ndarray) -> tuple[int, int, int, int]:
    """Parse the numbers of the line starting at ``pos`` into ``vals`` (as many as fit).

    Returns (count of numbers, start of the next line, status, byte offset of a bad token or -1).
    """
    n = buf.shape[0]
    count = 0
    while True:
        while pos < n and (buf[pos] == _SPACE or buf[pos] == _TAB or buf[pos] == _CR):
            pos += 1
        if pos >= n:
            return count, pos, OK, -1
        if buf[pos] == _LF:
            return count, pos + 1, OK, -1
        token = pos
        if count >= vals.shape[0]:
            end = _skip_plain_decimal(buf, pos)
            if end >= 0:
                pos = end
                count += 1
                continue
        value, pos, status = _parse_number(buf, pos, count < vals.shape[0])
        if status != OK:
            return count, pos, status, token
        if count < vals.shape[0]:
            vals[count] = value
        count += 1


@numba.njit(cache=True)
def _only_space_left(buf: np.ndarray, pos: int) -> bool:
    for k in range(pos, buf.shape[0]):
        if not _is_delim(buf[k]):
            return False
    return True


@numba.njit(cache=True)
def _read_count(buf: np.ndarray, pos: int, vals: np.ndarray) -> tuple[int, int, int, int]:
    """A line holding one non-negative integer: (value, next pos, status, bad token offset)."""
    line_start = pos
    count, pos, status, bad = _read_line(buf, pos, vals)
    if status != OK:
        return -1, pos, status, bad
    if count == 0:
        if _only_space_left(buf, line_start):
            return -1, pos, TRUNCATED, -1
        return -1, pos, BLANK_LINE, -1
    v = vals[0]
    if count != 1 or v < 0 or v != np.floor(v) or v > 2.0**62:
        return -1, pos, NOT_A_COUNT, line_start
    return int(v), pos, OK, -1


@numba.njit(cache=True, nogil=True)
def _parse_ntu_kernel(buf: np.ndarray, num_joints: int, max_slots: int):
    """Returns (slots, frames, max_bodies, status, line, bad offset, found, expected, frame)."""
    n = buf.shape[0]
    vals = np.empty(1, dtype=np.float64)  # a count
    xyz = np.empty(3, dtype=np.float64)  # the only joint fields kept
    unread = np.empty(0, dtype=np.float64)  # body info: validated, not kept
    empty = np.zeros((max_slots, 0, num_joints, 3), dtype=np.float32)
    if _only_space_left(buf, 0):
        return empty, 0, 0, EMPTY, 1, -1, 0, 0, 0
    line = 1
    frames, pos, status, bad = _read_count(buf, 0, vals)
    if status != OK:
        return empty, 0, 0, status, line, bad, 0, 0, 0
    if frames == 0:
        return empty, 0, 0, ZERO_FRAMES, line, -1, 0, 0, 0
    # A frame takes at least two bytes ("0\n"): a larger count cannot be honoured by this file,
    # and must not make us allocate gigabytes.
    if frames > n // 2 + 1:
        return empty, 0, 0, TRUNCATED, line, -1, 0, frames, 0
    slots = np.zeros((max_slots, frames, num_joints, 3), dtype=np.float32)
    max_bodies = 0
    for t in range(frames):
        line += 1
        if pos >= n:
            return slots, frames, max_bodies, TRUNCATED, line, -1, t, frames, t
        bodies, pos, status, bad = _read_count(buf, pos, vals)
        if status != OK:
            return slots, frames, max_bodies, status, line, bad, t, frames, t
        max_bodies = max(max_bodies, bodies)
        for m in range(bodies):
            line += 1
            if pos >= n or _only_space_left(buf, pos):
                return slots, frames, max_bodies, TRUNCATED, line, -1, t, frames, t
            count, pos, status, bad = _read_line(buf, pos, unread)
            if status != OK:
                return slots, frames, max_bodies, status, line, bad, 0, 0, t
            if count != BODY_FIELDS:
                return slots, frames, max_bodies, WRONG_FIELDS, line, -1, count, BODY_FIELDS, t
            line += 1
            joints, pos, status, bad = _read_count(buf, pos, vals)
            if status != OK:
                return slots, frames, max_bodies, status, line, bad, t, frames, t
            if joints != num_joints:
                return slots, frames, max_bodies, WRONG_JOINTS, line, -1, joints, num_joints, t
            for v in range(num_joints):
                line += 1
                if pos >= n or _only_space_left(buf, pos):
                    return slots, frames, max_bodies, TRUNCATED, line, -1, t, frames, t
                count, pos, status, bad = _read_line(buf, pos, xyz)
                if status != OK:
                    return slots, frames, max_bodies, status, line, bad, 0, 0, t
                if count != JOINT_FIELDS:
                    return (slots, frames, max_bodies, WRONG_FIELDS, line, -1, count,
                            JOINT_FIELDS, t)
                if m < max_slots:
                    slots[m, t, v, 0] = xyz[0]
                    slots[m, t, v, 1] = xyz[1]
                    slots[m, t, v, 2] = xyz[2]
    if not _only_space_left(buf, pos):
        return slots, frames, max_bodies, TRAILING, line + 1, -1, 0, frames, frames
    return slots, frames, max_bodies, OK, 0, -1, 0, 0, frames


def _token_text(data: bytes, offset: int) -> str:
    end = offset
    while end < len(data) and data[end] not in b" \t\r\n" and end - offset < 40:
        end += 1
    return data[offset:end].decode("utf-8", errors="replace")


def describe_status(status: int, data: bytes, bad: int, found: int, expected: int,
                    frame: int) -> str:
    """A human reason for a kernel status (shared by the NTU and PKU readers)."""
    token = _token_text(data, bad) if bad >= 0 else ""
    if status == EMPTY:
        return "empty file"
    if status == NOT_A_NUMBER:
        return f"non-numeric token {token!r}"
    if status == NAN:
        return f"NaN value {token!r}"
    if status == INF:
        return f"infinite value {token!r}"
    if status == NOT_A_COUNT:
        return f"expected one non-negative integer count, found {token!r}"
    if status == ZERO_FRAMES:
        return "zero frames (frame count is 0)"
    if status == TRUNCATED:
        return f"truncated file: it ends after {found} of the {expected} frames its header promises"
    if status == WRONG_JOINTS:
        return f"wrong joint count: a body has {found} joints, expected {expected}"
    if status == WRONG_FIELDS:
        what = {JOINT_FIELDS: "a joint line", BODY_FIELDS: "a body info line"}.get(expected,
                                                                               "the line")
        return f"{what} has {found} values, expected {expected}"
    if status == TRAILING:
        return f"unexpected content after the last of the {expected} frames"
    if status == BLANK_LINE:
        return "unexpected empty line"
    return f"unknown parse status {status}"


@dataclass
class NtuRaw:
    slots: np.ndarray
    """(max_slots, T, V, 3) float32; bodies placed by their position in each frame's list."""
    num_frames: int
    max_bodies_seen: int


PARSE_MEMORY_FLOOR = 64_000_000
PARSE_MEMORY_PER_FILE_BYTE = 64
"""A parse may hold max(64 MB, 64 x the file's size) of frames. A frame with one body takes
over 600 bytes of text and 1,200 bytes in memory (4 slots x 25 joints x 3 floats), so genuine
files stay far below; only frames without bodies ("0" lines, 2-3 bytes) cost more, and the
floor covers the few hundred of a genuine empty recording."""


def header_beyond_file(data: bytes, num_joints: int, max_slots: int) -> str | None:
    """Why the frame count on the first line cannot be honoured by a file of this size, or None.

    The parser allocates (max_slots, frames, V, 3) floats for the header's count: more than
    PARSE_MEMORY_* allow is refused here, before it allocates. Every frame takes at least one
    line (its body count), so such a header that promises more frames than the file has lines
    lies (or the file is cut short); one that does not is a file of frames without bodies. A
    smaller count is left to the parser, which names the exact line where a short file ends."""
    end = data.find(b"\n")
    if end < 0:
        return None  # a one-line file: the parser reports what is wrong with it
    first = data[:end].split()
    if len(first) != 1 or not first[0].isdigit():
        return None  # not a count: the parser names the token
    frames = int(first[0])
    need = frames * max_slots * num_joints * 3 * 4
    allowed = max(PARSE_MEMORY_FLOOR, PARSE_MEMORY_PER_FILE_BYTE * len(data))
    if need <= allowed:
        return None
    lines_after = data.count(b"\n", end + 1) + (0 if data.endswith(b"\n") else 1)
    if frames > lines_after:
        return (f"the header promises {frames} frames but the file ({len(data)} bytes) has only "
                f"{lines_after} lines after it, and every frame takes at least one: a wrong "
                f"header or a truncated file")
    return (f"the header's {frames} frames would take {need / 1e6:.0f} MB in memory, more "
            f"than a {len(data) / 1e6:.1f} MB file may ({allowed / 1e6:.0f} MB): frames "
            f"without bodies, not a recording")


def parse_ntu_bytes(data: bytes, num_joints: int, max_slots: int = 4) -> NtuRaw:
    """Parse the bytes of a ``.skeleton`` file; raises RawFormatError(line=...) on bad input.

    Memory is bounded by the file's size, never by its header (:func:`header_beyond_file`)."""
    lying = header_beyond_file(data, num_joints, max_slots)
    if lying is not None:
        raise RawFormatError(lying, line=1)
    buf = np.frombuffer(data, dtype=np.uint8)
    slots, frames, max_bodies, status, line, bad, found, expected, frame = _parse_ntu_kernel(
        buf, num_joints, max_slots
    )
    if status != OK:
        reason = describe_status(status, data, bad, found, expected, frame)
        raise RawFormatError(reason, line=line)
    return NtuRaw(slots=slots, num_frames=int(frames), max_bodies_seen=int(max_bodies))


def parse_ntu_file(path: str | os.PathLike[str], num_joints: int | None = None,
                   max_slots: int = 4) -> NtuRaw:
    """Parse one ``.skeleton`` file; errors carry the file path and the 1-based line.

    ``num_joints`` defaults to the NTU layout's joint count.
    """
    if num_joints is None:
        num_joints = NTU25.num_joints
    with open(path, "rb") as f:
        data = f.read()
    try:
        return parse_ntu_bytes(data, num_joints, max_slots)
    except RawFormatError as err:
        raise err.with_file(os.fspath(path)) from None
