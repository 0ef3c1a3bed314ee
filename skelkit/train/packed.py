"""A training batch as views of one flat buffer, handed from a DataLoader worker to the training
process as one shared-memory block that the worker reuses.

torch sends every tensor of a batch through its own shared-memory file (created, faulted in,
passed as a file descriptor, mapped again on the other side): for CMD's two 64-frame views at
batch 64 that cost about as much worker CPU as reading and augmenting the batch
(``bench/loader.py``). Here all of a batch's tensors (both views, gamma, index, label) are views
of one buffer, so a batch crosses as one descriptor, and a worker keeps a few such buffers
(slots) and refills one once the training process has *released* it: it clears the slot's flag
byte after its step (``PackedBatch.release``), or as soon as the pin-memory thread has copied the
batch (``PackedBatch.pin_memory``). A batch that is never released is never overwritten: when
every slot is still held the worker allocates a fresh buffer, as torch would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ALIGN = 64  # bytes: every view starts aligned (a dtype view of a byte slice needs it)
Layout = tuple[tuple[str, str, tuple[int, ...], int], ...]  # (key, dtype, shape, byte offset)


def layout_of(fields: Sequence[tuple[str, Any, tuple[int, ...]]]) -> tuple[Layout, int]:
    """The views' places in one buffer and its size (the last byte is the slot's flag)."""
    out, at = [], 0
    for key, dtype, shape in fields:
        out.append((key, np.dtype(dtype).str, tuple(int(s) for s in shape), at))
        nbytes = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        at += -(-nbytes // ALIGN) * ALIGN
    return tuple(out), at + ALIGN


def _views(flat: torch.Tensor, layout: Layout) -> dict[str, torch.Tensor]:
    """Tensor views of the byte tensor ``flat`` (torch ops only: no ``Tensor.numpy()``, which
    the host-sync test counts in the training process)."""
    views = {}
    for key, dtype, shape, offset in layout:
        torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
        nbytes = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        views[key] = flat[offset:offset + nbytes].view(torch_dtype).view(shape)
    return views


class PackedBatch(dict):
    """The batch's tensors (a dict, as ``collate`` returns), all views of ``flat``. Pickled as
    ``flat`` and the layout only (one descriptor); ``flag`` is the byte of ``flat`` that marks
    its worker slot in use (None: not a slot, nothing to release)."""

    def __init__(self, flat: torch.Tensor, layout: Layout, flag: int | None = None) -> None:
        super().__init__(_views(flat, layout))
        self.flat, self.layout, self.flag = flat, layout, flag

    def __reduce__(self) -> tuple[Any, ...]:
        return (PackedBatch, (self.flat, self.layout, self.flag))

    def release(self) -> None:
        """The training process is done with this batch: its worker may refill the buffer.
        Call it only when no view of this batch is used any more."""
        if self.flag is not None:
            self.flat[self.flag] = 0
            self.flag = None

    def pin_memory(self, device: Any = None) -> PackedBatch:
        """The DataLoader's pin-memory thread: one copy of the buffer into page-locked memory,
        after which the shared slot is free at once."""
        pinned = PackedBatch(self.flat.pin_memory(), self.layout)
        self.release()
        return pinned


def release(batch: Any) -> None:
    """``PackedBatch.release`` for any batch (a plain dict has nothing to release)."""
    if isinstance(batch, PackedBatch):
        batch.release()


class Slots:
    """A worker's shared-memory buffers by size, at most ``count`` of each, reused once their
    flag byte is clear (see the module docstring)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._pools: dict[int, list[tuple[torch.Tensor, np.ndarray]]] = {}

    def take(self, nbytes: int) -> tuple[torch.Tensor, np.ndarray, int | None]:
        """(a byte tensor in shared memory, the array sharing it, its flag byte or None when
        it is not a slot), its flag set."""
        pool = self._pools.setdefault(nbytes, [])
        for flat, array in pool:
            if array[-1] == 0:
                array[-1] = 1
                return flat, array, nbytes - 1
        flat = torch.empty(nbytes, dtype=torch.uint8).share_memory_()
        array = flat.numpy()
        array[-1] = 1
        if len(pool) < self.count:
            pool.append((flat, array))
            return flat, array, nbytes - 1
        return flat, array, None


def new_batch(fields: Sequence[tuple[str, Any, tuple[int, ...]]], slots: Slots | None
              ) -> tuple[PackedBatch, dict[str, np.ndarray]]:
    """An uninitialised batch with these fields and numpy arrays sharing its views (to fill):
    from ``slots`` in a worker, else in plain memory (the array first, so that the training
    process never calls ``Tensor.numpy()``)."""
    layout, nbytes = layout_of(fields)
    if slots is None:
        array = np.empty(nbytes, np.uint8)
        flat, flag = torch.from_numpy(array), None
    else:
        flat, array, flag = slots.take(nbytes)
    arrays = {key: array[offset:offset + np.dtype(dtype).itemsize * int(np.prod(shape))]
              .view(dtype).reshape(shape) for key, dtype, shape, offset in layout}
    return PackedBatch(flat, layout, flag), arrays
