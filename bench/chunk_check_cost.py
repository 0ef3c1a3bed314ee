"""Cost of the chunk-existence check `skeltrain run` makes at start (and `skelprep verify`
first): a store with NTU-120's file layout, 6 fixed modalities of 114688 samples (448 shard files
each) and 9.2M raw frames (562 shard files), is listed and every shard index read.

    python bench/chunk_check_cost.py [--folder /tmp]

One shard of each array is written; the others are hard links to it (no disk used), so the
index reads hit the page cache: a warm-cache time; a cold disk adds one small read per shard.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from skelkit.store.chunks import checksummed, store_missing_chunks, write_every_chunk
from skelkit.store.writer import consolidate

SAMPLES, FRAMES, V, M = 114_688, 9_200_000, 25, 2


def build(root: Path) -> int:
    group = zarr.create_group(str(root), zarr_format=3)
    codec = checksummed([BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")])
    rng = np.random.default_rng(0)
    with write_every_chunk():
        arrays = {f"fixed/m{i}": group.create_array(
            f"fixed/m{i}", shape=(SAMPLES, 3, 50, V, M), dtype="float32",
            chunks=(8, 3, 50, V, M), shards=(256, 3, 50, V, M), compressors=codec)
            for i in range(6)}
        arrays["raw/joint"] = group.create_array(
            "raw/joint", shape=(FRAMES, 3, V, M), dtype="float32", chunks=(256, 3, V, M),
            shards=(16384, 3, V, M), compressors=codec)
        for name, array in arrays.items():
            unit = array.shards[0]
            array[0:unit] = rng.normal(size=(unit, *array.shape[1:])).astype(np.float32)
            first = root / name / array.metadata.encode_chunk_key((0,) * array.ndim)
            for i in range(1, -(-array.shape[0] // unit)):
                key = array.metadata.encode_chunk_key((i,) + (0,) * (array.ndim - 1))
                (root / name / key).parent.mkdir(parents=True, exist_ok=True)
                os.link(first, root / name / key)
    consolidate(root)
    return sum(1 for p in root.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=None)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.folder)) / "layout.zarr"
    try:
        files = build(root)
        for attempt in range(3):
            started = time.perf_counter()
            problems = store_missing_chunks(root, zarr.open_group(str(root), mode="r"))
            print(f"attempt {attempt}: {files} files, check {time.perf_counter() - started:.2f} s, "
                  f"{len(problems)} problems")
    finally:
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
