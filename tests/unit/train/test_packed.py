"""Training batches packed into one buffer (``skelkit.train.packed``): one shared-memory block
per batch from a worker, reused only after the training process releases it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from skelkit.train.data import SkeletonDataset, build_augment, make_loader, write_random_walk_store
from skelkit.train.packed import PackedBatch, Slots, new_batch, release

CMD_AUG = [{"name": "temporal_crop_resize", "window": 64, "min_frames": 16},
           {"name": "shear_or_corrupt"}]
FIELDS = [("q", np.float32, (4, 3, 8, 25, 2)), ("gamma", np.float32, (4,)),
          ("index", np.int64, (4,))]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("packed") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 70), seed=3)


def test_the_views_share_one_buffer_and_survive_pickling() -> None:
    batch, arrays = new_batch(FIELDS, None)
    arrays["q"][:] = np.arange(arrays["q"].size, dtype=np.float32).reshape(arrays["q"].shape)
    arrays["gamma"][:] = [0.5, 1.5, 2.5, 3.5]
    arrays["index"][:] = [7, -1, 2**40, 3]
    assert {t.untyped_storage().data_ptr() for t in batch.values()} == {
        batch.flat.untyped_storage().data_ptr()}
    again = pickle.loads(pickle.dumps(batch))
    assert isinstance(again, PackedBatch) and again.keys() == batch.keys()
    for key, tensor in batch.items():
        assert again[key].dtype == tensor.dtype and torch.equal(again[key], tensor), key
    assert again["index"].tolist() == [7, -1, 2**40, 3]


def test_a_slot_is_reused_only_once_released() -> None:
    slots = Slots(count=2)
    first, _ = new_batch(FIELDS, slots)
    second, _ = new_batch(FIELDS, slots)
    third, _ = new_batch(FIELDS, slots)  # both slots held: a fresh buffer, not a slot
    assert first.flag is not None and second.flag is not None and third.flag is None
    pointers = [b.flat.data_ptr() for b in (first, second, third)]
    assert len(set(pointers)) == 3
    release(second)
    release(third)  # not a slot: nothing to do
    fourth, _ = new_batch(FIELDS, slots)
    assert fourth.flat.data_ptr() == pointers[1]  # the released slot, and only that one
    fifth, _ = new_batch(FIELDS, slots)
    assert fifth.flat.data_ptr() not in pointers[:2] and fifth.flag is None


def test_pinning_copies_the_batch_and_frees_its_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    # pin_memory needs a CUDA runtime; a copy stands in for the page-locked one.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self.clone())
    slots = Slots(count=1)
    batch, arrays = new_batch(FIELDS, slots)
    arrays["gamma"][:] = 2.0
    pinned = batch.pin_memory()
    assert pinned.flat.data_ptr() != batch.flat.data_ptr() and pinned.flag is None
    assert torch.equal(pinned["gamma"], torch.full((4,), 2.0))
    reused, _ = new_batch(FIELDS, slots)
    assert reused.flat.data_ptr() == batch.flat.data_ptr()


def _loader_batches(store: Path, workers: int, release_each: bool) -> list[dict[str, torch.Tensor]]:
    ds = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=build_augment(CMD_AUG),
                         seed=1)
    loader, sampler = make_loader(ds, batch_size=2, shuffle=True, seed=2, drop_last=True,
                                  num_workers=workers, prefetch_factor=1)
    out = []
    for epoch in (0, 1, 2):
        sampler.set_epoch(epoch)
        for batch in loader:
            if workers:
                assert isinstance(batch, PackedBatch) and len(
                    {t.untyped_storage().data_ptr() for t in batch.values()}) == 1
            out.append({k: v.clone() for k, v in batch.items()} if release_each else batch)
            if release_each:
                release(batch)
    del loader
    return out


def test_released_batches_are_refilled_without_corrupting_any(store: Path) -> None:
    """Two workers with three slots each (prefetch 1) over 18 batches: every batch, copied
    before its release as the engine's step would use it, equals the in-process one; and batches
    that are held (never released) keep their values while the workers go on."""
    want = _loader_batches(store, 0, release_each=False)
    for release_each in (True, False):
        got = _loader_batches(store, 2, release_each)
        assert len(got) == len(want) == 18
        for a, b in zip(got, want, strict=True):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
