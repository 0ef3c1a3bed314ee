"""Rows of a sharded store array read straight from its shard files (the training loader's read).

The store's row arrays (``raw/joint`` frames, ``fixed/<modality>`` clips) are zarr v3 arrays cut
along the first axis only: shards of S rows, each holding inner chunks of C rows, every chunk
``bytes`` (little-endian) then ``blosc``, and the shard's chunk index at its end (Zarr v3
sharding codec: one (offset, nbytes) uint64 pair per inner chunk, then its CRC32C). zarr's own
reader costs about 0.36 ms of CPU per 256-frame chunk on the 2-core machine, of which the blosc
decode is 0.035 ms (the rest is its per-chunk async machinery), so a training batch spent ~1.2 ms
per sample reading. :class:`ShardedRows` reads each needed chunk with one ``pread`` and decodes it
with ``numcodecs.blosc``: the same bytes, a tenth of the CPU.

Stores of format 2 end each chunk's codecs with ``crc32c``: the 4-byte CRC-32C after the blosc
bytes is checked before decoding, and, since format 2 writes every chunk, a chunk absent from its
shard is an error (a lost chunk never reads as zeros). It handles exactly those layouts: :func:`open_rows` returns None for any other
(another codec chain, a chunk grid cutting other axes, a store that is not a local folder), and
the caller reads through zarr as before. Each shard's index is checked against its CRC32C and
against the file's size when first read; a chunk absent from a format-1 shard reads as the fill
value, as zarr reads it.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
from numcodecs import blosc

from skelkit.store.chunks import ChunkReadError

_EMPTY = np.uint64(2**64 - 1)  # the sharding spec's (offset, nbytes) of an absent chunk
OPEN_SHARDS = 32  # shard files one reader keeps open
_DTYPES = {"float32": "<f4", "float64": "<f8", "int64": "<i8", "int32": "<i4"}


class ShardReadError(ChunkReadError):
    """A shard's bytes disagree with its own index or checksum, or a chunk is missing (a damaged
    or truncated store file): one line, as zarr-path reads of a damaged store say it."""


def _layout(meta: dict[str, Any]) -> tuple[int, int, str, Any, tuple[int, ...], bool] | None:
    """(rows per shard, rows per chunk, dtype, fill value, row shape, chunks checksummed) when
    ``meta`` (an array's ``zarr.json``) is a layout this reader handles, else None."""
    try:
        if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
            return None
        shape = tuple(int(s) for s in meta["shape"])
        grid = meta["chunk_grid"]
        keys = meta["chunk_key_encoding"]
        if (grid["name"] != "regular" or keys["name"] != "default"
                or keys.get("configuration", {}).get("separator", "/") != "/"
                or meta.get("storage_transformers") or meta["data_type"] not in _DTYPES):
            return None
        shard = tuple(int(s) for s in grid["configuration"]["chunk_shape"])
        (codec,) = meta["codecs"]
        config = codec["configuration"]
        chunk = tuple(int(s) for s in config["chunk_shape"])
        inner = [c["name"] for c in config["codecs"]]
        index = [c["name"] for c in config["index_codecs"]]
        little = all(c.get("configuration", {}).get("endian", "little") == "little"
                     for c in config["codecs"] + config["index_codecs"] if c["name"] == "bytes")
        if (codec["name"] != "sharding_indexed"
                or inner not in (["bytes", "blosc"], ["bytes", "blosc", "crc32c"])
                or index != ["bytes", "crc32c"] or config.get("index_location", "end") != "end"
                or not little or shard[1:] != shape[1:] or chunk[1:] != shape[1:]
                or shard[0] % chunk[0]):
            return None
        return (shard[0], chunk[0], _DTYPES[meta["data_type"]], meta.get("fill_value"),
                shape[1:], inner[-1] == "crc32c")
    except (KeyError, TypeError, ValueError):
        return None


class ShardedRows:
    """Rows of one array (see the module docstring). Open one per process (it holds file
    descriptors); ``cache_chunks`` keeps that many decoded chunks (least recently used out)."""

    def __init__(self, folder: Path, rows: int, shard_rows: int, chunk_rows: int, dtype: str,
                 fill: Any, row_shape: tuple[int, ...], cache_chunks: int = 0,
                 checksummed: bool = False) -> None:
        self.folder, self.rows, self.checksummed = folder, rows, checksummed
        self.shard_rows, self.chunk_rows = shard_rows, chunk_rows
        self.dtype, self.fill, self.row_shape = np.dtype(dtype), fill, row_shape
        self.per_shard = shard_rows // chunk_rows
        self.row_bytes = self.dtype.itemsize * int(np.prod(row_shape, dtype=np.int64))
        self.cache_chunks = cache_chunks
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._open: OrderedDict[int, tuple[int, np.ndarray]] = OrderedDict()
        self.decoded = 0  # chunks decoded so far (the benchmark's count)

    def close(self) -> None:
        for fd, _ in self._open.values():
            os.close(fd)
        self._open.clear()

    def __del__(self) -> None:
        self.close()

    def _shard(self, shard: int) -> tuple[int, np.ndarray] | None:
        """The shard's file descriptor and (per_shard, 2) index; None when the shard is absent.
        At most ``OPEN_SHARDS`` stay open (NTU-120's raw frames are ~560 shards; a process may
        hold several datasets): the least recently used is closed, and its index is read again
        with the file when it is next opened, so the two always belong together."""
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        path = self.folder / "c" / str(shard) / ("/".join(["0"] * len(self.row_shape)))
        if not path.is_file():
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            span = self.per_shard * 16 + 4
            raw = os.pread(fd, span, size - span) if size >= span else b""
            if len(raw) != span or google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:],
                                                                                   "little"):
                raise ShardReadError(f"{path}: shard index fails its CRC32C check")
            index = np.frombuffer(raw[:-4], "<u8").reshape(self.per_shard, 2)
            present = index[:, 0] != _EMPTY
            if np.any(index[present].sum(axis=1) > size - span):
                raise ShardReadError(f"{path}: shard index points past the end of the file")
        except BaseException:
            os.close(fd)
            raise
        self._open[shard] = (fd, index)
        if len(self._open) > OPEN_SHARDS:
            os.close(self._open.popitem(last=False)[1][0])
        return fd, index

    def chunk(self, number: int) -> np.ndarray:
        """Inner chunk ``number`` (rows [number C, number C + C), fewer in the last one)."""
        cached = self._cache.get(number)
        if cached is not None:
            self._cache.move_to_end(number)
            return cached
        rows = min(self.chunk_rows, self.rows - number * self.chunk_rows)
        shard = self._shard(number // self.per_shard)
        entry = None if shard is None else shard[1][number % self.per_shard]
        if (entry is None or entry[0] == _EMPTY) and self.checksummed:
            raise ShardReadError(f"{self._where(number)} is missing (format 2 writes every chunk); "
                                 f"the store is damaged: rebuild it with --overwrite")
        if entry is None or entry[0] == _EMPTY:
            out = np.full((rows, *self.row_shape), self.fill or 0, self.dtype)
        else:
            offset, nbytes = int(entry[0]), int(entry[1])
            data = os.pread(shard[0], nbytes, offset)  # type: ignore[index]
            try:
                if len(data) != nbytes:
                    raise ValueError(f"{len(data)} of {nbytes} bytes")
                if self.checksummed:
                    data, stored = data[:-4], data[-4:]
                    if google_crc32c.value(data) != int.from_bytes(stored, "little"):
                        raise ValueError("checksum mismatch (the chunk's bytes changed after it "
                                         "was written)")
                decoded = blosc.decompress(data)
            except (RuntimeError, ValueError) as exc:
                raise ShardReadError(f"{self._where(number)} cannot be read: {exc}; the store is "
                                     f"damaged: rebuild it with --overwrite") from None
            if len(decoded) != self.chunk_rows * self.row_bytes:
                raise ShardReadError(f"{self.folder}: chunk {number} decodes to {len(decoded)} "
                                     f"bytes, not {self.chunk_rows * self.row_bytes}")
            # zarr writes the last chunk whole (past the array's end: fill); keep the real rows.
            out = np.frombuffer(decoded, self.dtype).reshape(self.chunk_rows, *self.row_shape)
            out = out[:rows]
            self.decoded += 1
        if self.cache_chunks:
            self._cache[number] = out
            if len(self._cache) > self.cache_chunks:
                self._cache.popitem(last=False)
        return out

    def _where(self, number: int) -> str:
        """The store, array and chunk, as the zarr-path read errors name them."""
        lo = number * self.chunk_rows
        hi = min(lo + self.chunk_rows, self.rows) - 1
        return (f"{self.folder.parent.parent}: {self.folder.parent.name}/{self.folder.name}: "
                f"chunk {number % self.per_shard} in file c/{number // self.per_shard}/"
                f"{'/'.join(['0'] * len(self.row_shape))} (rows {lo}-{hi})")

    def read(self, rows: np.ndarray) -> np.ndarray:
        """``array[rows]`` as a new (len(rows), ...) array; sorted rows decode each chunk once."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows[0] < 0 or rows[-1] >= self.rows):
            raise IndexError(f"rows [{rows[0]}, {rows[-1]}] outside 0..{self.rows - 1}")
        out = np.empty((len(rows), *self.row_shape), self.dtype)
        chunks = rows // self.chunk_rows
        # One decode and one gather per run of rows in one chunk (per chunk, for sorted rows).
        bounds = np.flatnonzero(np.diff(chunks)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(rows)]):
            number = int(chunks[lo])
            np.take(self.chunk(number), rows[lo:hi] - number * self.chunk_rows, axis=0,
                    out=out[lo:hi])
        return out


def open_rows(store_path: str | Path, name: str, meta: dict[str, Any] | None = None,
              cache_chunks: int = 0) -> ShardedRows | None:
    """A :class:`ShardedRows` over the store's array ``name`` (e.g. ``raw/joint``), or None when
    the store is not a local folder or the array's layout is not the one handled here. ``meta``:
    the array's metadata as zarr reads it (``array.metadata.to_dict()``, which honours the
    store's consolidated metadata); default: the array's own ``zarr.json``."""
    folder = Path(store_path) / name
    if meta is None:
        try:
            meta = json.loads((folder / "zarr.json").read_text())
        except (OSError, ValueError):
            return None
    layout = _layout(meta)
    if layout is None or not (folder / "c").is_dir():
        return None
    shard_rows, chunk_rows, dtype, fill, row_shape, checked = layout
    return ShardedRows(folder, int(meta["shape"][0]), shard_rows, chunk_rows, dtype, fill,
                       row_shape, cache_chunks, checked)
