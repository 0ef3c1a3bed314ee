"""Streaming datasets and loaders: correct reads, per-sample seeded views, worker independence."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from skelkit.store.reader import open_store
from skelkit.train.augment import Shear, TemporalCropResize, resize_linear
from skelkit.train.data import (
    EpochSampler,
    SkeletonDataset,
    build_augment,
    make_loader,
    write_random_walk_store,
)
from skelkit.train.draws import UniformStream, uniforms

CMD_AUG = [{"name": "temporal_crop_resize", "window": 64, "min_frames": 16},
           {"name": "shear_or_corrupt"}]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("data") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 70), seed=3)


def raw_sample(path: Path, row: int) -> np.ndarray:
    return open_store(path).raw(row).transpose(1, 0, 2, 3)


def test_sequence_views_are_the_seeded_augmentation_of_the_raw_sample(store: Path) -> None:
    aug = build_augment([{"name": "temporal_crop_resize", "window": 32,
                                     "min_frames": 8}, {"name": "shear", "amplitude": 1.0}])
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=aug, seed=11)
    item = ds[(5, 2)]
    row = int(ds.meta.indices[5])
    # Independent reference: the sample straight from the store, the same augmentations and
    # the stream of (seed, epoch, row): q's crop takes its first 2 uniforms, q's shear the next
    # 6, then k's crop and shear.
    u = uniforms(11, 2, [row], 16)[0]
    x = raw_sample(store, row)
    ref_q = Shear(1.0)(TemporalCropResize(32, min_frames=8)(x, UniformStream(u[0:2])),
                       UniformStream(u[2:8]))
    ref_k = Shear(1.0)(TemporalCropResize(32, min_frames=8)(x, UniformStream(u[8:10])),
                       UniformStream(u[10:16]))
    np.testing.assert_array_equal(item["q"], ref_q)
    np.testing.assert_array_equal(item["k"], ref_k)
    assert not np.array_equal(item["q"], item["k"])
    assert item["label"] == open_store(store).samples["label"][row]
    assert item["index"] == row
    assert item["gamma"] == pytest.approx(open_store(store).samples["gamma"][row])


def test_views_depend_on_epoch_not_on_call_order(store: Path) -> None:
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=build_augment(CMD_AUG))
    a = ds[(3, 0)]["q"]
    ds[(4, 0)]
    np.testing.assert_array_equal(ds[(3, 0)]["q"], a)
    assert not np.array_equal(ds[(3, 1)]["q"], a)


def test_batched_reads_equal_single_reads_in_any_order(store: Path) -> None:
    for kind in ("sequence", "fixed"):
        ds = SkeletonDataset(store, "xsub", "test", kind=kind)
        keys = [(int(p), 0) for p in np.random.default_rng(0).permutation(len(ds))]
        items = ds.__getitems__(keys)
        s = open_store(store)
        for (pos, _), item in zip(keys, items):
            row = int(ds.meta.indices[pos])
            ref = raw_sample(store, row) if kind == "sequence" else s.fixed("joint")[row]
            np.testing.assert_array_equal(item["q"], ref)
            np.testing.assert_array_equal(item["k"], ref)


def test_embed_views(store: Path) -> None:
    seq = SkeletonDataset(store, "xsub", "train", kind="sequence", mode="embed", window=40)
    fixed = SkeletonDataset(store, "xsub", "train", kind="fixed", mode="embed")
    row = int(seq.meta.indices[2])
    x = raw_sample(store, row)
    np.testing.assert_allclose(seq[2]["x"], resize_linear(x, 40), rtol=0, atol=0)
    assert seq[2]["x"].shape[1] == 40 and "q" not in seq[2]
    np.testing.assert_array_equal(fixed[2]["x"], open_store(store).fixed("joint")[row])


def test_store_handle_is_never_pickled(store: Path) -> None:
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence")
    ds[(0, 0)]
    assert ds._store is not None
    state = ds.__getstate__()
    assert state["_store"] is None
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[(1, 0)]["q"], ds[(1, 0)]["q"])


def test_sampler_shards_and_tags_epochs(store: Path) -> None:
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence")
    parts = []
    for rank in range(2):
        s = EpochSampler(ds, shuffle=True, seed=5, drop_last=False, num_replicas=2, rank=rank)
        s.set_epoch(3)
        keys = list(s)
        assert {e for _, e in keys} == {3}
        parts.append([p for p, _ in keys])
    assert set(parts[0]).isdisjoint(parts[1])
    assert set(parts[0]) | set(parts[1]) == set(range(len(ds)))
    one = EpochSampler(ds, shuffle=True, seed=5, drop_last=False)
    one.set_epoch(0)
    first = list(one)
    one.set_epoch(1)
    assert first != list(one)
    one.set_epoch(0)
    assert first == list(one)


def test_worker_loader_matches_in_process_loader(store: Path) -> None:
    """Two forkserver workers (each opening the store itself) give the same batches as none."""
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=build_augment(CMD_AUG),
                         seed=1)
    batches = {}
    for workers in (0, 2):
        loader, sampler = make_loader(ds, batch_size=4, shuffle=True, seed=2, drop_last=True,
                                      num_workers=workers, prefetch_factor=2)
        runs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            runs.append(list(loader))
        batches[workers] = runs
        del loader
    for e in (0, 1):
        assert len(batches[0][e]) == len(ds) // 4
        for a, b in zip(batches[0][e], batches[2][e]):
            assert set(a) == {"q", "k", "gamma", "index", "label"}
            assert a["q"].shape == (4, 3, 64, 25, 2) and a["q"].dtype == torch.float32
            for key in a:
                assert torch.equal(a[key], b[key])
    assert not torch.equal(batches[0][0][0]["index"], batches[0][1][0]["index"])


def test_fixed_kind_requires_the_modality(store: Path) -> None:
    from skelkit.store.errors import StoreError

    with pytest.raises(StoreError, match="no modality 'bone'"):
        SkeletonDataset(store, "xsub", "train", kind="fixed", modality="bone")
    with pytest.raises(ValueError, match="input kind"):
        SkeletonDataset(store, "xsub", "train", kind="stream")

