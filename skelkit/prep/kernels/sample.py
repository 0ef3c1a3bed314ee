"""One call per sample for the build: selected bodies -> store-ordered arrays (docs/design.md §3-4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skelkit.prep.kernels.modalities import derive_modalities_stacked
from skelkit.prep.kernels.normalize import cmd_normalize, ikem_fixed
from skelkit.store.layout import Layout
from skelkit.store.schema import FIXED_FRAMES, MODALITIES


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


def prepare_bodies(bodies: np.ndarray, layout: Layout, frames: int = FIXED_FRAMES,
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
    count = _count_bodies(bodies) if num_bodies is None else num_bodies
    return stored_sample(cmd_normalize(bodies, layout), ikem_fixed(bodies, layout, frames), gamma,
                         layout, count)


def stored_sample(normalised: np.ndarray, fixed_joints: np.ndarray, gamma: float,
                  layout: Layout, num_bodies: int) -> PreparedSample:
    """Normalised joints (M, T, V, 3) and fixed-length joints (M, F, V, 3) -> store order, with
    the six modalities derived from the fixed joints."""
    stacked = derive_modalities_stacked(fixed_joints, gamma, layout)  # (6, M, F, V, 3)
    store_order = np.ascontiguousarray(stacked.transpose(0, 4, 2, 3, 1))  # (6, 3, F, V, M)
    return PreparedSample(
        raw=np.ascontiguousarray(normalised.transpose(1, 3, 2, 0)),
        fixed={name: store_order[k] for k, name in enumerate(MODALITIES)},
        num_frames=int(normalised.shape[1]),
        num_bodies=int(num_bodies),
        gamma=float(gamma),
    )


def sample_problem(sample: PreparedSample) -> tuple[str, str] | None:
    """(kind, reason) when a prepared sample cannot go into the store, else None."""
    if sample.num_frames <= 0 or sample.raw.shape[0] == 0:
        return "zero_frames", "zero frames"
    if sample.num_bodies == 0:
        return "no_bodies", "no body in any frame"
    if not np.isfinite(sample.raw).all():
        return "non_finite", "non-finite value (NaN or inf) in the joints"
    for name, arr in sample.fixed.items():
        if not np.isfinite(arr).all():
            return "non_finite", f"non-finite value (NaN or inf) in modality {name}"
    return None
