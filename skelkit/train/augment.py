"""Skeleton augmentations as small registered classes (PYSKL style), outside the models.

Each maps one sample x (3, T, V, M) float32 and a ``numpy.random.Generator`` to a new array;
all randomness comes from that generator, so a seeded generator gives the same view. CMD's
augmentations draw in the reference's order and kind (one ``random()``/``uniform()``/``integers()``
call per draw of ``feeder/augmentations.py``), and their maths are functions of the draws
(``crop_resize``, ``shear``, ``corrupt_joints``), so a recorded draw sequence replays them.
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


def crop_length(num_frames: int, u: float, min_ratio: float = 0.1, max_ratio: float = 1.0,
                min_frames: int = 64) -> int:
    """CMD's crop length from the uniform draw u in [0, 1): ratio = u (max - min) + min, then
    L = min(max(floor(n ratio), min_frames), n) (``feeder/augmentations.py`` lines 51-73)."""
    ratio = u * (max_ratio - min_ratio) + min_ratio
    return int(min(max(int(np.floor(num_frames * ratio)), min_frames), num_frames))


def crop_resize(x: np.ndarray, start: int, length: int, window: int) -> np.ndarray:
    """Frames [start, start + length) resized linearly to ``window`` frames."""
    if start < 0 or length <= 0 or start + length > x.shape[1]:
        raise ValueError(f"crop [{start}, {start + length}) outside {x.shape[1]} frames")
    return resize_linear(x[:, start:start + length], window)


def cmd_eval_view(sequence: np.ndarray, num_frames: int, ratio: float = 0.95, window: int = 64,
                  max_frames: int = 300) -> np.ndarray:
    """CMD's downstream input (``feeder/feeder_downstream.py`` lines 70-98 with
    ``feeder/augmentations.py`` crop_subsequence lines 99-113): of the first
    n = min(num_frames, max_frames) frames, drop int((1 - ratio) n / 2) at each end (computed in
    double: 40 frames keep 38) and resize the rest to ``window`` frames; no length passes as is."""
    _check(sequence)
    n = min(int(num_frames), int(max_frames), sequence.shape[1])
    start = int((1.0 - ratio) * n / 2)
    return resize_linear(sequence[:, start:n - start], window)


class CMDEvalView:
    """``cmd_eval_view`` of a whole stored sequence, as a picklable one-argument view."""

    def __init__(self, ratio: float = 0.95, window: int = 64, max_frames: int = 300) -> None:
        self.ratio, self.window, self.max_frames = ratio, window, max_frames

    def __call__(self, sequence: np.ndarray) -> np.ndarray:
        return cmd_eval_view(sequence, sequence.shape[1], self.ratio, self.window, self.max_frames)


class TemporalCropResize:
    """CMD: crop a random window of ratio U[min_ratio, max_ratio] of the valid length (at least
    ``min_frames``, at most all frames) at a uniform start, then linearly resize to ``window``.
    ``max_frames`` > 0 first keeps only that many frames (CMD's data holds 300 per clip).

    Draws, in the reference's order: u = ``rng.random()``, start = ``rng.integers(0, n - L + 1)``."""

    def __init__(self, window: int = 64, min_ratio: float = 0.1, max_ratio: float = 1.0,
                 min_frames: int = 64, max_frames: int = 0) -> None:
        if window <= 0 or min_frames < 1 or not 0.0 < min_ratio <= max_ratio <= 1.0 or (
                max_frames < 0):
            raise ValueError(f"bad crop-resize settings: window={window}, "
                             f"ratio=[{min_ratio}, {max_ratio}], min_frames={min_frames}, "
                             f"max_frames={max_frames}")
        self.window, self.min_ratio, self.max_ratio = window, min_ratio, max_ratio
        self.min_frames, self.max_frames = min_frames, max_frames

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        n = min(x.shape[1], self.max_frames) if self.max_frames else x.shape[1]
        length = crop_length(n, float(rng.random()), self.min_ratio, self.max_ratio,
                             self.min_frames)
        start = int(rng.integers(0, n - length + 1))
        return crop_resize(x, start, length, self.window)


SHEAR_ORDERS = ("rows", "columns")


def shear_matrix(draws: Sequence[float], order: str = "rows") -> np.ndarray:
    """The shear matrix from six draws in draw order. ``rows`` (CMD's ``pose_augmentation``,
    ``feeder/augmentations.py`` lines 36-49): [[1, a, b], [c, 1, d], [e, f, 1]]; ``columns``
    (CrosSCLR/IKEM ``feeder/tools.py`` shear lines 6-17): [[1, a, d], [b, 1, e], [c, f, 1]]."""
    a, b, c, d, e, f = (float(v) for v in draws)
    if order == "rows":
        return np.array([[1.0, a, b], [c, 1.0, d], [e, f, 1.0]])
    if order == "columns":
        return np.array([[1.0, a, d], [b, 1.0, e], [c, f, 1.0]])
    raise ValueError(f"shear order must be one of {SHEAR_ORDERS}, got {order!r}")


def shear(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Every point becomes S (x, y, z): output channel i = sum_j S[i, j] x_j, in float64."""
    return np.einsum("ij,jtvm->itvm", np.asarray(matrix, np.float64), x).astype(np.float32)


def corrupt_joints(x: np.ndarray, joints: Sequence[int], matrix: np.ndarray | None) -> np.ndarray:
    """CMD's ``joint_courruption`` (``feeder/augmentations.py`` lines 7-32) with its draws given:
    the joints are zeroed (``matrix`` None) or become x^T C (output channel j = sum_i x_i C[i, j],
    i.e. C^T applied, unlike the shear), in float64, stored into the float32 clip."""
    out = x.astype(np.float32, copy=True)
    idx = np.asarray(joints, np.int64)
    if matrix is None:
        out[:, :, idx] = 0.0
    else:
        out[:, :, idx] = np.einsum("ij,itvm->jtvm", np.asarray(matrix, np.float64),
                                   x[:, :, idx])
    return out


class Shear:
    """x' = S x per point, S with unit diagonal and off-diagonal factors U[-amplitude, amplitude]
    (CMD: 1; CrosSCLR: beta 0.5). Draws: six ``rng.uniform``, placed by ``shear_matrix``'s
    ``order`` (the distribution is the same either way; the order matters to replay draws)."""

    def __init__(self, amplitude: float = 1.0, order: str = "rows") -> None:
        if amplitude < 0:
            raise ValueError(f"shear amplitude must be >= 0, got {amplitude}")
        if order not in SHEAR_ORDERS:
            raise ValueError(f"shear order must be one of {SHEAR_ORDERS}, got {order!r}")
        self.amplitude, self.order = amplitude, order

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        draws = [rng.uniform(-self.amplitude, self.amplitude) for _ in range(6)]
        return shear(x, shear_matrix(draws, self.order))


class JointCorruption:
    """CMD: pick ``num_joints`` distinct joints; with probability ``p_zero`` zero them, else mix
    their coordinates by one random 3x3 matrix C with entries U[-1, 1] (x' = C^T x, as ISC).

    Draws, in the reference's order: c = ``rng.random()``, the joints ``rng.choice``, then (mix
    branch, c >= p_zero) nine ``rng.uniform(-1, 1)`` filling C row by row."""

    def __init__(self, num_joints: int = 15, p_zero: float = 0.5) -> None:
        if num_joints < 0 or not 0.0 <= p_zero <= 1.0:
            raise ValueError(f"bad joint corruption: num_joints={num_joints}, p_zero={p_zero}")
        self.num_joints, self.p_zero = num_joints, p_zero

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        v = x.shape[2]
        if self.num_joints > v:
            raise ValueError(f"cannot corrupt {self.num_joints} of {v} joints")
        zero = rng.random() < self.p_zero
        joints = rng.choice(v, self.num_joints, replace=False)
        matrix = None if zero else np.array(
            [rng.uniform(-1.0, 1.0) for _ in range(9)], np.float64).reshape(3, 3)
        return corrupt_joints(x, joints, matrix)


class ShearOrCorrupt:
    """CMD: shear with probability ``p``, otherwise joint corruption. Draw s = ``rng.random()``:
    corruption when s < 1 - p (the reference: s < 0.5 corrupts, ``feeder_pretraining_intra.py``
    lines 63-124), then that augmentation's own draws."""

    def __init__(self, p: float = 0.5, amplitude: float = 1.0, num_joints: int = 15,
                 p_zero: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = p
        self.shear = Shear(amplitude)
        self.corrupt = JointCorruption(num_joints, p_zero)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.corrupt(x, rng) if rng.random() < 1.0 - self.p else self.shear(x, rng)


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
