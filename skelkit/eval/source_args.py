"""The feature-source options of `skeleval knn|linear` (--emb, --run, --raw), checked before any
heavy import so that a usage error answers at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from skelkit.errors import InputError


class SourceUsageError(InputError):
    """The feature-source options do not name exactly one usable source."""


@dataclass(frozen=True)
class SourceArgs:
    emb: Path | None = None
    run: Path | None = None
    store: Path | None = None
    protocol: str | None = None
    raw: bool = False
    modality: str = "joint"
    checkpoint: str | None = None
    record_dir: Path | None = None
    workers: int = 0

    def kind(self) -> str:
        """'emb', 'run' or 'raw'; a usage error names what is missing or too much."""
        chosen = [name for name, given in (("--emb", self.emb is not None),
                                           ("--run", self.run is not None),
                                           ("--raw", self.raw)) if given]
        if len(chosen) != 1:
            what = "both " + " and ".join(chosen) if chosen else "none"
            raise SourceUsageError(f"give exactly one feature source: --emb FILE, --run RUN, or "
                                 f"--store S --protocol P --raw (got {what})")
        if self.raw and (self.store is None or self.protocol is None):
            raise SourceUsageError("--raw needs --store and --protocol")
        if self.emb is not None and (self.store is not None or self.protocol is not None):
            raise SourceUsageError("--store/--protocol apply to --run and --raw; an embedding "
                                 "file carries its own")
        if self.record_dir is not None and self.run is not None:
            raise SourceUsageError("--record-dir is for --emb and --raw; --run records in the "
                                 "run's own directory")
        return chosen[0].removeprefix("--")
