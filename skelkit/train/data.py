"""Streaming datasets over a store, and DataLoaders that are safe with zarr 3 and deterministic.

Each worker opens the store itself on first use (zarr handles are never pickled, and zarr 3's
event-loop thread does not survive fork, hence spawn/forkserver workers). The sampler yields
``(position, epoch)`` keys and every sample draws its augmentation from its own stream keyed by
``(seed, epoch, store row)`` (``draws.uniforms``; a plain-function augmentation gets a numpy
generator seeded alike): the views of a sample depend neither on the worker that made them nor on
the number of workers or ranks, which is what makes ``--resume`` exact. A batch's frames come
straight from the store's shard files (``shardread``) where the layout allows, and the published
pipelines' views of the whole batch are rendered by one numba pass (``fused``) into one tensor
per view that ``collate`` passes on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from skelkit.failpoints import failpoint
from skelkit.store.durable import disk_full_is_one_line
from skelkit.store.layout import NTU25
from skelkit.store.reader import Store, open_store
from skelkit.store.schema import FIXED_FRAMES, MAX_BODIES
from skelkit.store.writer import SampleBatch, StoreWriter
from skelkit.train.augment import BatchAugmentation, Clips, build_augmentations, resize_linear
from skelkit.train.draws import UniformStream, uniforms
from skelkit.train.fused import FusedViews, fusable
from skelkit.train.packed import PackedBatch, Slots, new_batch
from skelkit.train.shardread import ShardedRows, open_rows

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]
View = Callable[[np.ndarray], np.ndarray]
INPUT_KINDS = ("sequence", "fixed")


def resize_time(x: np.ndarray, window: int) -> np.ndarray:
    """Linear resize of (C, T, V, M) along T to ``window`` frames: the crop-resize's maths
    (``augment.resize_linear``) applied to the whole valid sequence, for un-augmented views."""
    if x.shape[1] == window:
        return np.ascontiguousarray(x, dtype=np.float32)
    return resize_linear(x, window)


@dataclass(frozen=True)
class SideMeta:
    """Per-sample metadata of one protocol side, read once in the main process (small arrays)."""

    indices: np.ndarray  # store rows, sorted
    labels: np.ndarray
    gammas: np.ndarray
    names: np.ndarray
    offsets: np.ndarray  # raw frame offsets of every store row (N + 1,)


def read_side_meta(store: Store, protocol: str, side: str) -> SideMeta:
    idx = store.indices(protocol, side)
    samples = store.samples
    return SideMeta(
        indices=idx,
        labels=samples["label"].to_numpy(np.int64)[idx],
        gammas=samples["gamma"].to_numpy(np.float32)[idx],
        names=samples["name"].to_numpy(str)[idx],
        offsets=store.offsets,
    )


def side_frame_cache(store: Store, meta: SideMeta, store_path: str, protocol: str, side: str,
                     cache_dir: str | Path) -> tuple[Path, np.ndarray]:
    """The side's raw joint frames decompressed once into ``cache_dir`` as a float32 ``.npy``
    (frames-major (F, 3, V, M), in store-row order) and each side position's frame offsets into
    it (len + 1,). Training reads it memory-mapped: a batch becomes a page-cache gather instead
    of zarr decoding a 256-frame chunk per clip (bench/loader.py: 1.3 ms CPU per sample).

    The file is named by the store's path, the raw array's shape and metadata time, the protocol
    and the side, so a rebuilt store gets a new file; it is written under a temporary name and
    renamed when complete, so a partial file is never read."""
    raw = store.group["raw/joint"]
    meta_file = Path(store_path) / "raw" / "joint" / "zarr.json"
    stamp = meta_file.stat().st_mtime_ns if meta_file.is_file() else 0
    key = f"{Path(store_path).resolve()}|{raw.shape}|{stamp}|{protocol}|{side}"
    name = hashlib.sha1(key.encode()).hexdigest()[:16]
    folder = Path(cache_dir)
    path = folder / f"raw-{name}.npy"
    lengths = meta.offsets[meta.indices + 1] - meta.offsets[meta.indices]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    if path.is_file():
        return path, offsets
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"raw-{name}.{os.getpid()}.partial.npy"
    try:
        with disk_full_is_one_line(f"the raw cache {path}", "rerun (or drop data.raw_cache)",
                                   remove=[partial]):
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32,
                                            shape=(int(offsets[-1]), *raw.shape[1:]))
            # The memmap's file is sparse: a page written on a full disk would kill the process
            # with SIGBUS. Reserving every block first makes a full disk an ENOSPC here.
            with open(partial, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            failpoint("write-raw-cache")
            # Runs of consecutive store rows are one contiguous slice each (one zarr call per run).
            rows = meta.indices
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            for run in np.split(np.arange(len(rows)), breaks):
                first, last = rows[run[0]], rows[run[-1]]
                out[offsets[run[0]]:offsets[run[-1] + 1]] = raw[
                    meta.offsets[first]:meta.offsets[last + 1]]
            out.flush()
            del out
            os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)  # never left behind, whatever stopped the write
        raise
    return path, offsets


class SkeletonDataset(Dataset):
    """One protocol side of a store.

    ``mode="train"``: two augmented views ``q``, ``k`` (3, T, V, M) per sample (with
    ``batch_augment``, the arithmetic of a whole batch at once after each sample's draws). ``mode="embed"``:
    one un-augmented view ``x``: ``view`` of the sample (a method's ``evaluation_view``, e.g.
    CMD's centre crop); without one, for ``kind="sequence"`` the whole valid raw sequence resized
    to ``window`` frames, for ``kind="fixed"`` the store's fixed-length joints. Keys are
    positions in the side (0..len-1) or ``(position, epoch)`` pairs from :class:`EpochSampler`.
    """

    def __init__(self, store_path: str | Path, protocol: str, side: str, *, kind: str,
                 mode: str = "train", augment: Augment | None = None, window: int = 64,
                 seed: int = 0, modality: str = "joint", view: View | None = None,
                 batch_augment: bool = False, raw_cache: str | Path | None = None,
                 shard_reads: bool = True, fused: bool = True) -> None:
        if kind not in INPUT_KINDS:
            raise ValueError(f"input kind must be one of {INPUT_KINDS}, not {kind!r}")
        if mode not in ("train", "embed"):
            raise ValueError(f"mode must be train or embed, not {mode!r}")
        self.store_path = str(store_path)
        self.protocol, self.side, self.kind, self.mode = protocol, side, kind, mode
        self.augment = augment
        # Three paths give the same views bit for bit from the same per-sample draws. The
        # default renders a whole batch in one numba pass (``fused``; bench/loader.py: 0.03 ms
        # of CPU a sample for both CMD views against 0.2 per sample); pipelines it does not render,
        # or ``fused=False``, go one sample at a time, or through the vectorised numpy arithmetic
        # with ``batch_augment`` (slower than per sample on CPU workers: 0.30 vs 0.13 ms).
        self.batch_augment = batch_augment
        self.fused = FusedViews(augment) if fused and fusable(augment) else None  # type: ignore[arg-type]
        self.view = view
        self.window = int(window)
        self.seed = int(seed)
        self.modality = modality
        store = open_store(self.store_path)
        self.meta = read_side_meta(store, protocol, side)
        if kind == "fixed":
            store.fixed(modality)  # fail early, in the main process, when the modality is absent
        self._store: Store | None = None
        # Sequence methods may read their frames from a decompressed, memory-mapped copy
        # (``side_frame_cache``), built here, in the main process, before any worker starts.
        self._cache: tuple[Path, np.ndarray] | None = None
        if raw_cache and kind == "sequence":
            self._cache = side_frame_cache(store, self.meta, self.store_path, protocol, side,
                                           raw_cache)
        self._cache_frames: np.ndarray | None = None
        # Per process: the store's arrays read from their shard files (None: through zarr).
        # ``shard_reads=False`` always reads through zarr (the benchmark's and tests' reference).
        self.shard_reads = shard_reads
        self._readers: dict[str, ShardedRows | None] = {}
        # In a worker: the shared-memory buffers its batches are written into and reused from
        # (``packed``); ``make_loader`` sizes them to the batches a worker has in flight.
        self.slot_count = 6
        self._slots: Slots | None = None

    def __len__(self) -> int:
        return len(self.meta.indices)

    def __getstate__(self) -> dict[str, Any]:
        # Workers get everything but the open store; each reopens it lazily.
        state = self.__dict__.copy()
        state["_store"] = None
        state["_cache_frames"] = None
        state["_readers"] = {}
        state["_slots"] = None
        return state

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.store_path)
        return self._store

    # --- reading ---------------------------------------------------------------------------

    def _reader(self, name: str) -> ShardedRows | None:
        if name not in self._readers:
            self._readers[name] = (open_rows(self.store_path, name,
                                             self.store.group[name].metadata.to_dict())
                                   if self.shard_reads else None)
        return self._readers[name]

    def _rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """``array[rows]`` of the store's array ``name`` for sorted unique ``rows``: straight
        from the shard files (``shardread``: a tenth of zarr's CPU per chunk), or through zarr
        for a layout that reader does not handle."""
        reader = self._reader(name)
        if reader is not None:
            return reader.read(rows)
        array = self.store.group[name]
        return np.asarray(array.oindex[rows], np.float32)

    def _read_clips(self, positions: np.ndarray) -> Clips:
        """The joints of the given side positions, in order, with one store read, as
        :class:`Clips`."""
        read = self._read_fixed_frames if self.kind == "fixed" else self._read_frames
        source, index, lengths = read(positions)
        return Clips.from_frames(source[index], lengths)

    def _read_frames(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The raw frames of the given side positions as (source (R, 3, V, M) float32, index,
        lengths): frame f of clip i is source[index[starts[i] + f]], starts the running sum of
        ``lengths``. From the side cache, source is the whole memory-mapped cache (no copy);
        from the store, the batch's distinct frames, each read once."""
        if self._cache is not None:
            path, offsets = self._cache
            if self._cache_frames is None:
                self._cache_frames = np.asarray(np.load(path, mmap_mode="r"))
            lo, hi = offsets[positions], offsets[positions + 1]
            return self._cache_frames, _ranges(lo, hi), hi - lo
        rows = self.meta.indices[positions]
        lo, hi = self.meta.offsets[rows], self.meta.offsets[rows + 1]
        # Sorted unique frame indices read the raw chunks once each (a compact source: the
        # kernel's gathers stay in cache, which measured faster than decoding every touched
        # chunk straight into one buffer and indexing that).
        uniq, inverse = np.unique(_ranges(lo, hi), return_inverse=True)
        return np.asarray(self._rows("raw/joint", uniq), np.float32), inverse, hi - lo

    def _read_fixed_frames(self, positions: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``_read_frames`` for the store's fixed-length arrays (one read of the sorted rows,
        made frames-major)."""
        rows = self.meta.indices[positions]
        order = np.argsort(rows, kind="stable")
        block = np.asarray(self._rows(f"fixed/{self.modality}", rows[order]), np.float32)
        n, _, t = block.shape[:3]
        source = np.ascontiguousarray(block.transpose(0, 2, 1, 3, 4)).reshape(
            n * t, *block.shape[1:2], *block.shape[3:])
        # Clip i is block row where[i] (block[j] is row order[j]).
        where = np.argsort(order, kind="stable")
        index = (where[:, None] * t + np.arange(t)[None, :]).ravel()
        return source, index, np.full(len(positions), t, np.int64)

    # --- samples -----------------------------------------------------------------------------

    def _labels(self, pos: int) -> dict[str, Any]:
        return {"gamma": np.float32(self.meta.gammas[pos]), "index": int(self.meta.indices[pos]),
                "label": int(self.meta.labels[pos])}

    def _rng(self, pos: int, epoch: int, joints: int) -> Any:
        """The sample's own draws (both views', q's first): its views depend on (seed, epoch,
        store row) only. A uniform stream for the built-in pipelines (``draw_many`` and the
        kernel read the same stream); a numpy generator for a plain function."""
        row = int(self.meta.indices[pos])
        if isinstance(self.augment, BatchAugmentation):
            width = self.augment.width((3, 1, joints, 1))
            return UniformStream(uniforms(self.seed, epoch, [row], 2 * width)[0])
        return np.random.default_rng([self.seed, epoch, row])

    def _make(self, pos: int, epoch: int, x: np.ndarray) -> dict[str, Any]:
        item = self._labels(pos)
        if self.mode == "embed":
            if self.view is not None:
                item["x"] = np.ascontiguousarray(self.view(x), dtype=np.float32)
            else:
                item["x"] = resize_time(x, self.window) if self.kind == "sequence" else x
            return item
        rng = self._rng(pos, epoch, x.shape[2])
        aug = self.augment or (lambda a, _r: a)
        item["q"] = np.ascontiguousarray(aug(x, rng), dtype=np.float32)
        item["k"] = np.ascontiguousarray(aug(x, rng), dtype=np.float32)
        return item

    def _augment_batch(self, pairs: list[tuple[int, int]], positions: np.ndarray, clips: Clips,
                       augment: BatchAugmentation) -> Batch:
        """Both views of every sample: per sample, q's draws then k's from its own generator
        (as ``_make`` draws them), then the arithmetic once for the whole batch per view."""
        draws: dict[str, list[Any]] = {"q": [], "k": []}
        for i, (pos, epoch) in enumerate(pairs):
            shape = clips.shape(i)
            rng = self._rng(pos, epoch, shape[2])
            for view in ("q", "k"):
                draws[view].append(augment.draw(shape, rng))
        views = {view: augment.apply_batch(clips, d).dense() for view, d in draws.items()}
        batch, arrays = self._new_batch(positions, views["q"].shape[1:])
        for view, values in views.items():
            arrays[view][:] = values
        return batch

    def _augment_each(self, pairs: list[tuple[int, int]], positions: np.ndarray, clips: Clips,
                      shape: tuple[int, ...]) -> Batch:
        """Both views of every sample, one sample at a time (``_make``'s draws and arithmetic),
        each written straight into its row of the batch's view arrays."""
        batch, arrays = self._new_batch(positions, shape)
        q, k = arrays["q"], arrays["k"]
        augment = self.augment or (lambda a, _r: a)
        bounds = np.concatenate([[0], np.cumsum(clips.lengths)]).tolist()
        for i, (pos, epoch) in enumerate(pairs):
            x = np.ascontiguousarray(clips.data[:, bounds[i]:bounds[i + 1]])
            rng = self._rng(pos, epoch, x.shape[2])
            q[i] = augment(x, rng)
            k[i] = augment(x, rng)
        return batch

    def _augment_fused(self, pairs: list[tuple[int, int]], positions: np.ndarray
                       ) -> Batch | None:
        """Both views of every sample rendered by the kernel straight into the batch's view
        tensors, from each sample's stream (q's block, then k's: as ``_make`` draws them).
        None when the clips' views differ in length (no temporal transform)."""
        fused = self.fused
        assert fused is not None
        read = self._read_fixed_frames if self.kind == "fixed" else self._read_frames
        source, index, lengths = read(positions)
        frames = fused.out_frames(lengths)
        if frames is None:
            return None
        joints = source.shape[2]
        width = fused.width(joints)
        u = uniforms(self.seed, np.array([e for _, e in pairs], np.int64),
                     self.meta.indices[positions], 2 * width)
        batch, arrays = self._new_batch(positions, (3, frames, joints, source.shape[3]))
        for i, view in enumerate(("q", "k")):
            fused.render(source, index, lengths, u[:, i * width:(i + 1) * width], arrays[view])
        return batch

    def _new_batch(self, positions: np.ndarray, view_shape: tuple[int, ...]
                   ) -> tuple[Batch, dict[str, np.ndarray]]:
        """The batch of these positions, its labels filled in and its two views to be written
        (the arrays returned): one buffer (``packed``; in a worker, a reused shared-memory slot)
        that ``collate`` hands on whole, and the per-sample items as rows of it."""
        n = len(positions)
        if torch.utils.data.get_worker_info() is not None and self._slots is None:
            self._slots = Slots(self.slot_count)
        packed, arrays = new_batch(
            [("q", np.float32, (n, *view_shape)), ("k", np.float32, (n, *view_shape)),
             ("gamma", np.float32, (n,)), ("index", np.int64, (n,)), ("label", np.int64, (n,))],
            self._slots)
        arrays["gamma"][:] = self.meta.gammas[positions]
        arrays["index"][:] = self.meta.indices[positions]
        arrays["label"][:] = self.meta.labels[positions]
        index_list, label_list = arrays["index"].tolist(), arrays["label"].tolist()
        items = [{"gamma": arrays["gamma"][i], "index": index_list[i], "label": label_list[i],
                  "q": arrays["q"][i], "k": arrays["k"][i]} for i in range(n)]
        return Batch(items, packed), arrays

    def _common_out_shape(self, clips: Clips) -> tuple[int, ...] | None:
        """The one shape every sample's views take (None when they differ, e.g. no temporal
        resize, or the augmentation is a plain function)."""
        if not isinstance(self.augment, BatchAugmentation):
            return None
        shapes = {self.augment.out_shape(clips.shape(i)) for i in range(len(clips))}
        return shapes.pop() if len(shapes) == 1 else None

    @staticmethod
    def _split_key(key: Any) -> tuple[int, int]:
        if isinstance(key, tuple | list):
            return int(key[0]), int(key[1])
        return int(key), 0

    def __getitem__(self, key: Any) -> dict[str, Any]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: Sequence[Any]) -> list[dict[str, Any]]:
        """Batch fetch (called by the DataLoader's fetcher): one store read for the whole batch."""
        pairs = [self._split_key(k) for k in keys]
        positions = np.array([p for p, _ in pairs], dtype=np.int64)
        if self.mode == "train" and pairs and self.fused is not None:
            batch = self._augment_fused(pairs, positions)
            if batch is not None:
                return batch
        clips = self._read_clips(positions)
        if self.mode == "train" and len(pairs):
            shape = self._common_out_shape(clips)
            if shape is not None and self.batch_augment:
                return self._augment_batch(pairs, positions, clips, self.augment)  # type: ignore[arg-type]
            if shape is not None:
                return self._augment_each(pairs, positions, clips, shape)
        return [self._make(p, e, np.ascontiguousarray(clips.clip(i)))
                for i, (p, e) in enumerate(pairs)]


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The concatenation of arange(lo[i], hi[i]) over i, int64."""
    lengths = np.asarray(hi, np.int64) - np.asarray(lo, np.int64)
    starts = np.cumsum(lengths) - lengths
    return (np.arange(int(lengths.sum()), dtype=np.int64)
            + np.repeat(np.asarray(lo, np.int64) - starts, lengths))


class EpochSampler(Sampler[tuple[int, int]]):
    """A DistributedSampler's order (also for one process), each position tagged with the epoch
    (the dataset draws its augmentation from (sample, epoch))."""

    def __init__(self, dataset: Dataset, *, shuffle: bool, seed: int, drop_last: bool,
                 num_replicas: int = 1, rank: int = 0) -> None:
        self.positions = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank,
                                            shuffle=shuffle, seed=seed, drop_last=drop_last)

    @property
    def epoch(self) -> int:
        return int(self.positions.epoch)

    def set_epoch(self, epoch: int) -> None:
        self.positions.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.positions)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        for pos in self.positions:
            yield (int(pos), epoch)


class Batch(list):
    """The items of one fetch (per-sample dicts, as ever) whose values are rows of one buffer
    (``packed``, :class:`PackedBatch`): ``collate`` hands that on as it is, so a worker sends
    one block, already in shared memory, instead of stacking copies that are then copied
    again."""

    def __init__(self, items: list[dict[str, Any]], packed: PackedBatch) -> None:
        super().__init__(items)
        self.packed = packed


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    if isinstance(items, Batch):
        return items.packed
    out: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if isinstance(values[0], np.ndarray):
            out[key] = torch.from_numpy(np.stack(values))
        elif key == "gamma":
            out[key] = torch.tensor(np.asarray(values, np.float32))
        else:
            out[key] = torch.tensor(values, dtype=torch.int64)
    return out


def _seed_worker(worker_id: int) -> None:
    # Per-worker global seeds for anything that bypasses the per-sample RNG.
    info = torch.utils.data.get_worker_info()
    base = info.seed if info is not None else worker_id
    np.random.seed(base % 2**32)
    torch.manual_seed(base)
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
                num_workers: int = 2, start_method: str = "forkserver", pin_memory: bool = False,
                prefetch_factor: int = 4, num_replicas: int = 1, rank: int = 0
                ) -> tuple[DataLoader, EpochSampler]:
    """A DataLoader with persistent spawn/forkserver workers and an epoch-aware sampler.

    Call ``sampler.set_epoch(e)`` before iterating epoch ``e``. A training batch from a worker
    is a :class:`PackedBatch`: call ``packed.release(batch)`` once its step is done, so that the
    worker reuses its buffer (without, it allocates a new one for each batch).
    """
    if isinstance(dataset, SkeletonDataset):
        # A worker has at most ``prefetch_factor`` batches queued, one in the training step and
        # one being pinned: beyond that a held slot only means a fresh buffer, never a reuse.
        dataset.slot_count = prefetch_factor + 2
    sampler = EpochSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last,
                           num_replicas=num_replicas, rank=rank)
    # A private generator keeps the loader from consuming the global torch RNG (exact resume).
    generator = torch.Generator().manual_seed(seed)
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(multiprocessing_context=start_method, persistent_workers=True,
                      prefetch_factor=prefetch_factor, worker_init_fn=_seed_worker)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate, pin_memory=pin_memory, drop_last=drop_last,
                        generator=generator, **kwargs)
    return loader, sampler


def build_augment(steps: list[dict[str, Any]]) -> Augment | None:
    """The augmentation pipeline of a config's ``data.augment`` list (None when empty)."""
    return build_augmentations(steps) if steps else None


def write_random_walk_store(path: str | Path, *, classes: int = 4, per_class: int = 8,
                            frames: tuple[int, int] = (30, 90), seed: int = 0,
                            modalities: tuple[str, ...] = ("joint",), layout: Any = None,
                            noise: float = 0.3) -> Path:
    """A small store of class-patterned random walks, for tests and benchmarks without skelprep.

    Each class is a fixed set of per-joint sinusoids; every sample adds a random speed, phase,
    scale, rotation about the vertical axis and a random walk of amplitude ``noise``. Protocol
    ``xsub`` splits even/odd subjects; the fixed modalities are the joints resized to 50 frames
    (every listed modality gets the joints: enough for loaders, not a substitute for skelprep).
    """
    layout = layout or NTU25
    v, m, fixed_frames = layout.num_joints, MAX_BODIES, FIXED_FRAMES
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.5, 3.0, size=(classes, 3, v))
    amp = rng.uniform(0.0, 0.5, size=(classes, 3, v)) * (rng.random((classes, 1, v)) < 0.4)
    phase = rng.uniform(0, 2 * np.pi, size=(classes, 3, v))
    rest = rng.normal(0, 0.3, size=(3, v))
    raw, fixed, cols = [], [], {k: [] for k in ("name", "label", "subject", "camera", "setup",
                                                 "replication", "num_frames", "num_bodies",
                                                 "gamma")}
    split = []
    for c in range(classes):
        for r in range(per_class):
            t = int(rng.integers(frames[0], frames[1] + 1))
            time = np.linspace(0, 1, t) * rng.uniform(0.7, 1.4) + rng.uniform(0, 0.3)
            motion = amp[c][..., None] * np.sin(2 * np.pi * freq[c][..., None] * time
                                                + phase[c][..., None])  # (3, V, T)
            walk = np.cumsum(rng.normal(0, noise / np.sqrt(t), size=(3, v, t)), axis=-1)
            body = (rest[..., None] + motion) * rng.uniform(0.8, 1.2) + walk
            a = rng.uniform(-0.5, 0.5)
            rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
            body = np.einsum("ij,jvt->ivt", rot, body).astype(np.float32)
            x = np.zeros((3, t, v, m), np.float32)
            x[..., 0] = body.transpose(0, 2, 1)
            raw.append(np.ascontiguousarray(x.transpose(1, 0, 2, 3)))
            fixed.append(resize_time(x, fixed_frames))
            subject = r % 4 + 1
            cols["name"].append(f"S001C001P{subject:03d}R{r:03d}A{c + 1:03d}")
            cols["label"].append(c)
            cols["subject"].append(subject)
            cols["camera"].append(1)
            cols["setup"].append(1)
            cols["replication"].append(r)
            cols["num_frames"].append(t)
            cols["num_bodies"].append(1)
            cols["gamma"].append(t / fixed_frames)
            split.append(0 if subject % 2 == 1 else 1)
    writer = StoreWriter.create(
        path, dataset="randomwalk", layout=layout, frames=fixed_frames, max_bodies=m,
        modalities=modalities, normalisation={"kind": "none"}, source={"generator": "random walk",
                                                                       "seed": seed},
        protocols=["xsub"], overwrite=True)
    fixed_arr = np.stack(fixed)
    writer.append(SampleBatch(
        columns={k: np.asarray(vals) for k, vals in cols.items()},
        splits={"xsub": np.asarray(split, np.int8)}, raw=raw,
        fixed={mod: fixed_arr for mod in modalities}))
    writer.finalize({"samples": len(raw)})
    return Path(path)
