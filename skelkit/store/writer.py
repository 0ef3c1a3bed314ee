"""Writes stores (docs/design.md §4.1-4.3) in appended batches, resumable, with `complete` set last."""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

from skelkit import __version__
from skelkit.failpoints import failpoint
from skelkit.store.chunks import checksummed, write_every_chunk
from skelkit.store.durable import DiskFullError, disk_full_is_one_line, fsync_dir
from skelkit.store.errors import StoreError
from skelkit.store.layout import Layout
from skelkit.store.schema import FORMAT, SAMPLE_COLUMNS, VERSION


@dataclass
class SampleBatch:
    """Consecutive samples ready to append. ``raw[i]`` is (T_i, 3, V, M); fixed arrays are (n, 3, F, V, M)."""

    columns: dict[str, np.ndarray]
    splits: dict[str, np.ndarray]
    raw: list[np.ndarray]
    fixed: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)


def _fast_codec() -> list[object]:
    # Byte-shuffled LZ4: joint coordinates compress as well as with zstd at a fraction of the CPU,
    # and the writes are the largest cost of a build. The CRC-32C last: a flipped byte is an
    # error on read (store format 2).
    return checksummed([BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")])


def _column_codec() -> list[object]:
    return checksummed([ZstdCodec()])


def consolidate(path: str | Path) -> None:
    with warnings.catch_warnings():
        # zarr warns that consolidated metadata is not in the v3 spec; the contract asks for it.
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))


STAGING_SUFFIX = ".creating"


def store_build_id(path: str | Path) -> str | None:
    """The ``build_id`` a store was created with (a new one at every creation or
    ``--overwrite``; a resumed build keeps it); None for a store without one, and ``"missing"``
    when no store can be read at ``path`` (removed, or being recreated). Cheap: one small read."""
    try:
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
        value = group.attrs.get("build_id")
    except Exception:  # any unreadable state means: not the store the caller opened
        return "missing"
    return None if value is None else str(value)


class StoreWriter:
    """Append-only writer. Progress is committed after each batch so a killed build can resume."""

    def __init__(self, path: str | Path, group: zarr.Group) -> None:
        self.path = Path(path)
        self.group = group
        self.modalities: tuple[str, ...] = tuple(group.attrs["modalities"])
        self.protocols: tuple[str, ...] = tuple(group.attrs["protocols"])
        self._n_samples = int(group.attrs.get("progress", {}).get("n_samples", 0))
        self._n_frames = int(group.attrs.get("progress", {}).get("n_frames", 0))

    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        dataset: str,
        layout: Layout,
        frames: int,
        max_bodies: int,
        modalities: tuple[str, ...] | list[str],
        normalisation: dict[str, Any],
        source: dict[str, Any],
        protocols: list[str],
        overwrite: bool = False,
        chunk_samples: int = 8,
        shard_samples: int = 256,
        chunk_frames: int = 256,
        shard_frames: int = 16384,
    ) -> StoreWriter:
        path = Path(path)
        if path.exists() and not overwrite:
            raise StoreError(f"{path} already exists (use --resume or --overwrite)")
        # Everything is created in a staging folder renamed into place at the end, so a kill at
        # any moment of creation leaves either no store or a complete empty one that --resume
        # continues (attributes written one by one once left stores --resume could not open).
        staging = path.with_name(path.name + STAGING_SUFFIX)
        if staging.exists():
            shutil.rmtree(staging)  # a creation a kill interrupted (the caller holds the lock)
        attributes = {
            "format": FORMAT,
            "version": VERSION,
            "dataset": dataset,
            "layout": layout.to_attrs(),
            "max_bodies": max_bodies,
            "frames": frames,
            "normalisation": normalisation,
            "modalities": list(modalities),
            "protocols": list(protocols),
            "source": source,
            "created_by": f"skelkit {__version__}",
            "build_id": uuid.uuid4().hex,  # readers notice a store replaced under them
            "complete": False,
            "progress": {"n_samples": 0, "n_frames": 0},
        }
        try:
            with write_every_chunk(), disk_full_is_one_line(path, then="rerun"):
                cls._create_arrays(staging, attributes, layout, frames, max_bodies, modalities,
                                   protocols, chunk_samples, shard_samples, chunk_frames,
                                   shard_frames)
        except DiskFullError:
            shutil.rmtree(staging, ignore_errors=True)  # no half-created store is left
            raise
        failpoint("store-create-arrays")
        if path.exists():
            shutil.rmtree(path)  # --overwrite: a kill from here to the rename leaves no store
        failpoint("store-create-removed-old")
        os.rename(staging, path)
        fsync_dir(path.parent)
        failpoint("store-create-renamed")
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        return cls(path, group)

    @staticmethod
    def _create_arrays(staging: Path, attributes: dict[str, Any], layout: Layout, frames: int,
                       max_bodies: int, modalities: tuple[str, ...] | list[str],
                       protocols: list[str], chunk_samples: int, shard_samples: int,
                       chunk_frames: int, shard_frames: int) -> None:
        v, m = layout.num_joints, max_bodies
        group = zarr.create_group(str(staging), zarr_format=3, attributes=attributes)
        failpoint("store-create-attrs")
        for name, dtype in SAMPLE_COLUMNS.items():
            group.create_array(f"samples/{name}", shape=(0,), dtype=dtype, chunks=(4096,),
                               compressors=_column_codec())
        for p in protocols:
            group.create_array(f"splits/{p}", shape=(0,), dtype="int8", chunks=(4096,),
                               compressors=_column_codec())
        group.create_array(
            "raw/joint", shape=(0, 3, v, m), dtype="float32",
            chunks=(chunk_frames, 3, v, m), shards=(shard_frames, 3, v, m),
            compressors=_fast_codec(),
        )
        offsets = group.create_array("raw/offsets", shape=(1,), dtype="int64", chunks=(4096,),
                                     compressors=_column_codec())
        offsets[:] = np.zeros(1, dtype=np.int64)
        for mod in modalities:
            group.create_array(
                f"fixed/{mod}", shape=(0, 3, frames, v, m), dtype="float32",
                chunks=(chunk_samples, 3, frames, v, m), shards=(shard_samples, 3, frames, v, m),
                compressors=_fast_codec(),
            )

    @classmethod
    def resume(cls, path: str | Path) -> StoreWriter:
        """Reopen an incomplete store and cut every array back to the last committed batch."""
        path = Path(path)
        if not path.exists():
            raise StoreError(f"{path}: nothing to resume")
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        if group.attrs.get("complete"):
            raise StoreError(f"{path} is already complete")
        for leftover in path.rglob("*.partial"):  # temp files of writes cut off by a kill
            leftover.unlink(missing_ok=True)
        writer = cls(path, group)
        with write_every_chunk():
            writer._truncate()
        return writer

    def _truncate(self) -> None:
        n, f = self._n_samples, self._n_frames
        for name in SAMPLE_COLUMNS:
            self.group[f"samples/{name}"].resize((n,))
        for p in self.protocols:
            self.group[f"splits/{p}"].resize((n,))
        raw = self.group["raw/joint"]
        raw.resize((f, *raw.shape[1:]))
        self.group["raw/offsets"].resize((n + 1,))
        for mod in self.modalities:
            arr = self.group[f"fixed/{mod}"]
            arr.resize((n, *arr.shape[1:]))

    @property
    def progress(self) -> dict[str, Any]:
        return dict(self.group.attrs.get("progress", {}))

    @property
    def n_samples(self) -> int:
        return self._n_samples

    def append(self, batch: SampleBatch) -> None:
        # The arrays are opened inside, so they take the setting. A full disk part way leaves
        # a batch that was never committed: --resume cuts it off (zarr writes every chunk under
        # a temporary name and removes it when the write fails).
        with write_every_chunk(), disk_full_is_one_line(self.path):
            self._append(batch)

    def _append(self, batch: SampleBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        missing = set(SAMPLE_COLUMNS) - set(batch.columns)
        if missing:
            raise StoreError(f"batch lacks columns {sorted(missing)}")
        if set(batch.splits) != set(self.protocols):
            raise StoreError(f"batch splits {sorted(batch.splits)} != store {list(self.protocols)}")
        if set(batch.fixed) != set(self.modalities):
            raise StoreError(f"batch modalities {sorted(batch.fixed)} != {list(self.modalities)}")
        for name, dtype in SAMPLE_COLUMNS.items():
            col = np.asarray(batch.columns[name])
            if len(col) != n:
                raise StoreError(f"column {name} has {len(col)} rows for {n} samples")
            self.group[f"samples/{name}"].append(col if dtype is str else col.astype(dtype))
        for p in self.protocols:
            self.group[f"splits/{p}"].append(np.asarray(batch.splits[p], dtype=np.int8))
        lengths = np.array([r.shape[0] for r in batch.raw], dtype=np.int64)
        self.group["raw/joint"].append(np.concatenate(batch.raw, axis=0).astype(np.float32))
        offsets = self._n_frames + np.cumsum(lengths)
        self.group["raw/offsets"].append(offsets)
        failpoint("store-append")  # fault injection: half a batch written
        for mod in self.modalities:
            self.group[f"fixed/{mod}"].append(np.asarray(batch.fixed[mod], dtype=np.float32))
        self._n_samples += n
        self._n_frames += int(lengths.sum())

    def commit_progress(self, state: dict[str, Any] | None = None) -> None:
        """Record what is durably written; resume truncates to exactly this point."""
        progress = dict(state or {})
        progress.update(n_samples=self._n_samples, n_frames=self._n_frames)
        with disk_full_is_one_line(self.path):
            self.group.attrs["progress"] = progress

    def finalize(self, report: dict[str, Any]) -> None:
        with disk_full_is_one_line(self.path):  # `complete` is still False: --resume finishes
            self._finalize(report)

    def _finalize(self, report: dict[str, Any]) -> None:
        self.commit_progress(self.progress)
        self.group.attrs["report"] = report
        self.group.attrs["num_samples"] = self._n_samples
        consolidate(self.path)
        # `complete` goes last, and the consolidated metadata is refreshed with it.
        self.group.attrs["complete"] = True
        consolidate(self.path)
