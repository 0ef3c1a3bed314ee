"""Opens stores for reading: samples as a DataFrame, split masks, fixed modalities, ragged raw joints."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from skelkit.store.chunks import CheckedArray, CheckedGroup
from skelkit.store.errors import StoreError
from skelkit.store.layout import Layout
from skelkit.store.schema import FORMAT, READABLE_VERSIONS, REQUIRED_ATTRS, SAMPLE_COLUMNS, SPLIT_SIDES


class Store:
    """A read-only view of one store. Cheap to create: open one per DataLoader worker."""

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        # Reads of a damaged chunk fail with one line naming the store, array and chunk.
        self.group = CheckedGroup(group, path)
        self.attrs: dict[str, Any] = dict(group.attrs)

    def __len__(self) -> int:
        return int(self.group["samples/name"].shape[0])

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, dataset={self.dataset!r}, samples={len(self)})"

    @cached_property
    def layout(self) -> Layout:
        return Layout.from_attrs(self.attrs["layout"])

    @property
    def dataset(self) -> str:
        return str(self.attrs["dataset"])

    @property
    def frames(self) -> int:
        return int(self.attrs["frames"])

    @property
    def max_bodies(self) -> int:
        return int(self.attrs["max_bodies"])

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.attrs["modalities"])

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(self.attrs.get("protocols") or sorted(self.group["splits"].keys()))

    @property
    def report(self) -> dict[str, Any]:
        return dict(self.attrs.get("report", {}))

    @property
    def version(self) -> int:
        return int(self.attrs["version"])

    @property
    def complete(self) -> bool:
        return bool(self.attrs.get("complete"))

    @cached_property
    def samples(self) -> pd.DataFrame:
        cols = {}
        for name, dtype in SAMPLE_COLUMNS.items():
            values = self.group[f"samples/{name}"][:]
            cols[name] = values.astype(object).astype(str) if dtype is str else values
        return pd.DataFrame(cols)

    @cached_property
    def labels(self) -> np.ndarray:
        return np.asarray(self.group["samples/label"][:], dtype=np.int64)

    @cached_property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0

    def split(self, protocol: str) -> np.ndarray:
        if protocol not in self.protocols:
            raise StoreError(
                f"{self.path}: unknown protocol {protocol!r}; this store has {', '.join(self.protocols)}"
            )
        return np.asarray(self.group[f"splits/{protocol}"][:], dtype=np.int8)

    def indices(self, protocol: str, side: str) -> np.ndarray:
        if side not in SPLIT_SIDES:
            raise StoreError(f"side must be 'train' or 'test', not {side!r}")
        return np.flatnonzero(self.split(protocol) == SPLIT_SIDES[side]).astype(np.int64)

    def fixed(self, modality: str) -> CheckedArray:
        if modality not in self.modalities:
            raise StoreError(f"{self.path}: no modality {modality!r}; has {', '.join(self.modalities)}")
        return self.group[f"fixed/{modality}"]

    @cached_property
    def offsets(self) -> np.ndarray:
        return np.asarray(self.group["raw/offsets"][:], dtype=np.int64)

    @cached_property
    def _raw(self) -> CheckedArray:
        return self.group["raw/joint"]

    def raw(self, i: int) -> np.ndarray:
        """Sample i's CMD-normalised joints, (T_i, 3, V, M) float32."""
        lo, hi = self.offsets[i], self.offsets[i + 1]
        return np.asarray(self._raw[lo:hi], dtype=np.float32)


def open_store(path: str | Path, require_complete: bool = True) -> Store:
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a folder that is not a group
        raise StoreError(f"{path}: not a zarr store ({exc.__class__.__name__})") from None
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT:
        raise StoreError(f"{path}: not a skelkit store (format={attrs.get('format')!r})")
    if attrs.get("version") not in READABLE_VERSIONS:
        raise StoreError(f"{path}: store version {attrs.get('version')} but skelkit reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise StoreError(f"{path}: store attributes missing: {', '.join(missing)}")
    if require_complete and not attrs.get("complete"):
        raise StoreError(f"{path}: store is incomplete (interrupted build? run skelprep build --resume)")
    return Store(path, group)
