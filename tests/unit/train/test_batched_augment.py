"""The batched augmentations (``apply_batch``, the data loader's path) give today's per-sample
output for the same draws, and the training dataset's views are unchanged by batching.

Tolerance: none. The batched arithmetic performs the same float32 / float64 operations per
element as the per-sample one (the linear blend in float32, shear and joint mixing in float64
then rounded to float32), only vectorised, so the outputs are compared bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from skelkit.train.augment import (
    BatchAugmentation,
    Clips,
    Compose,
    JointCorruption,
    Shear,
    ShearOrCorrupt,
    TemporalCropResize,
    TemporalPadCrop,
)
from skelkit.train.config import resolve_run_config
from skelkit.train.data import (
    Batch,
    SkeletonDataset,
    build_augment,
    collate,
    write_random_walk_store,
)
from skelkit.train.runs import method_class

AUGMENTATIONS = [
    TemporalCropResize(window=64), TemporalCropResize(window=32, min_ratio=0.5, min_frames=10,
                                                      max_frames=70),
    Shear(1.0), Shear(0.5, order="columns"), JointCorruption(15), JointCorruption(5, p_zero=0.0),
    JointCorruption(5, p_zero=1.0), ShearOrCorrupt(), ShearOrCorrupt(p=1.0), ShearOrCorrupt(p=0.0),
    TemporalPadCrop(6, 50), TemporalPadCrop(3, 20),
]


def clips_of(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(3, t, 25, 2)).astype(np.float32) for t in lengths]


def per_sample_and_batched(aug: BatchAugmentation, xs: list[np.ndarray], seed: int = 3
                           ) -> tuple[list[np.ndarray], Clips]:
    """Each sample through ``aug(x, rng)`` and, from generators seeded alike, the batch."""
    singles = [aug(x, np.random.default_rng([seed, i])) for i, x in enumerate(xs)]
    params = [aug.draw(x.shape, np.random.default_rng([seed, i])) for i, x in enumerate(xs)]
    return singles, aug.apply_batch(Clips.from_list(xs), params)


@pytest.mark.parametrize("aug", AUGMENTATIONS, ids=lambda a: type(a).__name__)
def test_batch_equals_per_sample_on_clips_of_different_lengths(aug: BatchAugmentation) -> None:
    xs = clips_of([80, 64, 71, 120, 90, 300, 66, 75])
    singles, batch = per_sample_and_batched(aug, xs)
    assert list(batch.lengths) == [s.shape[1] for s in singles]
    for i, single in enumerate(singles):
        got = batch.clip(i)
        assert got.dtype == np.float32 and np.array_equal(got, single), f"clip {i}"


@pytest.mark.parametrize("method", ["cmd", "i2md", "skeletonclr", "crossclr", "ikem"])
def test_published_pipelines_batch_equals_per_sample(method: str) -> None:
    """The ntu60 configs' ``data.augment`` lists (CMD's crop-resize with the 300-frame cap then
    shear-or-corrupt; the ST-GCN methods' shear then pad-crop on 50 fixed frames)."""
    cfg = resolve_run_config(method, method_class(method), f"{method}/ntu60")
    pipeline = build_augment(cfg.data.augment)
    assert isinstance(pipeline, Compose)
    fixed = method_class(method).input_kind == "fixed"
    xs = clips_of([50] * 16 if fixed else [64, 80, 103, 350, 65, 200, 90, 64] * 2, seed=1)
    singles, batch = per_sample_and_batched(pipeline, xs)
    dense = batch.dense()
    assert dense.shape == (16, *singles[0].shape)
    assert all(np.array_equal(dense[i], s) for i, s in enumerate(singles))


def test_a_different_draw_changes_the_batched_clip() -> None:
    """The comparison above is not vacuous: the batch follows each sample's own draws."""
    xs = clips_of([80, 80])
    aug = Compose([TemporalCropResize(window=64), ShearOrCorrupt()])
    params = [aug.draw(x.shape, np.random.default_rng(i)) for i, x in enumerate(xs)]
    swapped = aug.apply_batch(Clips.from_list(xs), params[::-1])
    straight = aug.apply_batch(Clips.from_list(xs), params)
    assert not np.array_equal(swapped.clip(0), straight.clip(0))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("batched") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 120), seed=2)


@pytest.mark.parametrize("method, kind", [("cmd", "sequence"), ("skeletonclr", "fixed")])
def test_dataset_views_are_the_per_sample_views(store: Path, method: str, kind: str) -> None:
    """Same (seed, epoch, row) -> the same q and k whichever path makes them: the kernel (the
    default), the numpy batch (``batch_augment``) and one sample at a time (``fused=False``;
    ``dataset[key]``): runs and ``--resume`` see the same views on every path."""
    cfg = resolve_run_config(method, method_class(method), "tiny")
    aug = build_augment(cfg.data.augment)

    def dataset(**options: Any) -> SkeletonDataset:
        return SkeletonDataset(store, "xsub", "train", kind=kind, augment=aug, window=64, seed=5,
                               **options)

    default, batched, single = dataset(), dataset(batch_augment=True, fused=False), dataset(
        fused=False)
    assert default.fused is not None and batched.fused is None
    keys = [(i, epoch) for epoch in (0, 3) for i in range(len(default))]
    want = [single[key] for key in keys]
    for got in (default.__getitems__(keys), batched.__getitems__(keys),
                single.__getitems__(keys)):
        for a, b in zip(got, want, strict=True):
            assert a.keys() == b.keys() and a["index"] == b["index"] and a["label"] == b["label"]
            assert np.array_equal(a["q"], b["q"]) and np.array_equal(a["k"], b["k"])
    assert not np.array_equal(want[0]["q"], want[0]["k"])
    assert not np.array_equal(want[0]["q"], want[len(default)]["q"])  # another epoch


def test_the_raw_frame_cache_gives_the_same_views(store: Path, tmp_path: Path) -> None:
    """``raw_cache``: the memory-mapped, decompressed side gives the store's frames, so the same
    views; it is built once (reused, not rewritten) and leaves no partial file."""
    cfg = resolve_run_config("cmd", method_class("cmd"), "tiny")
    aug = build_augment(cfg.data.augment)
    plain = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=aug, seed=1)
    cached = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=aug, seed=1,
                             raw_cache=tmp_path / "cache")
    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npy" and "partial" not in files[0].name
    stamp = files[0].stat().st_mtime_ns
    keys = [(i, 2) for i in range(len(plain))][::-1]
    for a, b in zip(cached.__getitems__(keys), plain.__getitems__(keys), strict=True):
        assert a["index"] == b["index"]
        assert np.array_equal(a["q"], b["q"]) and np.array_equal(a["k"], b["k"])
    raw = cached._read_clips(np.arange(len(cached)))
    want = plain._read_clips(np.arange(len(plain)))
    assert np.array_equal(raw.data, want.data) and np.array_equal(raw.lengths, want.lengths)
    SkeletonDataset(store, "xsub", "train", kind="sequence", augment=aug, raw_cache=tmp_path / "cache")
    assert files[0].stat().st_mtime_ns == stamp
    SkeletonDataset(store, "xsub", "test", kind="sequence", augment=aug, raw_cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 2  # the other side: its own file


@pytest.mark.parametrize("batch_augment", [False, True])
def test_a_fetch_collates_to_its_stacked_tensors(store: Path, batch_augment: bool) -> None:
    """A training fetch hands ``collate`` one tensor per key (no stacking of copies): the same
    tensors, dtypes and values that stacking its per-sample items gives."""
    cfg = resolve_run_config("cmd", method_class("cmd"), "tiny")
    dataset = SkeletonDataset(store, "xsub", "train", kind="sequence",
                              augment=build_augment(cfg.data.augment), seed=4,
                              batch_augment=batch_augment)
    keys = [(i, 1) for i in range(len(dataset))][::-2]
    fetched = dataset.__getitems__(keys)
    assert isinstance(fetched, Batch)
    got, want = collate(fetched), collate(list(fetched))
    assert got.keys() == want.keys() == {"q", "k", "gamma", "index", "label"}
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), key
    assert got["index"].tolist() == [int(dataset.meta.indices[p]) for p, _ in keys]
    single = dataset[keys[0]]
    assert np.array_equal(single["q"], fetched[0]["q"]) and single["label"] == fetched[0]["label"]
