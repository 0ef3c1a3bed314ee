"""The two preparations of selected bodies (docs/design.md §3.3-3.4), as numba loops.

``cmd_normalize`` reproduces CMD's pre-normalisation (the 2s-AGCN ``pre_normalization``
routine) step by step, quirks included; ``ikem_fixed`` reproduces the CrosSCLR/IKEM feeder
that makes the 50-frame input. Joint indices come from the Layout, never from NTU tables.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from skelkit.store.layout import Layout
from skelkit.store.schema import FIXED_FRAMES


@numba.njit(cache=True, inline="always")
def _frame_empty(x: np.ndarray, m: int, t: int) -> bool:
    for v in range(x.shape[2]):
        if x[m, t, v, 0] != 0 or x[m, t, v, 1] != 0 or x[m, t, v, 2] != 0:
            return False
    return True


@numba.njit(cache=True)
def _body_empty(x: np.ndarray, m: int) -> bool:
    for t in range(x.shape[1]):
        if not _frame_empty(x, m, t):
            return False
    return True


@numba.njit(cache=True)
def _pad_null_frames(x: np.ndarray) -> None:
    """Fill each body's trailing empty frames by repeating the sequence from its start.

    Reference quirk kept: a body whose first frame is empty first has all its non-empty frames
    moved to the front (the gaps vanish), then gets padded.
    """
    bodies, frames = x.shape[0], x.shape[1]
    for m in range(bodies):
        if _body_empty(x, m):
            continue
        if _frame_empty(x, m, 0):
            kept = 0
            for t in range(frames):
                if not _frame_empty(x, m, t):
                    if kept != t:
                        x[m, kept] = x[m, t]
                    kept += 1
            for t in range(kept, frames):
                x[m, t] = 0.0
        # The first empty frame after which nothing follows starts the padding.
        last = frames - 1
        while last >= 0 and _frame_empty(x, m, last):
            last -= 1
        period = last + 1
        for t in range(period, frames):
            x[m, t] = x[m, t % period]


@numba.njit(cache=True)
def _rotation_to(v: np.ndarray, target: int) -> np.ndarray:
    """The reference's Rodrigues matrix turning ``v`` onto unit axis ``target`` (float64).

    Identity when the vector, the rotation axis or the angle is ~0, as in the reference.
    """
    e = np.zeros(3)
    e[target] = 1.0
    axis = np.empty(3)
    axis[0] = v[1] * e[2] - v[2] * e[1]
    axis[1] = v[2] * e[0] - v[0] * e[2]
    axis[2] = v[0] * e[1] - v[1] * e[0]
    if abs(v[0]) + abs(v[1]) + abs(v[2]) < 1e-6:
        theta = 0.0
    else:
        cosine = v[target] / math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
        theta = math.acos(min(1.0, max(-1.0, cosine)))
    if abs(axis[0]) + abs(axis[1]) + abs(axis[2]) < 1e-6 or abs(theta) < 1e-6:
        return np.eye(3)
    axis /= math.sqrt(axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2])
    a = math.cos(theta / 2.0)
    s = math.sin(theta / 2.0)
    b, c, d = -axis[0] * s, -axis[1] * s, -axis[2] * s
    r = np.empty((3, 3))
    r[0, 0] = a * a + b * b - c * c - d * d
    r[0, 1] = 2 * (b * c + a * d)
    r[0, 2] = 2 * (b * d - a * c)
    r[1, 0] = 2 * (b * c - a * d)
    r[1, 1] = a * a + c * c - b * b - d * d
    r[1, 2] = 2 * (c * d + a * b)
    r[2, 0] = 2 * (b * d + a * c)
    r[2, 1] = 2 * (c * d - a * b)
    r[2, 2] = a * a + d * d - b * b - c * c
    return r


@numba.njit(cache=True)
def _rotate_all(x: np.ndarray, r: np.ndarray) -> None:
    """Apply ``r`` in float64 to every joint, storing float32 like the reference."""
    bodies, frames, joints = x.shape[0], x.shape[1], x.shape[2]
    for m in range(bodies):
        for t in range(frames):
            for v in range(joints):
                p0 = np.float64(x[m, t, v, 0])
                p1 = np.float64(x[m, t, v, 1])
                p2 = np.float64(x[m, t, v, 2])
                x[m, t, v, 0] = r[0, 0] * p0 + r[0, 1] * p1 + r[0, 2] * p2
                x[m, t, v, 1] = r[1, 0] * p0 + r[1, 1] * p1 + r[1, 2] * p2
                x[m, t, v, 2] = r[2, 0] * p0 + r[2, 1] * p1 + r[2, 2] * p2


@numba.njit(cache=True)
def _first_frame_vector(x: np.ndarray, tail: int, head: int) -> np.ndarray:
    v = np.empty(3)
    for c in range(3):
        v[c] = np.float64(x[0, 0, head, c] - x[0, 0, tail, c])  # float32 difference, as stored
    return v


@numba.njit(cache=True, nogil=True)
def _cmd_kernel(x: np.ndarray, center: int, z_tail: int, z_head: int, x_tail: int,
                x_head: int) -> None:
    bodies, frames, joints = x.shape[0], x.shape[1], x.shape[2]
    all_empty = True
    for m in range(bodies):
        if not _body_empty(x, m):
            all_empty = False
    if all_empty:
        return
    _pad_null_frames(x)
    # Centre on body 0's centre joint per frame; joints absent in a body stay zero (the
    # reference's mask tests the float32 sum x + y + z of each joint).
    centre = np.empty((frames, 3), dtype=np.float32)
    for t in range(frames):
        for c in range(3):
            centre[t, c] = x[0, t, center, c]
    for m in range(bodies):
        if _body_empty(x, m):
            continue
        for t in range(frames):
            for v in range(joints):
                if x[m, t, v, 0] + x[m, t, v, 1] + x[m, t, v, 2] != 0:
                    for c in range(3):
                        x[m, t, v, c] = x[m, t, v, c] - centre[t, c]
                else:
                    for c in range(3):
                        x[m, t, v, c] = 0.0
    _rotate_all(x, _rotation_to(_first_frame_vector(x, z_tail, z_head), 2))
    _rotate_all(x, _rotation_to(_first_frame_vector(x, x_tail, x_head), 0))


def cmd_normalize(x: np.ndarray, layout: Layout) -> np.ndarray:
    """CMD pre-normalisation of selected bodies: (M, T, V, 3) -> (M, T, V, 3) float32.

    T stays the recording's length; the values equal the reference's first T frames of its
    300-frame output (the null-frame padding is periodic, so its length does not matter).
    """
    out = np.array(x, dtype=np.float32, copy=True, order="C")
    _check_bodies(out, layout)
    _cmd_kernel(out, layout.center_joint, layout.z_axis[0], layout.z_axis[1],
                layout.x_axis[0], layout.x_axis[1])
    return out


@numba.njit(cache=True)
def resize_linear(src: np.ndarray, length: int, frames: int) -> np.ndarray:
    """Resample the first ``length`` frames to ``frames`` like cv2.resize(INTER_LINEAR):
    half-pixel centres, source positions clamped to the ends, float32 weights."""
    bodies, joints = src.shape[0], src.shape[2]
    out = np.zeros((bodies, frames, joints, 3), dtype=np.float32)
    if length <= 0:
        return out
    scale = length / frames
    for t in range(frames):
        pos = np.float32((t + 0.5) * scale - 0.5)
        i0 = math.floor(pos)
        frac = np.float32(pos - i0)
        if i0 < 0:
            i0, frac = 0, np.float32(0.0)
        if i0 >= length - 1:
            i0, frac = length - 1, np.float32(0.0)
        i1 = min(i0 + 1, length - 1)
        w0 = np.float32(1.0) - frac
        for m in range(bodies):
            for v in range(joints):
                for c in range(3):
                    out[m, t, v, c] = src[m, i0, v, c] * w0 + src[m, i1, v, c] * frac
    return out


def resize_frames(x: np.ndarray, frames: int) -> np.ndarray:
    """(M, T, V, 3) -> (M, frames, V, 3): the whole sequence through :func:`resize_linear`."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    return resize_linear(src, src.shape[1], int(frames))


@numba.njit(cache=True)
def _face_shoulders_along_x(x: np.ndarray, left: int, right: int) -> None:
    """Per-frame rotation about y so the shoulder vector lies along x (CrosSCLR feeder).

    Reference quirks kept: the cosine is vx / (|v_xz| + 1e-4), and the rotation direction is
    chosen once per body from the sign of the sum of v_z over all frames.
    """
    bodies, frames, joints = x.shape[0], x.shape[1], x.shape[2]
    theta = np.empty(frames)
    for m in range(bodies):
        z_sum = 0.0
        for t in range(frames):
            vx = np.float64(x[m, t, right, 0] - x[m, t, left, 0])
            vz = np.float64(x[m, t, right, 2] - x[m, t, left, 2])
            z_sum += vz
            theta[t] = math.acos(vx / (math.sqrt(vx * vx + vz * vz) + 1e-4))
        sign = -1.0 if z_sum >= 0 else 1.0
        for t in range(frames):
            c = math.cos(sign * theta[t])
            s = math.sin(sign * theta[t])
            for v in range(joints):
                p0 = np.float64(x[m, t, v, 0])
                p2 = np.float64(x[m, t, v, 2])
                x[m, t, v, 0] = c * p0 - s * p2
                x[m, t, v, 2] = s * p0 + c * p2


@numba.njit(cache=True, nogil=True)
def _ikem_kernel(x: np.ndarray, origin: int, presence: int, left: int, right: int,
                 frames: int) -> np.ndarray:
    bodies, total, joints = x.shape[0], x.shape[1], x.shape[2]
    rel = np.empty_like(x)
    for m in range(bodies):
        for t in range(total):
            for v in range(joints):
                for c in range(3):
                    rel[m, t, v, c] = x[m, t, v, c] - x[m, t, origin, c]
    # The reference's `length`: frames in which body 0's presence joint is non-zero, counted
    # anywhere in the sequence, while the resize then takes the first `length` frames.
    length = 0
    for t in range(total):
        if x[0, t, presence, 0] != 0 or x[0, t, presence, 1] != 0 or x[0, t, presence, 2] != 0:
            length += 1
    out = resize_linear(rel, length, frames)
    _face_shoulders_along_x(out, left, right)
    return out


def ikem_fixed(x: np.ndarray, layout: Layout, frames: int = FIXED_FRAMES) -> np.ndarray:
    """IKEM/CrosSCLR fixed-length input from raw selected bodies: (M,T,V,3) -> (M,frames,V,3).

    A recording whose body 0 never shows the presence joint gives zeros (the reference fails).
    """
    src = np.ascontiguousarray(x, dtype=np.float32)
    _check_bodies(src, layout)
    return _ikem_kernel(src, layout.fixed_origin_joint, layout.presence_joint,
                        layout.x_axis[0], layout.x_axis[1], int(frames))


def _check_bodies(x: np.ndarray, layout: Layout) -> None:
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[2] != layout.num_joints:
        raise ValueError(
            f"expected bodies shaped (M, T, {layout.num_joints}, 3), got {tuple(x.shape)}"
        )
