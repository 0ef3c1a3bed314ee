"""One call per sample for the build: selected bodies -> store-ordered arrays (docs/design.md §3-4)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from skelkit.prep.bodies import select_bodies
from skelkit.prep.errors import RawFormatError
from skelkit.prep.modalities import MODALITY_NAMES, derive_modalities_stacked
from skelkit.prep.normalize import cmd_normalize, ikem_fixed
from skelkit.prep.parse_ntu import parse_ntu_file
from skelkit.store.layout import Layout

MAX_BODIES = 2  # the store keeps two bodies (docs/design.md §4.2)


@dataclass
class PreparedSample:
    raw: np.ndarray
    """(T, 3, V, M) float32, CMD-normalised, store order."""
    fixed: dict[str, np.ndarray]
    """modality -> (3, F, V, M) float32, store order."""
    num_frames: int
    num_bodies: int
    gamma: float


def _count_bodies(bodies: np.ndarray) -> int:
    return int(np.count_nonzero(np.any(bodies.reshape(bodies.shape[0], -1) != 0, axis=1)))


def prepare_bodies(bodies: np.ndarray, layout: Layout, frames: int = 50,
                   num_bodies: int | None = None) -> PreparedSample:
    """Prepare already selected bodies (M, T, V, 3) of one sample.

    gamma = T / frames with T = bodies.shape[1], the recording's (or PKU clip's) length.
    """
    if bodies.ndim != 4 or bodies.shape[-1] != 3:
        raise ValueError(f"bodies must be (M, T, V, 3), got {tuple(bodies.shape)}")
    num_frames = int(bodies.shape[1])
    if num_frames == 0:
        raise ValueError("a sample needs at least one frame")
    gamma = num_frames / frames
    normalised = cmd_normalize(bodies, layout)
    fixed_joints = ikem_fixed(bodies, layout, frames)
    stacked = derive_modalities_stacked(fixed_joints, gamma, layout)  # (6, M, F, V, 3)
    raw = np.ascontiguousarray(normalised.transpose(1, 3, 2, 0))
    store_order = np.ascontiguousarray(stacked.transpose(0, 4, 2, 3, 1))  # (6, 3, F, V, M)
    fixed = {name: store_order[k] for k, name in enumerate(MODALITY_NAMES)}
    return PreparedSample(
        raw=raw,
        fixed=fixed,
        num_frames=num_frames,
        num_bodies=_count_bodies(bodies) if num_bodies is None else int(num_bodies),
        gamma=float(gamma),
    )


def prepare_ntu_file(path: str | os.PathLike[str], layout: Layout,
                     frames: int = 50) -> PreparedSample:
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
