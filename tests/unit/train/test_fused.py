"""The training views' draws (per-sample uniform streams, ``skelkit.train.draws``) and the numba
kernel that renders a whole batch (``skelkit.train.fused``).

Tolerance: none. ``draw_many`` must give exactly what each sample's ``draw`` takes from its
stream, and the kernel must give the per-sample arithmetic's views bit for bit (same float32
blend, same float64 mix summed in the same order)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from skelkit.train.augment import (
    BatchAugmentation,
    Compose,
    JointCorruption,
    Shear,
    ShearOrCorrupt,
    TemporalCropResize,
    TemporalPadCrop,
)
from skelkit.train.config import resolve_run_config
from skelkit.train.data import build_augment
from skelkit.train.draws import StreamExhausted, UniformStream, uniforms
from skelkit.train.fused import FusedViews, fusable
from skelkit.train.runs import method_class
from tests.unit.train.test_batched_augment import AUGMENTATIONS  # every augmentation, 12 settings

JOINTS, BODIES = 25, 2
PIPELINES = {
    "crop+shear_or_corrupt": Compose([TemporalCropResize(64, max_frames=300), ShearOrCorrupt()]),
    "shear+pad_crop": Compose([Shear(0.5, order="columns"), TemporalPadCrop(6, 50)]),
    "pad_crop+corrupt": Compose([TemporalPadCrop(3, 40), JointCorruption(15)]),
    "crop": TemporalCropResize(48, min_frames=20),
    "pad_crop": Compose([TemporalPadCrop(6, 50)]),
    "crop+mix only": Compose([TemporalCropResize(64), JointCorruption(10, p_zero=0.0)]),
}
LENGTHS = [64, 80, 103, 350, 65, 200, 90, 64, 120, 77, 64, 301]


def clips_of(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, t, JOINTS, BODIES)).astype(np.float32) for t in lengths]


# --- the streams -----------------------------------------------------------------------------

def test_a_samples_stream_depends_only_on_its_key() -> None:
    rows = np.array([5, 9, 2, 7])
    u = uniforms(3, 1, rows, 40)
    assert u.shape == (4, 40) and u.dtype == np.float64 and (u >= 0).all() and (u < 1).all()
    # The same sample in another batch, in another position: the same stream.
    again = uniforms(3, 1, [7, 100, 5], 40)
    assert np.array_equal(again[0], u[3]) and np.array_equal(again[2], u[0])
    # A longer stream extends it; per-row epochs equal one epoch for all.
    assert np.array_equal(uniforms(3, 1, rows, 60)[:, :40], u)
    assert np.array_equal(uniforms(3, np.ones(4, np.int64), rows, 40), u)
    for other in (uniforms(4, 1, rows, 40), uniforms(3, 2, rows, 40), uniforms(3, 1, rows + 1, 40)):
        assert not np.isin(other, u).any()


def test_the_streams_are_uniform_and_independent() -> None:
    u = uniforms(0, 0, np.arange(20000), 8)
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.003
    assert np.abs(np.corrcoef(u.T) - np.eye(8)).max() < 0.03  # counters within a stream
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.03  # neighbouring rows
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert counts.min() > 0.95 * u.size / 10


def test_a_uniform_stream_reads_like_a_generator() -> None:
    values = np.array([0.25, 0.5, 0.999, 0.0, 0.3, 0.1, 0.2, 0.9, 0.6])
    s = UniformStream(values)
    assert s.random() == 0.25 and s.uniform(-1.0, 1.0) == 0.0 and s.integers(0, 4) == 3
    assert s.integers(2, 5) == 2
    assert list(s.choice(5, 3, replace=False)) == [1, 2, 0]  # ranks of 0.3 0.1 0.2 0.9 0.6
    with pytest.raises(StreamExhausted):
        s.random()
    with pytest.raises(ValueError):
        UniformStream(values).choice(5, 3, replace=True)


def test_choice_draws_every_subset_position_evenly() -> None:
    picks = np.zeros(25)
    for row in uniforms(1, 0, np.arange(4000), 25):
        picks[UniformStream(row).choice(25, 15, replace=False)] += 1
    assert np.allclose(picks / 4000, 15 / 25, atol=0.03)


@pytest.mark.parametrize("aug", AUGMENTATIONS + list(PIPELINES.values()), ids=repr)
def test_draw_many_is_each_samples_draw_from_its_stream(aug: BatchAugmentation) -> None:
    lengths = np.array(LENGTHS)
    width = aug.width((3, 1, JOINTS, 1))
    u = uniforms(7, 2, np.arange(len(lengths)), width)
    singles = [aug.draw((3, int(t), JOINTS, BODIES), UniformStream(u[i]))
               for i, t in enumerate(lengths)]
    _assert_same(aug.draw_many(lengths, JOINTS, u), aug.stack(singles))


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, np.ndarray | np.generic | bool | int | float):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape and np.array_equal(a, b), (a, b)
        return
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        _assert_same(x, y)


def test_shear_or_corrupt_draws_both_branches_evenly() -> None:
    aug = ShearOrCorrupt()
    u = uniforms(0, 0, np.arange(2000), aug.width((3, 1, JOINTS, 1)))
    corrupt, shears, (zero, _, mixes) = aug.draw_many(np.full(2000, 64), JOINTS, u)
    assert 0.45 < corrupt.mean() < 0.55 and 0.45 < zero[corrupt].mean() < 0.55
    assert np.abs(shears[~corrupt]).max() <= 1.0 and np.abs(shears[~corrupt]).mean() > 0.5
    assert np.abs(mixes[corrupt & ~zero]).mean() > 0.4


# --- the kernel ------------------------------------------------------------------------------

def render(aug: BatchAugmentation, xs: list[np.ndarray], u: np.ndarray,
           shuffle: bool = True) -> np.ndarray:
    """The kernel's views; the source frames stored in a shuffled order (as the store's read
    of a batch's distinct frames is), so the index mapping is exercised."""
    frames = np.concatenate([x.transpose(1, 0, 2, 3) for x in xs])
    order = np.random.default_rng(1).permutation(len(frames)) if shuffle else np.arange(
        len(frames))
    source = np.empty_like(frames)
    source[order] = frames
    fused = FusedViews(aug)
    lengths = np.array([x.shape[1] for x in xs])
    out = np.full((len(xs), 3, fused.out_frames(lengths), JOINTS, BODIES), np.nan, np.float32)
    fused.render(source, order, lengths, u, out)
    return out


@pytest.mark.parametrize("name", list(PIPELINES))
def test_the_kernel_gives_the_per_sample_views(name: str) -> None:
    aug = PIPELINES[name]
    xs = clips_of(LENGTHS, seed=2)
    u = uniforms(5, 3, np.arange(len(xs)), aug.width((3, 1, JOINTS, 1)))
    out = render(aug, xs, u)
    for i, x in enumerate(xs):
        want = aug(x, UniformStream(u[i]))
        assert out[i].dtype == np.float32 and np.array_equal(out[i], want), f"{name} clip {i}"


@pytest.mark.parametrize("method", ["cmd", "i2md", "skeletonclr", "crossclr", "ikem"])
def test_the_published_pipelines_render_as_per_sample(method: str) -> None:
    pipeline = build_augment(resolve_run_config(method, method_class(method),
                                                f"{method}/ntu60").data.augment)
    assert fusable(pipeline)
    fixed = method_class(method).input_kind == "fixed"
    xs = clips_of([50] * 16 if fixed else LENGTHS, seed=3)
    u = uniforms(0, 0, np.arange(len(xs)), pipeline.width((3, 1, JOINTS, 1)))
    out = render(pipeline, xs, u)
    assert all(np.array_equal(out[i], pipeline(x, UniformStream(u[i])))
               for i, x in enumerate(xs))


def test_the_kernel_follows_each_samples_draws() -> None:
    """Not vacuous: other draws give other views, and every branch of shear-or-corrupt is hit
    (sheared, zeroed and mixed joints all occur in one batch)."""
    aug = PIPELINES["crop+shear_or_corrupt"]
    xs = clips_of(LENGTHS * 3, seed=4)
    u = uniforms(5, 3, np.arange(len(xs)), aug.width((3, 1, JOINTS, 1)))
    out = render(aug, xs, u)
    assert not np.array_equal(out, render(aug, xs, u[::-1]))
    corrupt, _, (zero, _, _) = aug.transforms[1].draw_many(np.full(len(xs), 64), JOINTS, u[:, 2:])
    assert corrupt.any() and (~corrupt).any() and (corrupt & zero).any() and (
        corrupt & ~zero).any()
    zeroed = (out == 0).all(axis=(1, 2, 4))  # (N, V): joints zero in every channel and frame
    assert (zeroed.sum(axis=1)[corrupt & zero] == 15).all()
    assert (zeroed.sum(axis=1)[~(corrupt & zero)] == 0).all()


def test_pipelines_the_kernel_cannot_render_bit_for_bit_are_not_fused() -> None:
    assert not fusable(Compose([Shear(), TemporalCropResize()]))  # a resize of sheared points
    assert not fusable(Compose([TemporalCropResize(), TemporalPadCrop()]))
    assert not fusable(Compose([Shear(), ShearOrCorrupt()]))
    assert not fusable(lambda x, rng: x)
    assert fusable(Compose([Shear(), TemporalPadCrop()]))  # a pad-crop only copies frames


def test_views_of_different_lengths_do_not_fit_one_batch() -> None:
    fused = FusedViews(Shear())
    lengths = np.array([50, 60])
    assert fused.out_frames(lengths) is None
    source = np.zeros((110, 3, JOINTS, BODIES), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        fused.render(source, np.arange(110), lengths, np.zeros((2, 6)),
                     np.empty((2, 3, 50, JOINTS, BODIES), np.float32))
