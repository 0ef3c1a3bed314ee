"""A whole batch's augmented views in one numba pass, written straight into the batch tensor.

The published pipelines are one temporal transform (CMD's crop-resize, the ST-GCN methods'
pad-crop) and one point transform (shear, joint corruption, shear-or-corrupt). Given every
sample's draws (``draw_many`` on its uniform stream, ``skelkit.train.draws``), each output frame
is a blend of at most two source frames and each point a 3x3 mix of its coordinates, so one loop
over (sample, frame, joint, body) reads each source value once and writes each output once: no
per-sample Python, no intermediate arrays. The loop performs the per-sample path's operations in
its precision and order (the blend (1 - w) x_lo + w x_hi in float32; the mix in float64,
summed over the input channels in order, rounded to float32), so both give the same views bit for
bit (``tests/unit/train/test_fused.py``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from skelkit.train.augment import (
    BatchAugmentation,
    Compose,
    JointCorruption,
    Shear,
    ShearOrCorrupt,
    TemporalCropResize,
    TemporalPadCrop,
    pad_crop_frames,
    resize_positions,
)

TEMPORAL = (TemporalCropResize, TemporalPadCrop)
POINT = (Shear, JointCorruption, ShearOrCorrupt)


@numba.njit(cache=True, nogil=True)
def _render(source: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray,
            blend: bool, mask: np.ndarray, zero: np.ndarray, matrix: np.ndarray,
            out: np.ndarray) -> None:  # pragma: no cover - compiled
    """out[b, :, t, p] = P_b(x), x = (1 - w[b, t]) source[lo[b, t], :, p]
    + w[b, t] source[hi[b, t], :, p] (``blend``; else source[lo[b, t], :, p] as it is), for every
    point p (joint and body flattened); P_b the identity where ``mask[b, p]`` is off, else zero
    (``zero[b]``) or x -> matrix[b] x. The loops run over contiguous points, without branches
    inside them where every point is mixed (a shear) or none is."""
    samples, frames = lo.shape
    points = source.shape[2]
    one = np.float32(1.0)
    x = np.empty((3, points), np.float32)
    for b in range(samples):
        changed = np.flatnonzero(mask[b])
        everywhere = len(changed) == points
        mixes = not zero[b]
        c = matrix[b]
        for t in range(frames):
            a, h, wt = lo[b, t], hi[b, t], w[b, t]
            om = one - wt
            for i in range(3):
                if blend:
                    for p in range(points):
                        x[i, p] = om * source[a, i, p] + wt * source[h, i, p]
                else:
                    for p in range(points):
                        x[i, p] = source[a, i, p]
            if everywhere and mixes:
                for i in range(3):
                    ci0, ci1, ci2 = c[i, 0], c[i, 1], c[i, 2]
                    for p in range(points):
                        y = ci0 * np.float64(x[0, p])
                        y += ci1 * np.float64(x[1, p])
                        y += ci2 * np.float64(x[2, p])
                        out[b, i, t, p] = np.float32(y)
                continue
            for i in range(3):
                for p in range(points):
                    out[b, i, t, p] = x[i, p]
            for p in changed:
                if mixes:
                    d0, d1, d2 = np.float64(x[0, p]), np.float64(x[1, p]), np.float64(x[2, p])
                    for i in range(3):
                        y = c[i, 0] * d0
                        y += c[i, 1] * d1
                        y += c[i, 2] * d2
                        out[b, i, t, p] = np.float32(y)
                else:
                    out[b, 0, t, p] = 0.0
                    out[b, 1, t, p] = 0.0
                    out[b, 2, t, p] = 0.0


def _stages(pipeline: BatchAugmentation) -> tuple[Any, Any, int] | None:
    """(temporal transform or None, point transform or None, the temporal one's index), or None
    when the kernel cannot render the pipeline bit for bit: more than one of a kind, another
    transform, or a point transform before a crop-resize (resizing sheared points rounds
    differently; before a pad-crop, which only copies frames, the order does not matter)."""
    transforms = pipeline.transforms if isinstance(pipeline, Compose) else [pipeline]
    temporal = [i for i, t in enumerate(transforms) if isinstance(t, TEMPORAL)]
    point = [i for i, t in enumerate(transforms) if isinstance(t, POINT)]
    if len(temporal) > 1 or len(point) > 1 or len(temporal) + len(point) != len(transforms):
        return None
    if temporal and point and point[0] < temporal[0] and isinstance(
            transforms[temporal[0]], TemporalCropResize):
        return None
    return (transforms[temporal[0]] if temporal else None,
            transforms[point[0]] if point else None, temporal[0] if temporal else -1)


def fusable(pipeline: Any) -> bool:
    return isinstance(pipeline, BatchAugmentation) and _stages(pipeline) is not None


class FusedViews:
    """Renders a pipeline's views of a batch (see the module docstring)."""

    def __init__(self, pipeline: BatchAugmentation) -> None:
        stages = _stages(pipeline)
        if stages is None:
            raise ValueError(f"the kernel does not render {pipeline!r}")
        self.pipeline = pipeline
        self.temporal, self.point, self._temporal_at = stages

    def width(self, joints: int) -> int:
        """Uniforms per view of one sample."""
        return self.pipeline.width((3, 1, joints, 1))

    def out_frames(self, lengths: np.ndarray) -> int | None:
        """The one output length of these clips (None when they differ)."""
        if self.temporal is not None:
            return self.temporal.window
        distinct = set(np.asarray(lengths).tolist())
        return distinct.pop() if len(distinct) == 1 else None

    def _draws(self, lengths: np.ndarray, joints: int, u: np.ndarray) -> tuple[Any, Any]:
        return self._by_stage(self.pipeline.draw_many(lengths, joints, u))

    def _by_stage(self, params: Any) -> tuple[Any, Any]:
        """(the temporal transform's draws, the point transform's) of ``draw_many``'s result."""
        if not isinstance(self.pipeline, Compose):
            params = [params]
        transforms = list(getattr(self.pipeline, "transforms", [self.pipeline]))
        temporal = (params[transforms.index(self.temporal)] if self.temporal is not None
                    else None)
        point = params[transforms.index(self.point)] if self.point is not None else None
        return temporal, point

    def _frames(self, lengths: np.ndarray, params: Any, frames: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """(lo, hi, w, blend): each output frame's source frames within its clip."""
        n = len(lengths)
        if isinstance(self.temporal, TemporalCropResize):
            starts, crop = params
            lo, hi, w = resize_positions(crop, frames)
            return lo + starts[:, None], hi + starts[:, None], w, True
        if isinstance(self.temporal, TemporalPadCrop):
            lo = pad_crop_frames(lengths, params, self.temporal.padding_ratio, frames)
        else:
            lo = np.broadcast_to(np.arange(frames), (n, frames))
        return lo, lo, np.zeros((n, frames), np.float32), False

    def _points(self, n: int, joints: int, params: Any
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask (N, V), zero (N,), matrix (N, 3, 3)): per sample, the joints the point transform
        changes, whether it zeroes them, and the matrix it applies to them."""
        mask = np.zeros((n, joints), bool)
        zero = np.zeros(n, bool)
        matrix = np.zeros((n, 3, 3), np.float64)
        if self.point is None:
            return mask, zero, matrix
        if isinstance(self.point, Shear):
            mask[:] = True
            return mask, zero, np.ascontiguousarray(params)
        corrupt = np.ones(n, bool)
        if isinstance(self.point, ShearOrCorrupt):
            corrupt, shears, params = params
            mask[~corrupt] = True
            matrix[~corrupt] = shears[~corrupt]
        zeroes, chosen, mixes = params
        rows = np.flatnonzero(corrupt)
        mask[rows[:, None], chosen[rows]] = True
        zero[rows] = zeroes[rows]
        # Joint corruption maps x to C^T x (output channel j = sum_i C[i, j] x_i).
        matrix[rows] = mixes[rows].transpose(0, 2, 1)
        return mask, zero, matrix

    def render(self, source: np.ndarray, index: np.ndarray, lengths: np.ndarray,
               u: np.ndarray, out: np.ndarray) -> None:
        """Write clip i's view into out[i] (N, 3, T', V, M) float32. Clip i's frame f is row
        index[starts[i] + f] of ``source`` (R, 3, V, M) float32 (frames-major, as the store's
        raw frames), starts the running sum of ``lengths``; u (N, width) are its draws."""
        lengths = np.asarray(lengths, np.int64)
        self.render_draws(source, index, lengths,
                          self.pipeline.draw_many(lengths, source.shape[2], u), out)

    def render_draws(self, source: np.ndarray, index: np.ndarray, lengths: np.ndarray,
                     draws: Any, out: np.ndarray) -> None:
        """``render`` with the draws given in ``draw_many``'s form (e.g. ``stack`` of
        per-sample draws: the golden replay of the authors' feeder)."""
        lengths = np.asarray(lengths, np.int64)
        n, joints = len(lengths), source.shape[2]
        frames = out.shape[2]
        if self.out_frames(lengths) != frames or out.shape[0] != n:
            raise ValueError(f"views of {n} clips of lengths {sorted(set(lengths.tolist()))} "
                             f"do not fit an output of shape {out.shape}")
        temporal, point = self._by_stage(draws)
        lo, hi, w, blend = self._frames(lengths, temporal, frames)
        starts = (np.cumsum(lengths) - lengths)[:, None]
        index = np.asarray(index, np.int64)
        mask, zero, matrix = self._points(n, joints, point)
        rows, bodies = source.shape[0], source.shape[3]
        # Joints and bodies as one axis of points (both arrays are contiguous: views).
        _render(source.reshape(rows, 3, joints * bodies), np.ascontiguousarray(index[starts + lo]),
                np.ascontiguousarray(index[starts + hi]), np.ascontiguousarray(w, np.float32),
                blend, np.repeat(mask, bodies, axis=1), zero, matrix,
                out.reshape(n, 3, frames, joints * bodies))
