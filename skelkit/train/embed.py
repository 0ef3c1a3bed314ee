"""``skeltrain embed``: a run's frozen embeddings of both protocol sides, written as HDF5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py

from skelkit.store.embeddings import GROUPS, EmbeddingGroup, write_embeddings
from skelkit.store.reader import open_store
from skelkit.store.rundir import file_sha256
from skelkit.train.runs import (
    TrainInputError,
    embed_modalities,
    encode_side,
    open_run,
    resolve_device,
    side_loader,
)


def refuse_foreign_out(out: str | Path) -> None:
    """An existing ``out`` is replaced only when it is an embedding file (HDF5 with the groups
    train and test): anything else is someone's data, and the work would end by destroying it."""
    out = Path(out)
    if not out.exists():
        return
    if out.is_dir():
        raise TrainInputError(f"--out {out}: a directory; name an .h5 file")
    try:
        with h5py.File(out, "r") as f:
            foreign = not all(group in f for group in GROUPS)
    except OSError:
        foreign = True
    if foreign:
        raise TrainInputError(f"--out {out}: exists and is not an embedding file (HDF5 with "
                              "groups train, test); refusing to replace it")


def export_embeddings(run_dir: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
                      modality: str = "joint", device: str = "auto", batch_size: int | None = None,
                      num_workers: int | None = None, progress: bool = True,
                      combine: str = "mean", store: str | None = None,
                      protocol: str | None = None) -> dict[str, Any]:
    """Encode the train and test sides of the run's protocol (or of ``store``/``protocol``,
    e.g. for an imported run) and write docs/design.md §4.4's HDF5."""
    refuse_foreign_out(out)
    run = open_run(run_dir)
    cfg = run.config
    data = cfg.data
    store_path = str(store) if store is not None else data.store
    protocol = protocol if protocol is not None else data.protocol
    if not store_path or not protocol:
        raise TrainInputError(f"{run_dir}: the run names no store/protocol; pass --store and "
                              "--protocol")
    checkpoint_state = run.checkpoint(checkpoint)
    dev = resolve_device(device)
    store_obj = open_store(store_path)
    method = run.build(store_obj, checkpoint_state).to(dev)
    streams = embed_modalities(method, modality)
    groups = {}
    for side in ("train", "test"):
        loader, dataset = side_loader(
            store_path, protocol, side, kind=method.input_kind, window=data.window,
            batch_size=batch_size or cfg.engine.embed_batch_size,
            num_workers=data.num_workers if num_workers is None else num_workers,
            start_method=data.start_method, pin_memory=dev.type == "cuda",
            view=run.evaluation_view())
        emb, label, name = encode_side(method, loader, dataset, modality, dev,
                                       progress=progress, desc=f"embed {side}", combine=combine)
        groups[side] = EmbeddingGroup(embedding=emb, label=label, name=name)
    encoder = getattr(cfg.model, "encoder", None) or type(method.encoder(streams[0])).__name__
    attrs = {
        "method": cfg.method,
        "encoder": str(encoder),
        "modality": modality,
        "streams": ",".join(streams),
        "combine": combine if len(streams) > 1 else "none",
        "store": str(store_path),
        "dataset": store_obj.dataset,  # names the actions in skeleval tsne's legend
        "protocol": str(protocol),
        "checkpoint": str(checkpoint_state.path.resolve()),
        # skeleval records a result in the run only when this still matches its checkpoint.
        "checkpoint_sha256": file_sha256(checkpoint_state.path),
        "epoch": checkpoint_state.epoch,
        "config": json.dumps(cfg.to_dict()),
    }
    write_embeddings(out, groups, attrs)
    return {"out": str(out), "train": len(groups["train"].label),
            "test": len(groups["test"].label), "dim": int(groups["train"].embedding.shape[1]),
            **{k: attrs[k] for k in ("method", "modality", "epoch")}}
