"""Chunks that must be there and chunks that must read back as written.

zarr reads a chunk that is not stored as the array's fill value, without a word: a lost chunk
file of ``samples/label`` trains on label 0. Stores of format 2 write every chunk (also those
equal to the fill value) and end every chunk's codec chain with a CRC-32C checksum, so

- :func:`missing_chunks` can list what is missing from the files alone (the shard files of
  the storage grid and, inside each, the shard index: a chunk marked empty there is missing
  too), without reading any chunk data: the trainer runs it at start, ``skelprep verify`` too;
- a flipped byte is a checksum error on read, which :class:`CheckedArray` turns into one line
  naming the store, the array and the chunk.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ShardingCodec

from skelkit.errors import one_line
from skelkit.store.errors import StoreError

EMPTY_ENTRY = 2**64 - 1
"""A shard index marks a chunk it does not hold with offset and length both 2^64 - 1."""
INDEX_ENTRY_BYTES = 16  # (offset, length) as two little-endian uint64
CHECKSUM_BYTES = 4


class ChunkReadError(StoreError):
    """A chunk of a store cannot be read back (checksum mismatch, undecodable bytes)."""


def checksummed(compressors: list[Any]) -> list[Any]:
    """A chunk's bytes-to-bytes codecs with the CRC-32C checksum last (checked first on read)."""
    return [*compressors, Crc32cCodec()]


def write_every_chunk() -> Any:
    """zarr's config while writing a store: chunks equal to the fill value are written too,
    so a chunk that is not there is lost, never "all zeros by design". Arrays take the setting
    when they are opened, so open them inside this context."""
    return zarr.config.set({"array.write_empty_chunks": True})


def _chunk_codecs(array: zarr.Array) -> tuple[Any, ...]:
    codecs = tuple(array.metadata.codecs)
    if codecs and isinstance(codecs[0], ShardingCodec):
        return tuple(codecs[0].codecs)
    return codecs


def has_checksums(array: zarr.Array) -> bool:
    """Whether each chunk of ``array`` carries a CRC-32C (stores of format 2 on)."""
    return any(isinstance(c, Crc32cCodec) for c in _chunk_codecs(array))


def store_arrays(group: zarr.Group) -> Iterator[tuple[str, zarr.Array]]:
    """(path, array) of every array under ``group``, in path order."""
    found = [(name, node) for name, node in group.members(max_depth=None)
             if isinstance(node, zarr.Array)]
    yield from sorted(found, key=lambda item: item[0])


def _rows(lo: int, hi: int) -> str:
    return f"rows {lo}-{hi - 1}"


def _shard_problem(file: Path, array: zarr.Array, shard_coords: tuple[int, ...]) -> str | None:
    """Why the shard file ``file`` lacks a chunk the array's shape covers (None: it has all)."""
    sharding: ShardingCodec = array.metadata.codecs[0]
    shard_shape = array.shards
    inner = tuple(sharding.chunk_shape)
    per_shard = tuple(s // c for s, c in zip(shard_shape, inner, strict=True))
    n_inner = math.prod(per_shard)
    index_bytes = n_inner * INDEX_ENTRY_BYTES + CHECKSUM_BYTES * sum(
        isinstance(c, Crc32cCodec) for c in sharding.index_codecs)
    size = file.stat().st_size
    if size < index_bytes:
        return f"shard file is truncated ({size} bytes, its index alone takes {index_bytes})"
    with open(file, "rb") as fh:
        if sharding.index_location.value == "end":
            fh.seek(size - index_bytes)
        raw = fh.read(n_inner * INDEX_ENTRY_BYTES)
    index = np.frombuffer(raw, dtype="<u8").reshape(*per_shard, 2)
    for local in itertools.product(*(range(n) for n in per_shard)):
        start = [(s * p + i) * c for s, p, i, c in zip(shard_coords, per_shard, local, inner,
                                                       strict=True)]
        if any(lo >= n for lo, n in zip(start, array.shape, strict=True)):
            continue  # past the array's end: legitimately not stored
        offset, length = index[local]
        if offset == EMPTY_ENTRY and length == EMPTY_ENTRY:
            return (f"its index marks chunk {'/'.join(map(str, local))} "
                    f"({_rows(start[0], min(start[0] + inner[0], array.shape[0]))}) empty")
        if offset + length > size:
            return f"chunk {'/'.join(map(str, local))} lies past the end of the file"
    return None


def missing_chunks(store_path: str | Path, name: str, array: zarr.Array) -> list[str]:
    """One line per storage unit (chunk file or shard file) of ``array`` that the array's shape
    needs and the store does not hold, or a shard whose index lacks a chunk. Reads directory
    entries and shard indexes only (a few hundred bytes a shard), no chunk data."""
    folder = Path(store_path) / name
    unit = array.shards or array.chunks
    grid = [math.ceil(n / u) for n, u in zip(array.shape, unit, strict=True)]
    present = _files_under(folder)
    problems: list[str] = []
    for coords in itertools.product(*(range(g) for g in grid)):
        key = array.metadata.encode_chunk_key(coords)
        lo = coords[0] * unit[0]
        where = f"{name}: chunk file {key} ({_rows(lo, min(lo + unit[0], array.shape[0]))})"
        if key not in present:
            problems.append(f"{where} is missing (zarr would read it as zeros)")
        elif array.shards is not None:
            why = _shard_problem(folder / key, array, coords)
            if why is not None:
                problems.append(f"{where}: {why}")
    return problems


def _files_under(folder: Path) -> set[str]:
    """Relative '/'-joined paths of the files under ``folder``."""
    out: set[str] = set()
    for root, _, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        for f in files:
            out.add((rel / f).as_posix() if rel.parts else f)
    return out


def store_missing_chunks(store_path: str | Path, group: zarr.Group) -> list[str]:
    """:func:`missing_chunks` of every array of the store at ``store_path``."""
    problems: list[str] = []
    for name, array in store_arrays(group):
        problems.extend(missing_chunks(store_path, name, array))
    return problems


def require_all_chunks(store_path: str | Path, group: zarr.Group) -> None:
    """StoreError naming the first chunk the store lacks (and how many more), else nothing."""
    problems = store_missing_chunks(store_path, group)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StoreError(f"{store_path}: {problems[0]}{more}; the store is damaged: "
                         f"`skelprep verify {store_path}` lists it all, rebuild with --overwrite")


# --- reads that fail in one line -------------------------------------------------------------

def _candidate_chunks(array: zarr.Array, selection: Any) -> range | np.ndarray:
    """Indices along axis 0 of the chunks a selection may touch (all when unsure)."""
    step = array.chunks[0]
    n_chunks = max(math.ceil(array.shape[0] / step), 0) if array.ndim else 0
    first = selection[0] if isinstance(selection, tuple) and selection else selection
    if isinstance(first, slice):
        lo, hi, _ = first.indices(array.shape[0])
        return range(lo // step, min(math.ceil(hi / step), n_chunks))
    if isinstance(first, int | np.integer):
        i = int(first) % max(array.shape[0], 1)
        return range(i // step, i // step + 1)
    try:
        rows = np.asarray(first)
        if rows.dtype.kind in "iu":
            return np.unique(rows % max(array.shape[0], 1) // step)
    except Exception:  # an exotic selection: probe every chunk
        pass
    return range(n_chunks)


def describe_read_failure(store_path: str | Path, name: str, array: zarr.Array, selection: Any,
                          error: BaseException) -> str:
    """One line naming the chunk of ``array`` that does not read back (found by reading the
    chunks the failed selection touches one by one)."""
    step = array.chunks[0]
    for c in _candidate_chunks(array, selection):
        lo = int(c) * step
        try:
            array[lo:lo + step]
        except Exception as exc:
            key = array.metadata.encode_chunk_key(
                (lo // (array.shards or array.chunks)[0],) + (0,) * (array.ndim - 1))
            rows = _rows(lo, min(lo + step, array.shape[0]))
            where = (f"chunk {int(c)} in file {key}" if array.shards is not None
                     else f"chunk file {key}")
            return (f"{store_path}: {name}: {where} ({rows}) cannot be read: {_reason(exc)}; "
                    f"the store is damaged: rebuild it with --overwrite")
    return f"{store_path}: {name}: cannot be read: {_reason(error)}"


def _reason(exc: BaseException) -> str:
    text = one_line(exc)
    if "checksum" in text.lower():
        return "checksum mismatch (the chunk's bytes changed after it was written)"
    return f"{type(exc).__name__}: {text[:200]}"


class CheckedArray:
    """A zarr array whose reads fail with one :class:`ChunkReadError` line instead of a codec's
    exception; everything else is the array's own."""

    def __init__(self, array: zarr.Array, store_path: str | Path, name: str) -> None:
        self._array = array
        self._store_path = store_path
        self._name = name

    def _read(self, read: Callable[[], Any], selection: Any) -> Any:
        try:
            return read()
        except (IndexError, TypeError, KeyError):
            raise  # a wrong selection is the caller's error, not the store's
        except Exception as exc:
            raise ChunkReadError(describe_read_failure(self._store_path, self._name,
                                                       self._array, selection, exc)) from None

    def __getitem__(self, selection: Any) -> Any:
        return self._read(lambda: self._array[selection], selection)

    @property
    def oindex(self) -> _CheckedIndexer:
        return _CheckedIndexer(self, self._array.oindex)

    def __len__(self) -> int:
        return len(self._array)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[:]
        return np.asarray(values, dtype=dtype)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in ("_array", "_store_path", "_name"):
            raise AttributeError(attr)  # before __init__ ran (copy, pickle): no recursion
        return getattr(self._array, attr)

    def __repr__(self) -> str:
        return f"CheckedArray({self._name!r}, {self._array!r})"


class _CheckedIndexer:
    def __init__(self, owner: CheckedArray, indexer: Any) -> None:
        self._owner = owner
        self._indexer = indexer

    def __getitem__(self, selection: Any) -> Any:
        return self._owner._read(lambda: self._indexer[selection], selection)


class CheckedGroup:
    """A zarr group handing out :class:`CheckedArray` (and checked sub-groups)."""

    def __init__(self, group: zarr.Group, store_path: str | Path, prefix: str = "") -> None:
        self._group = group
        self._store_path = store_path
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        node = self._group[key]
        name = f"{self._prefix}{key}"
        if isinstance(node, zarr.Array):
            return CheckedArray(node, self._store_path, name)
        if isinstance(node, zarr.Group):
            return CheckedGroup(node, self._store_path, f"{name}/")
        return node

    def __contains__(self, key: str) -> bool:
        return key in self._group

    def __iter__(self) -> Iterator[str]:
        return iter(self._group)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__") or attr in ("_group", "_store_path", "_prefix"):
            raise AttributeError(attr)  # before __init__ ran (copy, pickle): no recursion
        return getattr(self._group, attr)

    @property
    def unchecked(self) -> zarr.Group:
        """The zarr group itself (for listings that need zarr's own types)."""
        return self._group
