"""Training-loader throughput: augmented samples/s of CMD's 64-frame joint views, ours against a
feeder in the authors' style, on the same store, side by side, for 1 and 2 workers.

    python bench/loader.py [--store STORE.zarr] [--protocol xsub] [--workers 1 2] [--batches 40]
                           [--repeats 2]

First a breakdown of CPU per sample in one process (the raw frames' read by zarr, from the shard
files, with every chunk cached, from ``data.raw_cache``; a whole training fetch with the kernel,
with the kernel from raw_cache, and per sample; the collate), then the loaders side by side,
interleaved, best of ``--repeats`` runs. Ours: ``SkeletonDataset`` (one read per batch of the raw
frames, per-sample uniform streams) with CMD's published ``data.augment`` (crop-resize to 64
frames with the 300-frame cap, then shear or joint corruption): the default (direct shard reads,
both views of the batch by the numba kernel in the workers, one reused shared-memory buffer per
batch), with ``data.raw_cache`` (a decompressed memory-mapped copy of the side), one sample at a
time (``fused=False``: the path before the kernel), and with the arithmetic in the training
process (workers only read; the kernel runs where a GPU would run it, here on the main process's
CPU). Each batch is released after it is counted, as the engine releases it after its step.

The authors' style (CMD's ``feeder/feeder_pretraining_intra.py`` with ``feeder/augmentations.py``,
re-written here, not copied): the clips padded to 300 frames in one numpy array on disk, opened
with ``mmap_mode="r"``, and per sample in ``Dataset.__getitem__``: crop-resize through torch's
bilinear ``F.interpolate``, then corruption (p 0.5) or shear by ``np.dot``, twice; the default
collate. Its array is made from the same store before timing (not timed).

Each sample yields two views, so samples/s counts pairs of views. Without --store a synth store
is built (``skelprep synth`` + ``skelprep build``) in a temporary folder, or a random-walk store
when skelprep is unavailable. Targets on the 2-core development machine: >= 2,000 samples/s with
2 workers, >= 3x the authors' style.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from skelkit.store.reader import open_store  # noqa: E402
from skelkit.train.data import (  # noqa: E402
    SkeletonDataset,
    build_augment,
    collate,
    make_loader,
    read_side_meta,
    write_random_walk_store,
)
from skelkit.train.draws import uniforms  # noqa: E402
from skelkit.train.packed import release  # noqa: E402

CMD_AUGMENT = [
    {"name": "temporal_crop_resize", "window": 64, "min_ratio": 0.1, "max_ratio": 1.0,
     "min_frames": 64, "max_frames": 300},
    {"name": "shear_or_corrupt", "p": 0.5, "amplitude": 1.0, "num_joints": 15},
]
MAX_FRAMES = 300


def synth_store(folder: Path) -> Path:
    """A default ntu60 synth store via the skelprep CLI, or a random-walk store without it."""
    raw, store = folder / "raw", folder / "synth.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        for args in (["synth", "--dataset", "ntu60", "--out", str(raw)],
                     ["build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(store)]):
            subprocess.run([sys.executable, "-m", "skelkit.prep.cli", *args], check=True,
                           env=env, capture_output=True, text=True)
        return store
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"skelprep unavailable ({exc.__class__.__name__}); using a random-walk store",
              file=sys.stderr)
        return write_random_walk_store(store, classes=20, per_class=60, frames=(40, 110))


# --- the authors' style ---------------------------------------------------------------------------

def padded_array(store_path: Path, protocol: str, out: Path) -> tuple[Path, np.ndarray]:
    """The train side as the authors keep it: (N, 3, 300, V, M) float32, zero-padded, in an .npy
    file, and the valid frame counts."""
    store = open_store(store_path)
    meta = read_side_meta(store, protocol, "train")
    raw = store.group["raw/joint"]
    v, m = raw.shape[2], raw.shape[3]
    data = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32,
                                     shape=(len(meta.indices), 3, MAX_FRAMES, v, m))
    frames = np.zeros(len(meta.indices), np.int64)
    for i, row in enumerate(meta.indices):
        lo, hi = int(meta.offsets[row]), int(meta.offsets[row + 1])
        n = min(hi - lo, MAX_FRAMES)
        data[i, :, :n] = np.asarray(raw[lo:lo + n]).transpose(1, 0, 2, 3)
        frames[i] = n
    data.flush()
    return out, frames


def authors_crop_resize(x: np.ndarray, num_frames: int, window: int = 64) -> np.ndarray:
    """Crop ratio U[0.1, 1] of the valid frames (at least 64), a uniform start, then torch's
    bilinear interpolation of the (C V M, L) plane to ``window`` columns."""
    c, _, v, m = x.shape
    ratio = np.random.rand(1) * 0.9 + 0.1
    length = int(min(max(int(np.floor(num_frames * ratio[0])), 64), num_frames))
    start = np.random.randint(0, num_frames - length + 1)
    clip = torch.tensor(x[:, start:start + length], dtype=torch.float)
    plane = clip.permute(0, 2, 3, 1).contiguous().view(c * v * m, length)[None, :, :, None]
    plane = F.interpolate(plane, size=(window, 1), mode="bilinear", align_corners=False)
    return plane.squeeze(3).squeeze(0).view(c, v, m, window).permute(0, 3, 1, 2).numpy()


def authors_shear(x: np.ndarray) -> np.ndarray:
    s = np.array([[1, random.uniform(-1, 1), random.uniform(-1, 1)],
                  [random.uniform(-1, 1), 1, random.uniform(-1, 1)],
                  [random.uniform(-1, 1), random.uniform(-1, 1), 1]])
    return np.dot(x.copy().transpose(1, 2, 3, 0), s.T).transpose(3, 0, 1, 2)  # S x per point


def authors_corruption(x: np.ndarray) -> np.ndarray:
    out = x.copy()
    joints = np.random.choice(x.shape[2], 15, replace=False)
    if random.random() < 0.5:
        out[:, :, joints] = 0
        return out
    c = np.array([[random.uniform(-1, 1) for _ in range(3)] for _ in range(3)])
    mixed = np.dot(out[:, :, joints].transpose(1, 2, 3, 0), c)
    out[:, :, joints] = mixed.transpose(3, 0, 1, 2)
    return out


class AuthorsStyleFeeder(Dataset):
    """Two views per clip from the in-memory (memory-mapped) padded array, one sample at a time."""

    def __init__(self, npy: Path, frames: np.ndarray) -> None:
        self.npy, self.frames = npy, frames
        self.data: Any = None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self.data is None:
            self.data = np.load(self.npy, mmap_mode="r")
        x = np.array(self.data[index])
        views = []
        for _ in range(2):
            view = authors_crop_resize(x, int(self.frames[index]))
            view = authors_corruption(view) if random.random() < 0.5 else authors_shear(view)
            views.append(view.astype(np.float32))
        return views[0], views[1]


# --- timing -------------------------------------------------------------------------------------

def _worker_cpu_seconds() -> float:
    """CPU seconds used so far by this process's children (the loader workers)."""
    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def time_loader(loader: Any, set_epoch: Any, batches: int) -> dict[str, float]:
    """Samples/s over ``batches`` batches after the first (worker start-up excluded), and the
    CPU time per sample of the workers and of this (the training) process."""
    first = cpu0 = main0 = None
    count = seen = epoch = 0
    while seen < batches + 1:
        set_epoch(epoch)
        for batch in loader:
            if first is None:
                first, cpu0, main0 = (time.perf_counter(), _worker_cpu_seconds(),
                                      time.process_time())
            else:
                count += len(batch["q"] if isinstance(batch, dict) else batch[0])
            release(batch)  # as the engine does after its step: the worker may reuse the buffer
            seen += 1
            if seen >= batches + 1:
                break
        epoch += 1
    elapsed = time.perf_counter() - first
    return {"samples_per_s": count / elapsed,
            "cpu_ms": 1e3 * (_worker_cpu_seconds() - cpu0) / max(count, 1),
            "main_ms": 1e3 * (time.process_time() - main0) / max(count, 1)}


def ours(store: Path, protocol: str, workers: int, batch_size: int, batches: int,
         start_method: str, **dataset_options: Any) -> dict[str, float]:
    dataset = SkeletonDataset(store, protocol, "train", kind="sequence", mode="train",
                              augment=build_augment(CMD_AUGMENT), window=64, seed=0,
                              **dataset_options)
    loader, sampler = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=0,
                                  drop_last=True, num_workers=workers, start_method=start_method)
    result = time_loader(loader, sampler.set_epoch, batches)
    del loader
    return result


class ReadOnly(Dataset):
    """The other placement: workers only read the frames; the training process draws the
    streams and runs the kernel - where a GPU would run the arithmetic."""

    def __init__(self, dataset: SkeletonDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, keys: list[Any]) -> dict[str, Any]:
        pairs = [self.dataset._split_key(k) for k in keys]
        positions = np.array([p for p, _ in pairs], np.int64)
        source, index, lengths = self.dataset._read_frames(positions)
        # A tensor crosses to the training process in shared memory (a numpy array is pickled);
        # a copy, as the read's buffer is reused by the next read.
        return {"source": torch.from_numpy(source.copy()), "index": torch.from_numpy(index),
                "lengths": lengths, "rows": self.dataset.meta.indices[positions],
                "epochs": np.array([e for _, e in pairs], np.int64)}


def as_is(batch: Any) -> Any:
    return batch


def _augmented(loader: DataLoader, dataset: SkeletonDataset) -> Any:
    fused = dataset.fused
    assert fused is not None
    for batch in loader:
        source, lengths = batch["source"].numpy(), batch["lengths"]
        width = fused.width(source.shape[2])
        u = uniforms(dataset.seed, batch["epochs"], batch["rows"], 2 * width)
        views = {}
        for i, view in enumerate(("q", "k")):
            out = np.empty((len(lengths), 3, 64, *source.shape[2:]), np.float32)
            fused.render(source, batch["index"].numpy(), lengths,
                         u[:, i * width:(i + 1) * width], out)
            views[view] = torch.from_numpy(out)
        yield views


class _InMain:
    """Iterates a read-only loader, augmenting each batch in this process."""

    def __init__(self, loader: DataLoader, dataset: SkeletonDataset) -> None:
        self.loader, self.dataset = loader, dataset

    def __iter__(self) -> Any:
        return _augmented(self.loader, self.dataset)


def augment_in_main(store: Path, protocol: str, workers: int, batch_size: int, batches: int,
                    start_method: str) -> dict[str, float]:
    dataset = SkeletonDataset(store, protocol, "train", kind="sequence", mode="train",
                              augment=build_augment(CMD_AUGMENT), window=64, seed=0)
    loader, sampler = make_loader(ReadOnly(dataset), batch_size=batch_size, shuffle=True, seed=0,
                                  drop_last=True, num_workers=workers, start_method=start_method)
    loader.collate_fn = as_is
    result = time_loader(_InMain(loader, dataset), sampler.set_epoch, batches)
    del loader
    return result


def authors(npy: Path, frames: np.ndarray, workers: int, batch_size: int,
            batches: int) -> dict[str, float]:
    loader = DataLoader(AuthorsStyleFeeder(npy, frames), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, persistent_workers=True,
                        worker_init_fn=lambda _: torch.set_num_threads(1))
    result = time_loader(loader, lambda _: None, batches)
    del loader
    return result


def _cpu_ms(fn: Any, items: list[Any], per: int) -> float:
    fn(items[0])  # opens files, warms caches
    start = time.process_time()
    for item in items:
        fn(item)
    return 1e3 * (time.process_time() - start) / (per * len(items))


def breakdown(store: Path, protocol: str, batch_size: int, batches: int,
              cache: Path) -> dict[str, float]:
    """CPU ms per sample, in this process, on the same batches: the raw frames' read by zarr,
    from the shard files (the default), from the shard files with every chunk already decoded
    (a per-worker chunk cache that always hits: its upper bound), from ``data.raw_cache``; a
    whole training fetch (read, draws, both views) with the kernel (the default), with the
    kernel from raw_cache, and one sample at a time (before the kernel); the collate."""
    options = {"zarr": {"shard_reads": False}, "shards": {}, "raw_cache": {"raw_cache": cache},
               "per sample": {"fused": False}}
    sets = {name: SkeletonDataset(store, protocol, "train", kind="sequence", mode="train",
                                  augment=build_augment(CMD_AUGMENT), window=64, seed=0, **kw)
            for name, kw in options.items()}
    rng = np.random.default_rng(0)
    n = len(sets["shards"])
    keys = [[(int(p), 0) for p in rng.permutation(n)[:batch_size]] for _ in range(batches)]
    positions = [np.array([p for p, _ in k]) for k in keys]
    out = {f"read {name}": _cpu_ms(sets[name]._read_frames, positions, batch_size)
           for name in ("zarr", "shards", "raw_cache")}
    dataset = sets["shards"]
    reader = dataset._reader("raw/joint")
    if reader is not None:
        reader.cache_chunks = 1 << 30
        out["read shards, chunks cached"] = _cpu_ms(dataset._read_frames,
                                                    positions * 2, batch_size)
        reader.cache_chunks = 0
        reader._cache.clear()
    for name, label in (("shards", "kernel"), ("raw_cache", "kernel + raw_cache"),
                        ("per sample", "per sample")):
        out[f"fetch, {label}"] = _cpu_ms(sets[name].__getitems__, keys, batch_size)
    items = [dataset.__getitems__(k) for k in keys]
    out["collate"] = _cpu_ms(collate, items, batch_size)
    return out


def cpu_bound(result: dict[str, float], workers: int, cores: int) -> float:
    """Samples/s the measured CPU per sample allows with ``workers`` workers on ``cores`` idle
    cores: each worker, the training process, and all of them together on the cores."""
    worker, main = result["cpu_ms"] / 1e3, result["main_ms"] / 1e3
    return min(workers / worker, 1 / max(main, 1e-9), cores / (worker + main))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--protocol", default="xsub")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--start-method", default="forkserver", choices=["forkserver", "spawn"])
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of every loader, interleaved; the best one is shown (a shared "
                             "machine's load only ever slows a run down)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or synth_store(Path(tmp))
        npy, frames = padded_array(store, args.protocol, Path(tmp) / "train_data.npy")
        cache = Path(tmp) / "cache"
        raw = open_store(store).group["raw/joint"]
        print(f"store {store}: train side {len(frames)} clips, raw frames chunked "
              f"{raw.chunks[0]} per chunk, {getattr(raw, 'shards', None) and raw.shards[0]} per "
              f"shard; batch {args.batch_size}, {args.batches} timed batches")
        print(f"before: {uptime()}")
        parts = breakdown(store, args.protocol, args.batch_size, min(args.batches, 10), cache)
        print("CPU ms/sample in one process: " + ", ".join(f"{k} {v:.3f}"
                                                           for k, v in parts.items()), flush=True)
        loaders: dict[str, Any] = {
            "ours, default (kernel, shard reads)": lambda w: ours(
                store, args.protocol, w, args.batch_size, args.batches, args.start_method),
            "ours, kernel + data.raw_cache (mmap)": lambda w: ours(
                store, args.protocol, w, args.batch_size, args.batches, args.start_method,
                raw_cache=cache),
            "ours, per sample (before the kernel)": lambda w: ours(
                store, args.protocol, w, args.batch_size, args.batches, args.start_method,
                fused=False),
            "ours, kernel in the main process": lambda w: augment_in_main(
                store, args.protocol, w, args.batch_size, args.batches, args.start_method),
            "authors' style": lambda w: authors(npy, frames, w, args.batch_size, args.batches),
        }
        rows: dict[str, dict[int, dict[str, float]]] = {name: {} for name in loaders}
        cores = os.cpu_count() or 1
        for workers in args.workers:  # side by side: the loaders run back to back
            for _ in range(args.repeats):
                for name, run in loaders.items():
                    result = run(workers)
                    best = rows[name].get(workers)
                    if best is None or result["samples_per_s"] > best["samples_per_s"]:
                        rows[name][workers] = result
            theirs = rows["authors' style"][workers]["samples_per_s"]
            print(f"{workers} worker(s), best of {args.repeats}: samples/s (CPU ms/sample: "
                  "workers, training process), ratio to authors', the bound that CPU sets on "
                  f"an idle {cores}-core machine")
            for name, by_workers in rows.items():
                r = by_workers[workers]
                print(f"  {name:38s} {r['samples_per_s']:6.0f}  ({r['cpu_ms']:.3f}, "
                      f"{r['main_ms']:.3f})  {r['samples_per_s'] / theirs:.2f}x  "
                      f"bound {cpu_bound(r, workers, cores):6.0f}", flush=True)
        if len(args.workers) > 1:
            w1, w2 = args.workers[0], args.workers[-1]
            print(f"scaling {w1} -> {w2} workers: " + ", ".join(
                f"{name} {r[w2]['samples_per_s'] / r[w1]['samples_per_s']:.2f}x"
                for name, r in rows.items()))
        print(f"after: {uptime()}")


if __name__ == "__main__":
    main()
