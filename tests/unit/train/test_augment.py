"""Augmentations keep shapes, are seeded, and do what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelkit.train.augment import (
    AUGMENTATIONS,
    Compose,
    JointCorruption,
    Shear,
    ShearOrCorrupt,
    TemporalCropResize,
    TemporalPadCrop,
    build_augmentations,
    resize_linear,
)


def _sample(t: int = 80, v: int = 25, m: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(3, t, v, m)).astype(np.float32)


ALL = [TemporalCropResize(), Shear(1.0), JointCorruption(15), ShearOrCorrupt(),
       TemporalPadCrop(6, 50)]


@pytest.mark.parametrize("aug", ALL, ids=lambda a: type(a).__name__)
def test_shape_dtype_and_seeding(aug):
    x = _sample()
    a = aug(x, np.random.default_rng(7))
    b = aug(x, np.random.default_rng(7))
    c = aug(x, np.random.default_rng(8))
    window = {"TemporalCropResize": 64, "TemporalPadCrop": 50}.get(type(aug).__name__, 80)
    assert a.shape == (3, window, 25, 2) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(x, _sample())  # input untouched


def test_resize_linear_matches_torch_interpolate():
    x = _sample(t=37)
    for length in (10, 64, 100):
        ref = F.interpolate(torch.from_numpy(x).permute(0, 2, 3, 1).reshape(1, -1, 37),
                            size=length, mode="linear", align_corners=False)
        ref = ref.reshape(3, 25, 2, length).permute(0, 3, 1, 2).numpy()
        assert np.allclose(resize_linear(x, length), ref, atol=1e-5)


def test_crop_resize_of_a_linear_ramp_stays_linear():
    t = 200
    ramp = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None],
                           (3, t, 25, 2)).copy()
    for seed in range(20):
        out = TemporalCropResize(window=64)(ramp, np.random.default_rng(seed))
        steps = np.diff(out[0, :, 0, 0])
        assert np.allclose(steps, steps[0], atol=1e-3) and steps[0] > 0
        # The crop covers at least 64 frames: the output spans at least 63 * (64/64) frames.
        assert out[0, -1, 0, 0] - out[0, 0, 0, 0] >= 63 - 1e-3


def test_crop_resize_lengths_follow_the_ratio_and_minimum():
    t = 300
    ramp = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None], (3, t, 1, 1))
    spans = []
    for seed in range(200):
        out = TemporalCropResize(window=64, min_ratio=0.1, max_ratio=1.0)(
            ramp, np.random.default_rng(seed))
        step = out[0, 1, 0, 0] - out[0, 0, 0, 0]
        spans.append(step * 64)  # crop length = step * window
        assert out[0, 0, 0, 0] >= 0 and out[0, -1, 0, 0] <= t - 1
    spans = np.array(spans)
    assert spans.min() >= 64 - 1e-3 and spans.max() <= t + 1e-3
    assert spans.max() > 250  # long crops happen


def test_short_sequences_are_stretched_to_the_window():
    out = TemporalCropResize(window=64)(_sample(t=20), np.random.default_rng(0))
    assert out.shape == (3, 64, 25, 2)


def test_shear_zero_amplitude_is_identity_and_matrix_form():
    x = _sample()
    assert np.allclose(Shear(0.0)(x, np.random.default_rng(1)), x)
    rng = np.random.default_rng(2)
    a, b, c, d, e, f = (rng.uniform(-0.5, 0.5) for _ in range(6))  # six draws, in order
    rows = np.array([[1, a, b], [c, 1, d], [e, f, 1]])  # CMD's pose_augmentation
    columns = np.array([[1, a, d], [b, 1, e], [c, f, 1]])  # CrosSCLR/IKEM feeder/tools.py
    for order, s in (("rows", rows), ("columns", columns)):
        out = Shear(0.5, order=order)(x, np.random.default_rng(2))
        assert np.allclose(out[:, 5, 3, 1], s @ x[:, 5, 3, 1], atol=1e-5)


def test_joint_corruption_touches_exactly_the_chosen_joints():
    x = _sample() + 10.0
    zeroed = mixed = 0
    for seed in range(30):
        out = JointCorruption(15)(x, np.random.default_rng(seed))
        changed = ~np.isclose(out, x).all(axis=(0, 1, 3))
        assert changed.sum() == 15
        if np.all(out[:, :, changed] == 0):
            zeroed += 1
        else:
            mixed += 1
            # One 3x3 matrix for all frames/joints: solve it from the data and re-apply.
            j = np.flatnonzero(changed)
            src = x[:, :, j].reshape(3, -1)
            dst = out[:, :, j].reshape(3, -1)
            mat, *_ = np.linalg.lstsq(src.T, dst.T, rcond=None)
            assert np.allclose(src.T @ mat, dst.T, atol=1e-3) and np.all(np.abs(mat) <= 1)
    assert zeroed > 5 and mixed > 5


def test_shear_or_corrupt_uses_both_branches():
    x = _sample() + 10.0
    kinds = set()
    for seed in range(30):
        out = ShearOrCorrupt(p=0.5)(x, np.random.default_rng(seed))
        kinds.add(int((~np.isclose(out, x).all(axis=(0, 1, 3))).sum()))
    assert 15 in kinds and 25 in kinds  # corruption touches 15 joints, shear all 25


def test_temporal_pad_crop_is_a_window_of_the_mirror_padded_sequence():
    t = 50
    ramp = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None],
                           (3, t, 2, 1)).copy()
    pad = t // 6
    padded = np.concatenate([np.arange(pad)[::-1], np.arange(t), np.arange(t - pad, t)[::-1]])
    starts = set()
    for seed in range(100):
        out = TemporalPadCrop(6, 50)(ramp, np.random.default_rng(seed))[0, :, 0, 0]
        start = int(np.flatnonzero([np.array_equal(out, padded[s:s + 50])
                                    for s in range(2 * pad + 1)])[0])
        starts.add(start)
    assert starts == set(range(2 * pad + 1))


def test_registry_and_builder():
    assert set(AUGMENTATIONS) == {"temporal_crop_resize", "shear", "joint_corruption",
                                  "shear_or_corrupt", "temporal_pad_crop"}
    pipe = build_augmentations([{"name": "temporal_crop_resize", "window": 32},
                                {"name": "shear_or_corrupt", "p": 0.5}])
    assert isinstance(pipe, Compose)
    assert pipe(_sample(), np.random.default_rng(0)).shape == (3, 32, 25, 2)
    with pytest.raises(ValueError, match="unknown name"):
        build_augmentations([{"name": "flip"}])
    with pytest.raises(ValueError, match="shear"):
        build_augmentations([{"name": "shear", "beta": 0.5}])
    with pytest.raises(ValueError, match="joints"):
        JointCorruption(30)(_sample(), np.random.default_rng(0))
