"""Frozen-embedding files (docs/design.md §4.4): HDF5 with groups train/test of embedding, label, name."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from skelkit.failpoints import failpoint
from skelkit.store.durable import disk_full_is_one_line, partial_path
from skelkit.store.errors import EmbeddingFileError

GROUPS = ("train", "test")
ROOT_ATTRS = ("method", "encoder", "modality", "store", "protocol", "checkpoint", "epoch", "config")


@dataclass
class EmbeddingGroup:
    embedding: np.ndarray  # (N, D) float32
    label: np.ndarray  # (N,) int64
    name: np.ndarray  # (N,) str

    def __post_init__(self) -> None:
        # Checked before the casts below, which would silently drop an imaginary part or
        # truncate a label of 0.7 to 0.
        self.embedding = _real(np.asarray(self.embedding))
        self.label = _integral(np.asarray(self.label))
        self.name = np.asarray(self.name, dtype=str)
        if self.embedding.ndim != 2:
            raise EmbeddingFileError(f"embedding must be (N, D), got {self.embedding.shape}")
        n = self.embedding.shape[0]
        if self.label.shape != (n,) or self.name.shape != (n,):
            raise EmbeddingFileError(
                f"mismatched lengths: embedding {n}, label {self.label.shape[0]}, "
                f"name {self.name.shape[0]}"
            )


def _real(embedding: np.ndarray) -> np.ndarray:
    """float32 embeddings from a real numeric array; complex or non-numeric ones are refused."""
    if embedding.dtype.kind == "c":
        raise EmbeddingFileError(f"embedding must be real, got complex dtype {embedding.dtype}")
    if embedding.dtype.kind not in "fiub":
        raise EmbeddingFileError(f"embedding must be numeric, got dtype {embedding.dtype}")
    return embedding.astype(np.float32)


def _integral(label: np.ndarray) -> np.ndarray:
    """int64 labels from integers, or from floats that are all whole numbers; anything else
    (a fraction, NaN, a value past int64, a complex or text label) is refused."""
    kind = label.dtype.kind
    if kind == "u" and label.size and int(label.max()) > np.iinfo(np.int64).max:
        raise EmbeddingFileError(f"label {int(label.max())} does not fit int64")
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(label) | (label != np.round(label))
                             | (np.abs(label) >= 2.0 ** 63))
        if bad.size:
            raise EmbeddingFileError(
                f"labels must be integers; {bad.size} are not (first: row {bad[0]}, value "
                f"{label[bad[0]]!r})")
    elif kind not in "iub":
        raise EmbeddingFileError(f"labels must be integers, got dtype {label.dtype}")
    return label.astype(np.int64)


def write_embeddings(path: str | Path, groups: dict[str, EmbeddingGroup], attrs: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with disk_full_is_one_line(path, then="rerun", remove=[tmp]):
            with h5py.File(tmp, "w") as f:
                for key, value in attrs.items():
                    f.attrs[key] = (value if isinstance(value, (str, int, float, np.number))
                                    else json.dumps(value))
                for gname, g in groups.items():
                    grp = f.create_group(gname)
                    grp.create_dataset("embedding", data=g.embedding)
                    grp.create_dataset("label", data=g.label)
                    grp.create_dataset("name", data=g.name.astype(object),
                                       dtype=h5py.string_dtype("utf-8"))
                    failpoint("write-embeddings")
            tmp.replace(path)  # a reader never sees a half-written file
    except BaseException:
        tmp.unlink(missing_ok=True)  # whatever stopped the write, no .partial is left
        raise


def read_embeddings(path: str | Path, groups: tuple[str, ...] = GROUPS) -> tuple[dict[str, EmbeddingGroup], dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise EmbeddingFileError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise EmbeddingFileError(f"{path}: not an HDF5 file") from None
    with f:
        out: dict[str, EmbeddingGroup] = {}
        for gname in groups:
            if gname not in f:
                raise EmbeddingFileError(f"{path}: missing group '{gname}' (has: {', '.join(f.keys()) or 'none'})")
            grp = f[gname]
            for key in ("embedding", "label", "name"):
                if key not in grp:
                    raise EmbeddingFileError(f"{path}: group '{gname}' lacks dataset '{key}'")
            names = np.array([n.decode() if isinstance(n, bytes) else str(n) for n in grp["name"][:]])
            try:
                g = EmbeddingGroup(grp["embedding"][:], grp["label"][:], names)
            except EmbeddingFileError as exc:
                raise EmbeddingFileError(f"{path}: group '{gname}': {exc}") from None
            if not np.isfinite(g.embedding).all():
                bad = np.flatnonzero(~np.isfinite(g.embedding).all(axis=1))
                raise EmbeddingFileError(
                    f"{path}: group '{gname}' has {len(bad)} non-finite rows (first: row {bad[0]}, {names[bad[0]]})"
                )
            out[gname] = g
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    if out and len({g.embedding.shape[1] for g in out.values()}) != 1:
        raise EmbeddingFileError(f"{path}: train and test embeddings differ in width")
    return out, attrs
