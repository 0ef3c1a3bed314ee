"""Where ``skeleval knn|linear`` get their features, and where their results are recorded.

Three sources, exactly one per call:

- ``--emb X.h5``: frozen features written by ``skeltrain embed``; recorded in the run directory
  that holds the file's checkpoint only when that checkpoint's SHA-256 equals the digest the file
  recorded at export (a file's attributes alone prove nothing), or in ``--record-dir RUN``.
- ``--run RUN [--store S --protocol P]``: the run's frozen encoder applied to the store (the
  run's own store and protocol by default); recorded in RUN/eval.jsonl.
- ``--store S --protocol P --raw``: the raw fixed joints, flattened (the baseline); recorded only
  with ``--record-dir DIR``.

Each source also carries ``record_note``: why a result was not recorded, for stderr.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skelkit.eval.baselines import ensure_baseline_dir, raw_joint_split
from skelkit.eval.errors import EmbeddingSplit, load_embedding_split
from skelkit.eval.report import embedding_provenance, find_run_dir
from skelkit.eval.run_features import encoded_split, open_frozen_encoder, run_attrs
from skelkit.eval.source_args import SourceArgs
from skelkit.store.rundir import RunDir, file_sha256


@dataclass
class Source:
    """Resolved features (or the encoder producing them) and where to record the result."""

    kind: str
    label: str
    method: str
    split: EmbeddingSplit | None = None
    encoder: Any = None
    """run_features.FrozenEncoder for --run."""
    record_dir: Path | None = None
    record_note: str | None = None

    def features(self, *, progress: bool = False) -> EmbeddingSplit:
        if self.split is None:
            self.split = encoded_split(self.encoder, progress=progress)
        return self.split

    def provenance(self) -> dict[str, Any]:
        """What was evaluated, in the keys of eval.jsonl records."""
        if self.kind == "emb":
            assert self.split is not None
            return embedding_provenance(self.split.attrs, self.split.path)
        if self.kind == "run":
            return run_attrs(self.encoder)
        assert self.split is not None
        return dict(self.split.attrs)


def open_source(args: SourceArgs, device: torch.device) -> Source:
    kind = args.kind()
    if kind == "emb":
        assert args.emb is not None
        split = load_embedding_split(args.emb)
        if args.record_dir is not None:
            record_dir, note = RunDir(args.record_dir).require().path, None
        else:
            record_dir, note = _run_dir_of_embedding(split)
        return Source(kind, str(args.emb), str(split.attrs.get("method", "")), split=split,
                      record_dir=record_dir, record_note=note)
    if kind == "run":
        assert args.run is not None
        encoder = open_frozen_encoder(args.run, args.store, args.protocol,
                                      modality=args.modality, checkpoint=args.checkpoint,
                                      device=device, workers=args.workers)
        inputs = encoder.inputs
        label = f"{args.run} on {inputs.store.dataset} {inputs.protocol}"
        return Source(kind, label, inputs.run_config.method, encoder=encoder,
                      record_dir=Path(args.run))
    assert args.store is not None and args.protocol is not None
    split = raw_joint_split(args.store, args.protocol, args.modality)
    record_dir = None
    if args.record_dir is not None:
        record_dir = ensure_baseline_dir(args.record_dir, split.attrs)
    return Source(kind, f"raw {args.modality} of {args.store} {args.protocol}",
                  str(split.attrs["method"]), split=split, record_dir=record_dir)


def _run_dir_of_embedding(split: EmbeddingSplit) -> tuple[Path | None, str | None]:
    """The run directory whose checkpoint provably produced the file, or None and the reason."""
    checkpoint = split.attrs.get("checkpoint")
    run_dir = find_run_dir(checkpoint, split.path)
    if run_dir is None:
        return None, None  # no run named: nothing to say beyond the usual
    claimed = split.attrs.get("checkpoint_sha256")
    keep = f"; --record-dir {run_dir} records it there if you know it belongs"
    if not claimed:
        return None, (f"not recorded in {run_dir}: {split.path} carries no checkpoint digest "
                      f"(exported before digests were recorded){keep}")
    given = Path(str(checkpoint))
    path = given if given.is_absolute() else split.path.parent / given
    if not path.is_file() or file_sha256(path) != str(claimed):
        return None, (f"not recorded in {run_dir}: its checkpoint {path} is not the one "
                      f"{split.path} was exported from (digest differs or file gone){keep}")
    return run_dir, None
