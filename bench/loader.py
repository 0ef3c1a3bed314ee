"""Training-loader throughput: augmented samples/s of CMD's 64-frame joint views.

    python bench/loader.py [--store STORE.zarr] [--protocol xsub] [--workers 2] [--batches 60]

Without --store it builds a synth store (``skelprep synth`` + ``skelprep build``) in a temporary
folder, falling back to a random-walk store when skelprep is unavailable. Each sample yields two
views (temporal crop-resize to 64 frames, then shear or joint corruption), so samples/s counts
pairs of views. Target on the 2-core development machine: >= 2,000 samples/s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from skelkit.train.data import (  # noqa: E402
    SkeletonDataset,
    build_augment,
    make_loader,
    write_random_walk_store,
)

CMD_AUGMENT = [
    {"name": "temporal_crop_resize", "window": 64, "min_ratio": 0.1, "max_ratio": 1.0,
     "min_frames": 64},
    {"name": "shear_or_corrupt", "p": 0.5, "amplitude": 1.0, "num_joints": 15},
]


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


def measure(store: Path, protocol: str, workers: int, batch_size: int, batches: int,
            start_method: str) -> dict[str, float]:
    dataset = SkeletonDataset(store, protocol, "train", kind="sequence", mode="train",
                              augment=build_augment(CMD_AUGMENT), window=64, seed=0)
    loader, sampler = make_loader(dataset, batch_size=batch_size, shuffle=True, seed=0,
                                  drop_last=True, num_workers=workers, start_method=start_method)
    t_start = time.perf_counter()
    first = None
    count = seen = epoch = 0
    while seen < batches:
        sampler.set_epoch(epoch)
        for batch in loader:
            if first is None:  # worker start-up is excluded from the rate
                first = time.perf_counter()
                cpu0 = _worker_cpu_seconds()
            else:
                count += batch["q"].shape[0]
            seen += 1
            if seen >= batches:
                break
        epoch += 1
    elapsed = time.perf_counter() - (first or t_start)
    cpu = _worker_cpu_seconds() - cpu0
    return {"samples_per_s": count / elapsed, "worker_cpu_s_per_sample": cpu / max(count, 1), "samples": count, "seconds": elapsed,
            "startup_s": (first or t_start) - t_start, "train_samples": len(dataset)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--protocol", default="xsub")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--start-method", default="forkserver", choices=["forkserver", "spawn"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or synth_store(Path(tmp))
        result = measure(store, args.protocol, args.workers, args.batch_size, args.batches,
                         args.start_method)
    print(f"loader: {result['samples_per_s']:.0f} augmented samples/s "
          f"({args.workers} workers, batch {args.batch_size}, 64-frame joint views; "
          f"{result['samples']} samples in {result['seconds']:.2f} s after "
          f"{result['startup_s']:.1f} s start-up; train side {result['train_samples']})")
    per_sample = result["worker_cpu_s_per_sample"]
    if per_sample > 0:
        # On a shared machine the wall-clock rate depends on the neighbours; the workers' own
        # CPU time gives the rate the same workers reach with their cores to themselves.
        print(f"worker CPU {1e3 * per_sample:.3f} ms/sample -> "
              f"{args.workers / per_sample:.0f} samples/s with {args.workers} dedicated cores")


if __name__ == "__main__":
    main()
