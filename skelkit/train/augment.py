"""Skeleton augmentations as small registered classes (PYSKL style), outside the models.

Each maps one sample x (3, T, V, M) float32 and a ``numpy.random.Generator`` to a new array;
all randomness comes from that generator, so a seeded generator gives the same view. CMD's
augmentations draw in the reference's order and kind (one ``random()``/``uniform()``/``integers()``
call per draw of ``feeder/augmentations.py``), and their maths are functions of the draws
(``crop_resize``, ``shear``, ``corrupt_joints``), so a recorded draw sequence replays them.
CMD (ISC's augmentations): temporal crop-resize, then shear with p 0.5 else joint corruption.
CrosSCLR: shear with amplitude beta 0.5 and temporal crop with padding.

Each augmentation is split into ``draw`` (the per-sample random draws, from the sample's own
generator, in the reference's order) and the arithmetic on given draws: ``apply`` for one sample,
``apply_batch`` for a whole batch of :class:`Clips` at once (vectorised numpy: the data loader's
path). Calling an augmentation is ``apply(x, draw(x.shape, rng))``; ``apply_batch`` computes the
same numbers with the same operations in the same precision, element by element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skelkit.train.draws import UniformStream, integers_below, subsets, uniform_between

Augmentation = Callable[[np.ndarray, np.random.Generator], np.ndarray]
Shape = tuple[int, ...]


def _check(x: np.ndarray) -> None:
    _check_shape(x.shape)


def _check_shape(shape: Shape) -> None:
    if len(shape) != 4 or shape[0] != 3:
        raise ValueError(f"expected one sample (3, T, V, M), got shape {shape}")
    if shape[1] == 0:
        raise ValueError("cannot augment a sample with zero frames")


@dataclass
class Clips:
    """A batch of clips (3, T_i, V, M) of possibly different lengths, channel-major: ``data``
    (3, sum T_i, V, M) float32 holds clip i as ``data[:, starts[i]:starts[i] + lengths[i]]``.
    Channel-major so that the per-clip arithmetic runs over long contiguous rows."""

    data: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_list(cls, clips: Sequence[np.ndarray]) -> Clips:
        data = np.concatenate([np.asarray(c, np.float32) for c in clips], axis=1)
        return cls(data, np.array([c.shape[1] for c in clips], np.int64))

    @classmethod
    def from_frames(cls, frames: np.ndarray, lengths: np.ndarray) -> Clips:
        """Frames-major (sum T_i, 3, V, M), as the store's raw frames are read."""
        return cls(np.ascontiguousarray(frames.transpose(1, 0, 2, 3), dtype=np.float32),
                   np.asarray(lengths, np.int64))

    @classmethod
    def from_dense(cls, x: np.ndarray) -> Clips:
        """(N, 3, T, V, M) clips of one length."""
        n, c, t, v, m = x.shape
        data = np.ascontiguousarray(np.asarray(x, np.float32).transpose(1, 0, 2, 3, 4))
        return cls(data.reshape(c, n * t, v, m), np.full(n, t, np.int64))

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)

    @property
    def clip_of_frame(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.lengths)), self.lengths)

    @property
    def common_length(self) -> int | None:
        """The one length of every clip, None when they differ."""
        return int(self.lengths[0]) if len(set(self.lengths.tolist())) == 1 else None

    def shape(self, i: int) -> Shape:
        """Clip i's shape (3, T_i, V, M)."""
        return (self.data.shape[0], int(self.lengths[i]), *self.data.shape[2:])

    def clip(self, i: int) -> np.ndarray:
        """Clip i as (3, T_i, V, M) (a view)."""
        start = int(self.starts[i])
        return self.data[:, start:start + int(self.lengths[i])]

    def dense(self) -> np.ndarray:
        """(N, 3, T, V, M) contiguous float32; every clip must have the same length."""
        t = self.common_length
        if t is None:
            raise ValueError(f"clips of different lengths {sorted(set(self.lengths.tolist()))} "
                             "do not stack")
        c, _, v, m = self.data.shape
        out = self.data.reshape(c, len(self), t, v, m).transpose(1, 0, 2, 3, 4)
        return np.ascontiguousarray(out, dtype=np.float32)

    def rows(self, which: np.ndarray, per_clip: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
        """The clips ``which`` as rows of a (3, R, T', V, M) view of ``data`` (a row is a clip,
        T' = T, when all clips share one length; a frame, T' = 1, otherwise): the view, the
        selected rows, and ``per_clip`` (aligned with ``which``) repeated for each row."""
        c, f, v, m = self.data.shape
        t = self.common_length
        if t is not None:
            return self.data.reshape(c, len(self), t, v, m), np.asarray(which), per_clip
        position = np.full(len(self), -1, np.int64)
        position[which] = np.arange(len(which))
        of_frame = position[self.clip_of_frame]
        frames = np.flatnonzero(of_frame >= 0)
        return self.data.reshape(c, f, 1, v, m), frames, per_clip[of_frame[frames]]


class BatchAugmentation:
    """An augmentation as draws + arithmetic (see the module docstring)."""

    def draw(self, shape: Shape, rng: np.random.Generator) -> Any:
        """The random parameters of one sample of ``shape`` (3, T, V, M), drawn from ``rng``."""
        raise NotImplementedError

    def width(self, shape: Shape) -> int:
        """The most uniforms one ``draw`` takes from a :class:`UniformStream` (its block)."""
        raise NotImplementedError

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray) -> Any:
        """Every sample's ``draw`` from its stream's block at once: row i of ``u`` (N, width)
        is clip i's block (clip i has lengths[i] frames and ``joints`` joints); the result is
        the same parameters as ``draw(shape_i, UniformStream(u[i]))``, as arrays."""
        raise NotImplementedError

    def stack(self, params: Sequence[Any]) -> Any:
        """Per-sample ``draw`` results in ``draw_many``'s form (to render given draws)."""
        raise NotImplementedError

    def out_shape(self, shape: Shape) -> Shape:
        """The shape of the output for an input of ``shape`` (temporal ones change T)."""
        return shape

    def apply(self, x: np.ndarray, params: Any) -> np.ndarray:
        """One sample with its drawn parameters."""
        raise NotImplementedError

    def apply_batch(self, clips: Clips, params: Sequence[Any]) -> Clips:
        """Every clip with its own drawn parameters, vectorised over the batch."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check(x)
        return self.apply(x, self.draw(x.shape, rng))


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


def resize_positions(lengths: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """``resize_linear``'s source frames and weights per clip: (lo, hi, w), each (N, window)."""
    src = (np.arange(window) + 0.5)[None, :] * (lengths[:, None] / window) - 0.5
    src = np.clip(src, 0.0, (lengths - 1)[:, None])
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, (lengths - 1)[:, None])
    return lo, hi, (src - lo).astype(np.float32)


def crop_resize_batch(clips: Clips, starts: np.ndarray, lengths: np.ndarray,
                      window: int) -> Clips:
    """``crop_resize`` of every clip (frames [starts[i], starts[i] + lengths[i]) of clip i), in
    one gather: the same float32 blend (1 - w) x_lo + w x_hi per output frame."""
    if np.any(starts < 0) or np.any(lengths <= 0) or np.any(starts + lengths > clips.lengths):
        raise ValueError("a crop lies outside its clip")
    lo, hi, w = resize_positions(lengths, window)
    base = (clips.starts + starts)[:, None]
    w = w.reshape(1, -1, 1, 1)
    # (1 - w) x_lo + w x_hi in float32, in place (the same roundings, fewer temporaries).
    data = clips.data[:, (base + lo).ravel()]
    data *= 1.0 - w
    upper = clips.data[:, (base + hi).ravel()]
    upper *= w
    data += upper
    return Clips(data, np.full(len(clips), window, np.int64))


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


class TemporalCropResize(BatchAugmentation):
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

    def draw(self, shape: Shape, rng: np.random.Generator) -> tuple[int, int]:
        """(start, length) of the crop."""
        n = min(shape[1], self.max_frames) if self.max_frames else shape[1]
        length = crop_length(n, float(rng.random()), self.min_ratio, self.max_ratio,
                             self.min_frames)
        start = int(rng.integers(0, n - length + 1))
        return start, length

    def width(self, shape: Shape) -> int:
        return 2

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(starts, lengths) of the crops, (N,) int64 each."""
        n = np.asarray(lengths, np.int64)
        if self.max_frames:
            n = np.minimum(n, self.max_frames)
        # crop_length, element-wise: the same float64 operations.
        ratio = u[:, 0] * (self.max_ratio - self.min_ratio) + self.min_ratio
        crop = np.minimum(np.maximum(np.floor(n * ratio).astype(np.int64), self.min_frames), n)
        return integers_below(np.zeros_like(n), n - crop + 1, u[:, 1]), crop

    def stack(self, params: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
        starts, lengths = np.array(params, np.int64).reshape(-1, 2).T
        return starts, lengths

    def out_shape(self, shape: Shape) -> Shape:
        return (shape[0], self.window, *shape[2:])

    def apply(self, x: np.ndarray, params: tuple[int, int]) -> np.ndarray:
        return crop_resize(x, params[0], params[1], self.window)

    def apply_batch(self, clips: Clips, params: Sequence[tuple[int, int]]) -> Clips:
        starts, lengths = self.stack(params)
        return crop_resize_batch(clips, starts, lengths, self.window)


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


def _mix(channels: Sequence[np.ndarray], coefficients: np.ndarray) -> list[np.ndarray]:
    """out_i = sum_j coefficients[r, i, j] x_j per row r (the leading axis of the three float32
    ``channels``), in float64 and summed j = 0, 1, 2 in order, as ``einsum`` sums (bit-equal)."""
    c = np.asarray(coefficients, np.float64)
    shape = (len(c),) + (1,) * (channels[0].ndim - 1)
    x = [np.asarray(ch, np.float64) for ch in channels]
    out = []
    for i in range(3):
        mixed = c[:, i, 0].reshape(shape) * x[0]
        term = np.empty_like(mixed)
        for j in (1, 2):
            np.multiply(c[:, i, j].reshape(shape), x[j], out=term)
            mixed += term
        out.append(mixed)
    return out


def shear_into(out: np.ndarray, clips: Clips, which: np.ndarray, matrices: np.ndarray) -> None:
    """``shear`` of the clips ``which`` by their ``matrices`` (aligned with ``which``), written
    into ``out`` (float32, the shape of ``clips.data``)."""
    if len(which) == 0:
        return
    view, rows, coefficients = clips.rows(which, np.asarray(matrices, np.float64))
    target = out.reshape(view.shape)
    for i, mixed in enumerate(_mix([view[j, rows] for j in range(3)], coefficients)):
        target[i, rows] = mixed


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


def corrupt_joints_batch(out: np.ndarray, clips: Clips, which: np.ndarray, joints: np.ndarray,
                         matrices: np.ndarray | None) -> None:
    """``corrupt_joints`` of the clips ``which`` (indices), written into ``out`` (float32, the
    shape of ``clips.data``): clip which[i] gets joints[i] zeroed (``matrices`` None) or mixed by
    matrices[i] (output channel j = sum_i x_i C[i, j], in float64)."""
    if len(which) == 0:
        return
    view, rows, per_row = clips.rows(which, np.arange(len(which)))
    target = out.reshape(view.shape)
    r, j = rows[:, None], np.asarray(joints, np.int64)[per_row]  # (R, 1), (R, k)
    if matrices is None:
        target[:, r, :, j] = 0.0
        return
    selected = view[:, r, :, j]  # (R, k, 3, T', M): the advanced axes come first
    # C^T mixes the channels: out_j = sum_i C[i, j] x_i.
    transposed = np.asarray(matrices, np.float64)[per_row].transpose(0, 2, 1)
    mixed = _mix([selected[:, :, i] for i in range(3)], transposed)
    target[:, r, :, j] = np.stack(mixed, axis=2)


class Shear(BatchAugmentation):
    """x' = S x per point, S with unit diagonal and off-diagonal factors U[-amplitude, amplitude]
    (CMD: 1; CrosSCLR: beta 0.5). Draws: six ``rng.uniform``, placed by ``shear_matrix``'s
    ``order`` (the distribution is the same either way; the order matters to replay draws)."""

    def __init__(self, amplitude: float = 1.0, order: str = "rows") -> None:
        if amplitude < 0:
            raise ValueError(f"shear amplitude must be >= 0, got {amplitude}")
        if order not in SHEAR_ORDERS:
            raise ValueError(f"shear order must be one of {SHEAR_ORDERS}, got {order!r}")
        self.amplitude, self.order = amplitude, order

    def draw(self, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """The shear matrix S."""
        draws = [rng.uniform(-self.amplitude, self.amplitude) for _ in range(6)]
        return shear_matrix(draws, self.order)

    def width(self, shape: Shape) -> int:
        return 6

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray) -> np.ndarray:
        """The shear matrices, (N, 3, 3) float64."""
        a, b, c, d, e, f = uniform_between(-self.amplitude, self.amplitude, u[:, :6]).T
        one = np.ones_like(a)
        rows = ([[one, a, b], [c, one, d], [e, f, one]] if self.order == "rows"
                else [[one, a, d], [b, one, e], [c, f, one]])
        return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)

    def stack(self, params: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray(params, np.float64).reshape(-1, 3, 3)

    def apply(self, x: np.ndarray, params: np.ndarray) -> np.ndarray:
        return shear(x, params)

    def apply_batch(self, clips: Clips, params: Sequence[np.ndarray]) -> Clips:
        out = np.empty_like(clips.data)
        shear_into(out, clips, np.arange(len(clips)), np.stack(params))
        return Clips(out, clips.lengths)


class JointCorruption(BatchAugmentation):
    """CMD: pick ``num_joints`` distinct joints; with probability ``p_zero`` zero them, else mix
    their coordinates by one random 3x3 matrix C with entries U[-1, 1] (x' = C^T x, as ISC).

    Draws, in the reference's order: c = ``rng.random()``, the joints ``rng.choice``, then (mix
    branch, c >= p_zero) nine ``rng.uniform(-1, 1)`` filling C row by row."""

    def __init__(self, num_joints: int = 15, p_zero: float = 0.5) -> None:
        if num_joints < 0 or not 0.0 <= p_zero <= 1.0:
            raise ValueError(f"bad joint corruption: num_joints={num_joints}, p_zero={p_zero}")
        self.num_joints, self.p_zero = num_joints, p_zero

    def draw(self, shape: Shape, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """(joints, C), C None for the zero branch."""
        v = shape[2]
        if self.num_joints > v:
            raise ValueError(f"cannot corrupt {self.num_joints} of {v} joints")
        zero = rng.random() < self.p_zero
        joints = rng.choice(v, self.num_joints, replace=False)
        matrix = None if zero else np.array(
            [rng.uniform(-1.0, 1.0) for _ in range(9)], np.float64).reshape(3, 3)
        return joints, matrix

    def width(self, shape: Shape) -> int:
        return 1 + shape[2] + 9

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(zero (N,) bool, joints (N, num_joints) int64, C (N, 3, 3) float64; C is zero where
        the joints are zeroed, as ``stack`` puts it: ``draw`` draws no matrix there)."""
        if self.num_joints > joints:
            raise ValueError(f"cannot corrupt {self.num_joints} of {joints} joints")
        zero = u[:, 0] < self.p_zero
        chosen = subsets(u[:, 1:1 + joints], self.num_joints)
        matrices = uniform_between(-1.0, 1.0, u[:, 1 + joints:10 + joints]).reshape(-1, 3, 3)
        matrices[zero] = 0.0
        return zero, chosen, matrices

    def stack(self, params: Sequence[tuple[np.ndarray, np.ndarray | None]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        zero = np.array([m is None for _, m in params], bool)
        chosen = np.array([j for j, _ in params], np.int64).reshape(len(params), -1)
        matrices = np.stack([np.zeros((3, 3)) if m is None else np.asarray(m, np.float64)
                             for _, m in params]) if len(params) else np.zeros((0, 3, 3))
        return zero, chosen, matrices

    def apply(self, x: np.ndarray, params: tuple[np.ndarray, np.ndarray | None]) -> np.ndarray:
        return corrupt_joints(x, *params)

    def apply_batch(self, clips: Clips,
                    params: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> Clips:
        out = clips.data.astype(np.float32, copy=True)
        self.corrupt_into(out, clips, np.arange(len(clips)), params)
        return Clips(out, clips.lengths)

    def corrupt_into(self, out: np.ndarray, clips: Clips, which: np.ndarray,
                     params: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> None:
        """The clips ``which`` with their ``params`` (in that order), written into ``out``."""
        if not len(params):
            return
        zero, joints, matrices = self.stack(params)
        corrupt_joints_batch(out, clips, which[zero], joints[zero], None)
        if (~zero).any():
            corrupt_joints_batch(out, clips, which[~zero], joints[~zero], matrices[~zero])


class ShearOrCorrupt(BatchAugmentation):
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

    def draw(self, shape: Shape, rng: np.random.Generator) -> tuple[bool, Any]:
        """(corrupt?, that augmentation's parameters)."""
        if rng.random() < 1.0 - self.p:
            return True, self.corrupt.draw(shape, rng)
        return False, self.shear.draw(shape, rng)

    def width(self, shape: Shape) -> int:
        return 1 + max(self.shear.width(shape), self.corrupt.width(shape))

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(corrupt (N,) bool, the shear matrices, the corruption's draws): both branches read
        the block after its first value; the branch a sample does not take gets ``stack``'s
        placeholders (the identity shear; no joints, zeroed)."""
        rest = u[:, 1:]
        corrupt = u[:, 0] < 1.0 - self.p
        shears = self.shear.draw_many(lengths, joints, rest)
        shears[corrupt] = np.eye(3)
        zero, chosen, mixes = self.corrupt.draw_many(lengths, joints, rest)
        zero[~corrupt], chosen[~corrupt], mixes[~corrupt] = True, 0, 0.0
        return corrupt, shears, (zero, chosen, mixes)

    def stack(self, params: Sequence[tuple[bool, Any]]
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The branch not taken gets the identity shear or an empty corruption (unused)."""
        corrupt = np.array([c for c, _ in params], bool)
        shears = self.shear.stack([np.eye(3) if c else p for c, p in params])
        nothing = (np.zeros(self.corrupt.num_joints, np.int64), None)
        corruptions = self.corrupt.stack([p if c else nothing for c, p in params])
        return corrupt, shears, corruptions

    def apply(self, x: np.ndarray, params: tuple[bool, Any]) -> np.ndarray:
        corrupt, inner = params
        return self.corrupt.apply(x, inner) if corrupt else self.shear.apply(x, inner)

    def apply_batch(self, clips: Clips, params: Sequence[tuple[bool, Any]]) -> Clips:
        corrupt = np.array([c for c, _ in params], bool)
        out = clips.data.astype(np.float32, copy=True)
        sheared = np.flatnonzero(~corrupt)
        if len(sheared):
            shear_into(out, clips, sheared, np.stack([params[i][1] for i in sheared]))
        which = np.flatnonzero(corrupt)
        self.corrupt.corrupt_into(out, clips, which, [params[i][1] for i in which])
        return Clips(out, clips.lengths)


def pad_crop_frames(lengths: np.ndarray, offsets: np.ndarray, padding_ratio: int,
                    window: int) -> np.ndarray:
    """(N, window) frame of its clip for each output frame of ``TemporalPadCrop``: padded position
    p of a clip of t frames with pad = t // ratio is frame pad - 1 - p before the clip, p - pad
    inside it, 2 t + pad - 1 - p after it (mirrors)."""
    t = np.asarray(lengths, np.int64)[:, None]
    pad = t // padding_ratio
    p = np.asarray(offsets, np.int64)[:, None] + np.arange(window)[None, :]
    return np.where(p < pad, pad - 1 - p, np.where(p < pad + t, p - pad, 2 * t + pad - 1 - p))


class TemporalPadCrop(BatchAugmentation):
    """CrosSCLR/SkeletonCLR: mirror-pad T // padding_ratio frames at each end, then take
    ``window`` consecutive frames at a uniform offset in [0, 2 * pad]."""

    def __init__(self, padding_ratio: int = 6, window: int = 50) -> None:
        if padding_ratio <= 0 or window <= 0:
            raise ValueError(f"bad pad-crop: padding_ratio={padding_ratio}, window={window}")
        self.padding_ratio, self.window = padding_ratio, window

    def draw(self, shape: Shape, rng: np.random.Generator) -> int:
        """The offset into the padded sequence."""
        padded = shape[1] + 2 * (shape[1] // self.padding_ratio)
        if self.window > padded:
            raise ValueError(f"window {self.window} longer than the padded sequence "
                             f"({padded} frames)")
        return int(rng.integers(0, padded - self.window + 1))

    def width(self, shape: Shape) -> int:
        return 1

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray) -> np.ndarray:
        """The offsets into the padded sequences, (N,) int64."""
        t = np.asarray(lengths, np.int64)
        padded = t + 2 * (t // self.padding_ratio)
        if np.any(self.window > padded):
            raise ValueError(f"window {self.window} longer than a padded sequence "
                             f"({int(padded.min())} frames)")
        return integers_below(np.zeros_like(padded), padded - self.window + 1, u[:, 0])

    def stack(self, params: Sequence[int]) -> np.ndarray:
        return np.asarray(params, np.int64).reshape(-1)

    def out_shape(self, shape: Shape) -> Shape:
        return (shape[0], self.window, *shape[2:])

    def apply(self, x: np.ndarray, params: int) -> np.ndarray:
        t = x.shape[1]
        pad = t // self.padding_ratio
        padded = np.concatenate([x[:, :pad][:, ::-1], x, x[:, t - pad:][:, ::-1]], axis=1)
        return np.ascontiguousarray(padded[:, params:params + self.window], dtype=np.float32)

    def apply_batch(self, clips: Clips, params: Sequence[int]) -> Clips:
        """One gather of ``pad_crop_frames``."""
        frame = pad_crop_frames(clips.lengths, np.asarray(params, np.int64), self.padding_ratio,
                                self.window)
        data = clips.data[:, (clips.starts[:, None] + frame).ravel()]
        return Clips(np.ascontiguousarray(data, np.float32),
                     np.full(len(clips), self.window, np.int64))


class Compose(BatchAugmentation):
    """Apply augmentations in order, sharing one generator (all of one sample's draws, in the
    order the transforms make them, before any arithmetic)."""

    def __init__(self, transforms: Sequence[BatchAugmentation]) -> None:
        self.transforms = list(transforms)

    def draw(self, shape: Shape, rng: np.random.Generator) -> list[Any]:
        """Each transform's draws in turn; from a :class:`UniformStream`, each from its own
        block of ``width`` values (so ``draw_many`` knows where every draw lies)."""
        _check_shape(shape)
        params = []
        for transform in self.transforms:
            source = (rng.block(transform.width(shape)) if isinstance(rng, UniformStream)
                      else rng)
            params.append(transform.draw(shape, source))  # type: ignore[arg-type]
            shape = transform.out_shape(shape)
        return params

    def width(self, shape: Shape) -> int:
        total = 0
        for transform in self.transforms:
            total += transform.width(shape)
            shape = transform.out_shape(shape)
        return total

    def draw_many(self, lengths: np.ndarray, joints: int, u: np.ndarray) -> list[Any]:
        """Each transform's ``draw_many`` on its block of the streams (the blocks ``draw``
        takes), with the clip lengths each transform sees."""
        params, at = [], 0
        lengths = np.asarray(lengths, np.int64)
        for transform in self.transforms:
            width = transform.width((3, 1, joints, 1))
            params.append(transform.draw_many(lengths, joints, u[:, at:at + width]))
            at += width
            lengths = np.array([transform.out_shape((3, t, joints, 1))[1]
                                for t in lengths.tolist()], np.int64)
        return params

    def stack(self, params: Sequence[list[Any]]) -> list[Any]:
        return [transform.stack([p[i] for p in params])
                for i, transform in enumerate(self.transforms)]

    def out_shape(self, shape: Shape) -> Shape:
        for transform in self.transforms:
            shape = transform.out_shape(shape)
        return shape

    def apply(self, x: np.ndarray, params: list[Any]) -> np.ndarray:
        for transform, p in zip(self.transforms, params, strict=True):
            x = transform.apply(x, p)
        return x

    def apply_batch(self, clips: Clips, params: Sequence[list[Any]]) -> Clips:
        for i, transform in enumerate(self.transforms):
            clips = transform.apply_batch(clips, [p[i] for p in params])
        return clips


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
