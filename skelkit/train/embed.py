"""Frozen embeddings: batched un-augmented encoding, the KNN monitor, and the HDF5 export (§4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from skelkit.store.embeddings import EmbeddingGroup, write_embeddings
from skelkit.store.reader import open_store
from skelkit.train.checkpoint import load_checkpoint
from skelkit.train.data import SkeletonDataset, make_loader

ALL_MODALITIES = "all"
COMBINE = ("mean", "concat")


def embed_modalities(method: Any, modality: str) -> tuple[str, ...]:
    """The streams to encode: one trained modality, or all of them for ``all``."""
    trained = tuple(method.modalities)
    if modality == ALL_MODALITIES:
        return trained
    if modality not in trained:
        raise ValueError(f"modality {modality!r} was not trained by {method.name}; "
                         f"trained: {', '.join(trained)} (or all)")
    return (modality,)


@torch.no_grad()
def compute_embeddings(method: Any, loader: Any, modality: str, device: torch.device, *,
                       progress: bool = False, desc: str = "embed",
                       combine: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings in loader order and the store rows they belong to.

    ``modality="all"`` combines every trained stream: ``mean`` (the papers' multi-stream
    ensembles average them, D as one stream) or ``concat`` (D times the number of streams,
    in the order of the method's modalities).
    """
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    streams = embed_modalities(method, modality)
    was_training = method.training
    method.eval()
    chunks, rows = [], []
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
            x = batch["x"].to(device, non_blocking=True)
            gamma = batch["gamma"].to(device, non_blocking=True)
            feats = [method.embed(x, gamma, s).float() for s in streams]
            joined = torch.cat(feats, dim=1) if combine == "concat" else torch.stack(feats).mean(0)
            chunks.append(joined.cpu().numpy())
            rows.append(batch["index"].numpy())
    finally:
        method.train(was_training)
    if not chunks:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(chunks).astype(np.float32), np.concatenate(rows).astype(np.int64)


def knn_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
             chunk: int = 2048) -> float:
    """Top-1 accuracy of cosine 1-nearest-neighbour classification of test against train."""
    a = torch.nn.functional.normalize(torch.as_tensor(train_x, dtype=torch.float32), dim=1)
    b = torch.nn.functional.normalize(torch.as_tensor(test_x, dtype=torch.float32), dim=1)
    ya = torch.as_tensor(train_y)
    hits = 0
    for lo in range(0, len(b), chunk):
        nearest = (b[lo:lo + chunk] @ a.T).argmax(dim=1)
        hits += int((ya[nearest] == torch.as_tensor(test_y[lo:lo + chunk])).sum())
    return hits / max(len(b), 1)


def embed_view(cfg: Any) -> Any:
    """The un-augmented view a run's encoder is evaluated on (``skeltrain embed``, the KNN
    monitor, fine-tuning): its method's ``evaluation_view`` under the run's model config, e.g.
    CMD's centre crop in reference fidelity. A picklable function of one sample (3, T, V, M)."""
    from skelkit.train.engine import method_class

    return method_class(cfg.method).evaluation_view(cfg.model, cfg.data.window)


def side_loader(store: str, protocol: str, side: str, *, kind: str, window: int, batch_size: int,
                num_workers: int, start_method: str, pin_memory: bool, seed: int = 0,
                modality: str = "joint", view: Any = None) -> tuple[Any, SkeletonDataset]:
    dataset = SkeletonDataset(store, protocol, side, kind=kind, mode="embed", window=window,
                              seed=seed, modality=modality, view=view)
    loader, _ = make_loader(dataset, batch_size=batch_size, shuffle=False, seed=seed,
                            drop_last=False, num_workers=num_workers, start_method=start_method,
                            pin_memory=pin_memory)
    return loader, dataset


def resolve_checkpoint(run_dir: Path, checkpoint: str | Path | None) -> Path:
    if checkpoint is None:
        return run_dir / "checkpoints" / "last.pt"
    p = Path(checkpoint)
    if not p.exists() and (run_dir / "checkpoints" / p).exists():
        return run_dir / "checkpoints" / p
    return p


def export_embeddings(run_dir: str | Path, out: str | Path, *, checkpoint: str | Path | None = None,
                      modality: str = "joint", device: str = "auto", batch_size: int | None = None,
                      num_workers: int | None = None, progress: bool = True,
                      combine: str = "mean", store: str | None = None,
                      protocol: str | None = None) -> dict[str, Any]:
    """Encode the train and test sides of the run's protocol (or of ``store``/``protocol``,
    e.g. for an imported run) and write docs/design.md §4.4's HDF5."""
    from skelkit.train.engine import TrainInputError, build_method, load_run_config, resolve_device

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if store is not None:
        cfg.data.store = str(store)
    if protocol is not None:
        cfg.data.protocol = protocol
    if not cfg.data.store or not cfg.data.protocol:
        raise TrainInputError(f"{run_dir}: the run names no store/protocol; pass --store and "
                              "--protocol")
    ckpt_path = resolve_checkpoint(run_dir, checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    if ckpt["method"] != cfg.method:
        raise ValueError(f"{ckpt_path}: checkpoint of method {ckpt['method']!r}, "
                         f"run is {cfg.method!r}")
    dev = resolve_device(device)
    store = open_store(cfg.data.store)
    method = build_method(cfg, store)
    method.load_state_dict(ckpt["model"])
    method.to(dev)
    streams = embed_modalities(method, modality)
    bs = batch_size or cfg.engine.embed_batch_size
    workers = cfg.data.num_workers if num_workers is None else num_workers
    groups = {}
    for side in ("train", "test"):
        loader, dataset = side_loader(
            cfg.data.store, cfg.data.protocol, side, kind=method.input_kind,
            window=cfg.data.window, batch_size=bs, num_workers=workers,
            start_method=cfg.data.start_method, pin_memory=dev.type == "cuda",
            view=embed_view(cfg))
        emb, rows = compute_embeddings(method, loader, modality, dev, progress=progress,
                                       desc=f"embed {side}", combine=combine)
        position = {int(r): i for i, r in enumerate(dataset.meta.indices)}
        order = np.array([position[int(r)] for r in rows], dtype=np.int64)
        groups[side] = EmbeddingGroup(embedding=emb, label=dataset.meta.labels[order],
                                      name=dataset.meta.names[order])
    encoder = getattr(cfg.model, "encoder", None) or type(method.encoder(streams[0])).__name__
    attrs = {
        "method": cfg.method,
        "encoder": str(encoder),
        "modality": modality,
        "streams": ",".join(streams),
        "combine": combine if len(streams) > 1 else "none",
        "store": str(cfg.data.store),
        "protocol": str(cfg.data.protocol),
        "checkpoint": str(Path(ckpt_path).resolve()),
        "epoch": int(ckpt["epoch"]),
        "config": json.dumps(cfg.to_dict()),
    }
    write_embeddings(out, groups, attrs)
    return {"out": str(out), "train": len(groups["train"].label),
            "test": len(groups["test"].label), "dim": int(groups["train"].embedding.shape[1]),
            **{k: attrs[k] for k in ("method", "modality", "epoch")}}
