"""Input checks for skeleval: every bad input becomes one ``EvalInputError`` line, never a traceback.

The CLI turns these errors into one line on stderr and exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skelkit.errors import InputError, one_line
from skelkit.store.embeddings import EmbeddingFileError, read_embeddings


class EvalInputError(InputError):
    """Bad input to an evaluation command; the message is one line naming the file and the reason."""


@dataclass(frozen=True)
class EmbeddingSplit:
    """The checked train and test groups of one embedding file, plus its root attributes."""

    path: Path
    train_embedding: np.ndarray
    train_label: np.ndarray
    test_embedding: np.ndarray
    test_label: np.ndarray
    test_name: np.ndarray
    attrs: dict[str, Any]
    classes: np.ndarray | None = None
    """The original label of each class index when the labels were remapped (embedding files:
    :func:`dense_labels`); None when the labels are the store's 0-based classes."""

    @property
    def num_classes(self) -> int:
        if self.classes is not None:
            return len(self.classes)
        return int(max(self.train_label.max(), self.test_label.max())) + 1

    def absent_classes_warning(self) -> str | None:
        """A line when test classes never occur on the train side (no probe can predict them:
        their test samples are counted wrong whatever the features)."""
        absent = np.setdiff1d(np.unique(self.test_label), np.unique(self.train_label))
        if absent.size == 0:
            return None
        names = self.classes[absent] if self.classes is not None else absent
        shown = ", ".join(str(int(c)) for c in names[:5]) + (", ..." if absent.size > 5 else "")
        hit = int(np.isin(self.test_label, absent).sum())
        return (f"{absent.size} test class(es) never occur in train (labels {shown}): "
                f"{hit} of {len(self.test_label)} test samples cannot be classified correctly")


def dense_labels(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train and test labels as indices 0..K-1 into their K distinct values (returned third), so
    that a label like 2**40 costs one class, not 2**40 of them."""
    classes, inverse = np.unique(np.concatenate([train, test]), return_inverse=True)
    inverse = inverse.astype(np.int64)
    return inverse[: len(train)], inverse[len(train):], classes


REQUIRED_GROUPS = ("train", "test")


def load_embedding_split(path: str | Path) -> EmbeddingSplit:
    """Read an embedding file (docs/design.md §4.4) and check what every protocol relies on."""
    path = Path(path)
    if not path.exists():
        raise EvalInputError(f"{path}: no such file")
    if not path.is_file():
        raise EvalInputError(f"{path}: not a file")
    try:
        content, attrs = read_embeddings(path, REQUIRED_GROUPS)
    except EmbeddingFileError as err:
        message = str(err) if str(path) in str(err) else f"{path}: {err}"
        raise EvalInputError(one_line(message)) from None
    except (OSError, KeyError, TypeError, ValueError) as err:
        # h5py reports structural surprises (a group where a dataset belongs, an unreadable
        # dtype) with these; they are still bad input, not bugs of ours.
        raise EvalInputError(one_line(f"{path}: unreadable embedding file ({err})")) from None
    for group in REQUIRED_GROUPS:
        if group not in content:
            found = ", ".join(sorted(content)) or "none"
            raise EvalInputError(f"{path}: missing group '{group}' (groups found: {found})")
    checked = {group: _check_group(path, group, content[group]) for group in REQUIRED_GROUPS}
    train_emb, train_label, _ = checked["train"]
    test_emb, test_label, test_name = checked["test"]
    if train_emb.shape[1] != test_emb.shape[1]:
        raise EvalInputError(
            f"{path}: train embeddings have dimension {train_emb.shape[1]} "
            f"but test embeddings have {test_emb.shape[1]}"
        )
    train_index, test_index, classes = dense_labels(train_label, test_label)
    return EmbeddingSplit(
        path=path,
        train_embedding=train_emb,
        train_label=train_index,
        test_embedding=test_emb,
        test_label=test_index,
        test_name=test_name,
        attrs=dict(attrs),
        classes=classes,
    )


def _check_group(path: Path, group: str, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    embedding = np.asarray(data.embedding)
    label = np.asarray(data.label)
    name = np.asarray(data.name)
    where = f"{path}: group '{group}'"
    if embedding.ndim != 2:
        raise EvalInputError(f"{where}: embedding must be 2-D (N, D), got shape {embedding.shape}")
    n = embedding.shape[0]
    if n == 0:
        raise EvalInputError(f"{where}: no samples")
    if embedding.shape[1] == 0:
        raise EvalInputError(f"{where}: embedding has dimension 0")
    if label.ndim != 1 or label.shape[0] != n:
        raise EvalInputError(
            f"{where}: mismatched lengths: {n} embeddings but label has shape {label.shape}"
        )
    if name.ndim != 1 or name.shape[0] != n:
        raise EvalInputError(
            f"{where}: mismatched lengths: {n} embeddings but name has shape {name.shape}"
        )
    if not np.issubdtype(label.dtype, np.integer):
        raise EvalInputError(f"{where}: labels must be integers, got dtype {label.dtype}")
    if label.min() < 0:
        raise EvalInputError(f"{where}: negative label {int(label.min())} (labels are 0-based)")
    embedding = embedding.astype(np.float32, copy=False)
    bad_rows = np.flatnonzero(~np.isfinite(embedding).all(axis=1))
    if bad_rows.size:
        first = int(bad_rows[0])
        raise EvalInputError(
            f"{where}: {bad_rows.size} row(s) with NaN or Inf, first at row {first} "
            f"(sample {_name_at(name, first)})"
        )
    return embedding, label.astype(np.int64, copy=False), name


def _name_at(names: np.ndarray, index: int) -> str:
    value = names[index]
    return value.decode() if isinstance(value, bytes) else str(value)
