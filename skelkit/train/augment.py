"""Skeleton augmentations as small registered classes (PYSKL style), outside the models.

Each maps one sample x (3, T, V, M) float32 and a ``numpy.random.Generator`` to a new array;
all randomness comes from that generator, so a seeded generator gives the same view.
CMD (ISC's augmentations): temporal crop-resize, then shear with p 0.5 else joint corruption.
CrosSCLR: shear with amplitude beta 0.5 and temporal crop with padding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Augmentation = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _check(x: np.ndarray) -> None:
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected one sample (3, T, V, M), got shape {x.shape}")
    if x.shape[1] == 0:
        raise ValueError("cannot augment a sample with zero frames")


def resize_linear(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resize along time with half-pixel centres and clamped edges (torch's
    ``interpolate(mode="linear", align_corners=False)``, as ISC's crop-resize uses)."""
    t = x.shape[1]
    if t == length:
        return x.astype(np.float32, copy=True)
    src = (np.arange(length) + 0.5) * (t / length) - 0.5
    src = np.clip(src, 0.0, t - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, t - 1)
    w = (src - lo).astype(np.float32)[None, :, None, None]
    return ((1.0 - w) * x[:, lo] + w * x[:, hi]).astype(np.float32)


class TemporalCropResize:
    """CMD: crop a random window of ratio U[min_ratio, max_ratio] of the valid length (at least
    ``min_frames``, at most all frames) at a uniform start, then linearly resize to ``window``."""

    def __init__(self, window: int = 64, min_ratio: float = 0.1, max_ratio: float = 1.0,
                 min_frames: int = 64) -> None:
        if window <= 0 or min_frames < 1 or not 0.0 < min_ratio <= max_ratio <= 1.0:
            raise ValueError(f"bad crop-resize settings: window={window}, "
                             f"ratio=[{min_ratio}, {max_ratio}], min_frames={min_frames}")
        self.window, self.min_ratio, self.max_ratio = window, min_ratio, max_ratio
        self.min_frames = min_frames

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        t = x.shape[1]
        ratio = rng.uniform(self.min_ratio, self.max_ratio)
        length = int(min(max(int(np.floor(t * ratio)), self.min_frames), t))
        start = int(rng.integers(0, t - length + 1))
        return resize_linear(x[:, start:start + length], self.window)


def _shear_matrix(amplitude: float, rng: np.random.Generator) -> np.ndarray:
    s = rng.uniform(-amplitude, amplitude, size=(3, 3))
    np.fill_diagonal(s, 1.0)
    return s


class Shear:
    """x' = S x per point, S with unit diagonal and off-diagonal factors U[-amplitude, amplitude]
    (CMD: 1; CrosSCLR: beta 0.5)."""

    def __init__(self, amplitude: float = 1.0) -> None:
        if amplitude < 0:
            raise ValueError(f"shear amplitude must be >= 0, got {amplitude}")
        self.amplitude = amplitude

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        s = _shear_matrix(self.amplitude, rng)
        return np.einsum("ij,jtvm->itvm", s, x).astype(np.float32)


class JointCorruption:
    """CMD: pick ``num_joints`` distinct joints; with probability ``p_zero`` zero them, else mix
    their coordinates by one random 3x3 matrix C with entries U[-1, 1] (x' = C^T x, as ISC)."""

    def __init__(self, num_joints: int = 15, p_zero: float = 0.5) -> None:
        if num_joints < 0 or not 0.0 <= p_zero <= 1.0:
            raise ValueError(f"bad joint corruption: num_joints={num_joints}, p_zero={p_zero}")
        self.num_joints, self.p_zero = num_joints, p_zero

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        v = x.shape[2]
        if self.num_joints > v:
            raise ValueError(f"cannot corrupt {self.num_joints} of {v} joints")
        out = x.astype(np.float32, copy=True)
        joints = rng.choice(v, size=self.num_joints, replace=False)
        if rng.random() < self.p_zero:
            out[:, :, joints] = 0.0
        else:
            c = rng.uniform(-1.0, 1.0, size=(3, 3))
            out[:, :, joints] = np.einsum("ji,jtvm->itvm", c, x[:, :, joints])
        return out


class ShearOrCorrupt:
    """CMD: shear with probability ``p``, otherwise joint corruption."""

    def __init__(self, p: float = 0.5, amplitude: float = 1.0, num_joints: int = 15,
                 p_zero: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = p
        self.shear = Shear(amplitude)
        self.corrupt = JointCorruption(num_joints, p_zero)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.shear(x, rng) if rng.random() < self.p else self.corrupt(x, rng)


class TemporalPadCrop:
    """CrosSCLR/SkeletonCLR: mirror-pad T // padding_ratio frames at each end, then take
    ``window`` consecutive frames at a uniform offset in [0, 2 * pad]."""

    def __init__(self, padding_ratio: int = 6, window: int = 50) -> None:
        if padding_ratio <= 0 or window <= 0:
            raise ValueError(f"bad pad-crop: padding_ratio={padding_ratio}, window={window}")
        self.padding_ratio, self.window = padding_ratio, window

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        t = x.shape[1]
        pad = t // self.padding_ratio
        padded = np.concatenate([x[:, :pad][:, ::-1], x, x[:, t - pad:][:, ::-1]], axis=1)
        if self.window > padded.shape[1]:
            raise ValueError(f"window {self.window} longer than the padded sequence "
                             f"({padded.shape[1]} frames)")
        start = int(rng.integers(0, padded.shape[1] - self.window + 1))
        return np.ascontiguousarray(padded[:, start:start + self.window], dtype=np.float32)


class Compose:
    """Apply augmentations in order, sharing one generator."""

    def __init__(self, transforms: Sequence[Augmentation]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for transform in self.transforms:
            x = transform(x, rng)
        return x


AUGMENTATIONS: dict[str, type] = {
    "temporal_crop_resize": TemporalCropResize,
    "shear": Shear,
    "joint_corruption": JointCorruption,
    "shear_or_corrupt": ShearOrCorrupt,
    "temporal_pad_crop": TemporalPadCrop,
}


def build_augmentations(steps: Sequence[dict[str, Any]]) -> Compose:
    """A pipeline from config dicts ``[{name: <AUGMENTATIONS key>, **kwargs}, ...]``."""
    transforms = []
    for i, step in enumerate(steps):
        params = dict(step)
        name = params.pop("name", None)
        if name not in AUGMENTATIONS:
            known = ", ".join(sorted(AUGMENTATIONS))
            raise ValueError(f"augmentation {i}: unknown name {name!r}; known: {known}")
        try:
            transforms.append(AUGMENTATIONS[name](**params))
        except TypeError as exc:
            raise ValueError(f"augmentation {i} ({name}): {exc}") from None
    return Compose(transforms)
