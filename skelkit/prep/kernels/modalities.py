"""IKEM's six modalities from fixed-length joints, as one numba loop (docs/design.md §3.5, IKEM §2.2).

Bones, hinges and the torso normal come from the Layout. Maths runs in float64 and is stored
as float32. ``skelkit/train`` holds the torch twin; a test keeps the two equal.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from skelkit.store.layout import Layout
from skelkit.store.schema import MODALITIES

_EPS = 1e-12  # the project's unit-vector guard: x / max(|x|, 1e-12)


@numba.njit(cache=True, inline="always")
def _norm3(x: float, y: float, z: float) -> float:
    return math.sqrt(x * x + y * y + z * z)


@numba.njit(cache=True, nogil=True)
def _modalities_kernel(j: np.ndarray, gamma: float, parents: np.ndarray, partners: np.ndarray,
                       torso: np.ndarray) -> np.ndarray:
    """j (M, F, V, 3) float32 -> (6, M, F, V, 3) float32 in MODALITIES order."""
    bodies, frames, joints = j.shape[0], j.shape[1], j.shape[2]
    out = np.zeros((6, bodies, frames, joints, 3), dtype=np.float32)
    bone = np.empty((frames, joints, 3))
    axis = np.empty((frames, joints, 3))
    theta = np.empty((frames, joints))
    motion = np.zeros((frames, joints, 3))
    for m in range(bodies):
        for t in range(frames):
            for v in range(joints):
                for c in range(3):
                    out[0, m, t, v, c] = j[m, t, v, c]
                    bone[t, v, c] = np.float64(j[m, t, v, c]) - np.float64(j[m, t, parents[v], c])
            if torso[0] >= 0:
                # The self-loop bone is replaced by the unit torso normal (golden README).
                a, b, c0 = torso[1], torso[2], torso[3]
                p0 = bone[t, a, 0] - bone[t, c0, 0]
                p1 = bone[t, a, 1] - bone[t, c0, 1]
                p2 = bone[t, a, 2] - bone[t, c0, 2]
                q0 = bone[t, b, 0] - bone[t, c0, 0]
                q1 = bone[t, b, 1] - bone[t, c0, 1]
                q2 = bone[t, b, 2] - bone[t, c0, 2]
                n0 = p1 * q2 - p2 * q1
                n1 = p2 * q0 - p0 * q2
                n2 = p0 * q1 - p1 * q0
                size = max(_norm3(n0, n1, n2), _EPS)
                bone[t, torso[0], 0] = n0 / size
                bone[t, torso[0], 1] = n1 / size
                bone[t, torso[0], 2] = n2 / size
            for v in range(joints):
                w = partners[v]
                bx, by, bz = bone[t, v, 0], bone[t, v, 1], bone[t, v, 2]
                cx, cy, cz = bone[t, w, 0], bone[t, w, 1], bone[t, w, 2]
                # IKEM Eq. 4: unit rotation axis of the hinge (v, w).
                rx = by * cz - bz * cy
                ry = bz * cx - bx * cz
                rz = bx * cy - by * cx
                size = max(_norm3(rx, ry, rz), _EPS)
                axis[t, v, 0] = rx / size
                axis[t, v, 1] = ry / size
                axis[t, v, 2] = rz / size
                # IKEM Eq. 5 as atan2(|u x u'|, u . u') of the unit bones: stable near 0 and pi.
                lb = max(_norm3(bx, by, bz), _EPS)
                lc = max(_norm3(cx, cy, cz), _EPS)
                theta[t, v] = math.atan2(
                    _norm3(rx, ry, rz) / (lb * lc), (bx * cx + by * cy + bz * cz) / (lb * lc)
                )
                for c in range(3):
                    out[2, m, t, v, c] = bone[t, v, c]
                    out[4, m, t, v, c] = axis[t, v, c]
        for t in range(frames - 1):
            for v in range(joints):
                # IKEM Eq. 6: w_t = r_t (theta_{t+1} - theta_t) / gamma.
                rate = (theta[t + 1, v] - theta[t, v]) / gamma
                for c in range(3):
                    # IKEM §3: m_t = (x_{t+1} - x_t) / gamma.
                    motion[t, v, c] = (np.float64(j[m, t + 1, v, c]) - np.float64(j[m, t, v, c])
                                       ) / gamma
                    out[1, m, t, v, c] = motion[t, v, c]
                    out[5, m, t, v, c] = axis[t, v, c] * rate
        for v in range(joints):
            for c in range(3):
                motion[frames - 1, v, c] = 0.0
        for t in range(frames - 2):
            for v in range(joints):
                for c in range(3):
                    # IKEM Eq. 3: a_t = (m_{t+1} - m_t) / gamma; the last two frames stay zero.
                    out[3, m, t, v, c] = (motion[t + 1, v, c] - motion[t, v, c]) / gamma
    return out


def layout_arrays(layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parents, hinge partners and (joint, a, b, c) of the torso normal (-1s when none)."""
    parents = np.asarray(layout.parents, dtype=np.int64)
    partners = np.asarray([w for _, w in layout.hinges], dtype=np.int64)
    tn = layout.torso_normal
    torso = np.asarray([tn.joint, tn.a, tn.b, tn.c] if tn else [-1, -1, -1, -1], dtype=np.int64)
    return parents, partners, torso


def derive_modalities_stacked(j: np.ndarray, gamma: float, layout: Layout) -> np.ndarray:
    """(M, F, V, 3) joints -> (6, M, F, V, 3) float32 in MODALITIES order."""
    if j.ndim != 4 or j.shape[-1] != 3 or j.shape[2] != layout.num_joints:
        raise ValueError(f"expected (M, F, {layout.num_joints}, 3) joints, got {tuple(j.shape)}")
    if not gamma > 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    parents, partners, torso = layout_arrays(layout)
    return _modalities_kernel(np.ascontiguousarray(j, dtype=np.float32), float(gamma),
                              parents, partners, torso)


def derive_modalities(j: np.ndarray, gamma: float, layout: Layout) -> dict[str, np.ndarray]:
    """The six modalities of fixed-length joints ``j`` (M, F, V, 3), each (M, F, V, 3) float32.

    ``gamma`` = T_orig / F is IKEM's time scale; zero where a formula runs past the last frame.
    """
    stacked = derive_modalities_stacked(j, gamma, layout)
    return {name: stacked[k] for k, name in enumerate(MODALITIES)}
