"""The store contract, version 2 (docs/design.md §4): names, dtypes and shapes in one place."""

from __future__ import annotations

import numpy as np

FORMAT = "skelstore"
VERSION = 2
"""2: every chunk ends with a CRC-32C and every chunk is written, also one equal to the fill
value (so a chunk that is not there is lost); 1: neither. Both read the same way."""
READABLE_VERSIONS = (1, 2)
FIXED_FRAMES = 50
MAX_BODIES = 2
MODALITIES: tuple[str, ...] = (
    "joint", "motion", "bone", "acceleration", "axis", "angular_velocity",
)

# Per-sample columns under samples/<column>; str is zarr's variable-length UTF-8 type.
SAMPLE_COLUMNS: dict[str, type | np.dtype] = {
    "name": str,
    "label": np.dtype("int64"),
    "subject": np.dtype("int32"),
    "camera": np.dtype("int32"),
    "setup": np.dtype("int32"),
    "replication": np.dtype("int32"),
    "num_frames": np.dtype("int32"),
    "num_bodies": np.dtype("int8"),
    "gamma": np.dtype("float32"),
}

SPLIT_TRAIN = 0
SPLIT_TEST = 1
SPLIT_SIDES = {"train": SPLIT_TRAIN, "test": SPLIT_TEST}

REQUIRED_ATTRS = (
    "format", "version", "dataset", "layout", "max_bodies", "frames", "normalisation",
    "modalities", "source", "created_by", "complete",
)
