"""The one registry of dataset kinds: a name on the command line -> its DatasetSpec.

Each raw format is one module here (discovery, splits, the per-file worker); ``generic`` is
built per call because its manifest, layout and normalisation come from the options.
"""

from __future__ import annotations

from pathlib import Path

from skelkit.prep.errors import DatasetError
from skelkit.prep.formats.generic import generic_dataset
from skelkit.prep.formats.ntu import NTU60, NTU120
from skelkit.prep.formats.pku import PKU2
from skelkit.prep.formats.utd import UTD_MHAD
from skelkit.prep.tasks import DatasetSpec
from skelkit.store.schema import FIXED_FRAMES

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (NTU60, NTU120, PKU2, UTD_MHAD)}
GENERIC = "generic"
DATASET_NAMES: tuple[str, ...] = (*DATASETS, GENERIC)


def get_dataset(name: str, raw: Path | None = None, *, manifest: Path | None = None,
                layout: str | None = None, normalise: str = "layout",
                frames: int = FIXED_FRAMES, allow_outside_raw: bool = False) -> DatasetSpec:
    """The spec of ``name``; DatasetError for an unknown name or generic-only options elsewhere."""
    if name == GENERIC:
        if raw is None:
            raise DatasetError("--dataset generic needs a raw folder")
        return generic_dataset(raw, manifest, layout, normalise, frames, allow_outside_raw)
    if manifest is not None or layout is not None or normalise != "layout" or allow_outside_raw:
        raise DatasetError(
            "--manifest, --layout, --normalise and --allow-outside-raw are options of "
            "--dataset generic only"
        )
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(
            f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}"
        ) from None
