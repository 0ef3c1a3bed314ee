"""A run as the rest of skelkit sees it: its config and checkpoint, its method, its device, its
un-augmented evaluation view, and the store sides encoded by its frozen encoder.

This is the one door of ``skelkit.train`` for the evaluation room (``skeleval``), for
``skeltrain embed`` and for the training engine itself: run directories are read only here (their
paths come from :mod:`skelkit.store.rundir`), methods are looked up and built only here, and the
device is resolved only here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from skelkit.errors import InputError, one_line
from skelkit.store.reader import Store
from skelkit.store.rundir import RunDir
from skelkit.train.augment import CMDEvalView, TemporalCropResize
from skelkit.train.checkpoint import CheckpointError, load_checkpoint
from skelkit.train.config import ConfigError, RunConfig, build_run_config
from skelkit.train.data import Augment, SkeletonDataset, View, build_augment, make_loader
from skelkit.train.methods import METHODS, Method

ALL_MODALITIES = "all"
COMBINE = ("mean", "concat")

__all__ = [
    "ALL_MODALITIES", "COMBINE", "CheckpointState", "Run", "TrainInputError", "build_method",
    "centre_crop", "compute_embeddings", "embed_modalities", "encode_side", "method_class",
    "open_run", "resolve_device", "side_dataset", "side_loader", "side_order", "temporal_crop",
]


class TrainInputError(InputError):
    """Bad input (store, protocol, method, config, run dir): the CLI prints it and exits 2."""


# --- methods and devices --------------------------------------------------------------------------

def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise TrainInputError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; asking for CUDA
    on a machine without it is bad input, not a crash deep inside torch."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainInputError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise TrainInputError(f"--device {name}: not a torch device (auto, cpu, cuda, cuda:N)"
                              ) from None


def build_method(cfg: RunConfig, store: Store) -> Method:
    """The method, built from the store's layout and body count (nothing hard-codes NTU)."""
    return method_class(cfg.method)(cfg.model, store.layout, num_bodies=store.max_bodies)


# --- a run directory -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckpointState:
    """A loaded checkpoint (``weights_only``) checked to belong to the run's method."""

    path: Path
    state: dict[str, Any] = field(repr=False)

    @property
    def epoch(self) -> int:
        return int(self.state.get("epoch", -1))

    @property
    def weights(self) -> dict[str, Any]:
        return dict(self.state["model"])


@dataclass(frozen=True)
class Run:
    """A run directory's resolved config, read once; checkpoints are loaded on request."""

    dir: RunDir
    config: RunConfig

    @property
    def method_cls(self) -> type[Method]:
        return method_class(self.config.method)

    @property
    def input_kind(self) -> str:
        return self.method_cls.input_kind

    @property
    def window(self) -> int:
        return int(self.config.data.window)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The streams the run trained."""
        return self.config.model.trained_modalities()

    def checkpoint(self, name: str | Path | None = None) -> CheckpointState:
        """``checkpoints/last.pt`` (or ``name``), loaded with ``weights_only``."""
        path = self.dir.checkpoint(name)
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            raise TrainInputError(one_line(err)) from None
        if state.get("method") != self.config.method:
            raise TrainInputError(f"{path}: checkpoint of method {state.get('method')!r}, but "
                                  f"{self.dir.path} is a {self.config.method!r} run")
        return CheckpointState(path=path, state=state)

    def build(self, store: Store, checkpoint: CheckpointState | None = None) -> Method:
        """The method for ``store``; with ``checkpoint`` its weights loaded (one line when they do
        not fit, e.g. a store of another layout)."""
        method = build_method(self.config, store)
        if checkpoint is not None:
            try:
                method.load_state_dict(checkpoint.weights)
            except RuntimeError as err:
                lines = str(err).splitlines()
                first = lines[1].strip() if len(lines) > 1 else str(err)
                raise TrainInputError(one_line(
                    f"{checkpoint.path}: weights do not fit a {self.config.method} built for "
                    f"store layout {store.layout.name} ({first})")) from None
        return method

    def evaluation_view(self) -> View:
        """The un-augmented view the run's encoder is evaluated on (``skeltrain embed``, the KNN
        monitor, fine-tuning, ``skeleval --run``): its method's ``evaluation_view`` under the
        run's model config, e.g. CMD's centre crop in reference fidelity."""
        return self.method_cls.evaluation_view(self.config.model, self.window)

    def train_augment(self) -> Augment | None:
        """The run's own pre-training augmentation (``data.augment``)."""
        return build_augment(self.config.data.augment)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config of a run directory (bad YAML and bad keys are one line)."""
    rundir = RunDir(run_dir)
    tree = rundir.read_config()
    method = tree.get("method")
    if not isinstance(method, str):
        raise TrainInputError(f"{rundir.config}: resolved config lacks a 'method' key")
    try:
        return build_run_config(tree, method, method_class(method))
    except ConfigError as exc:
        raise TrainInputError(f"{rundir.config}: {exc}") from None


def open_run(run_dir: str | Path) -> Run:
    return Run(dir=RunDir(run_dir), config=load_run_config(run_dir))


# --- views of a store side -------------------------------------------------------------------------

def temporal_crop(window: int, low: float, high: float, min_frames: int) -> TemporalCropResize:
    """A random temporal crop of ratio U[low, high] of the valid sequence, resized to ``window``
    (CMD's fine-tune and linear feeders)."""
    return TemporalCropResize(window=window, min_ratio=low, max_ratio=high, min_frames=min_frames)


def centre_crop(ratio: float, window: int) -> CMDEvalView:
    """The centre ``ratio`` of the valid sequence resized to ``window`` (CMD's test feeder)."""
    return CMDEvalView(ratio=ratio, window=window)


def side_dataset(store: str | Path, protocol: str, side: str, *, kind: str, window: int,
                 seed: int = 0, view: View | None = None, augment: Augment | None = None,
                 modality: str = "joint") -> SkeletonDataset:
    """One protocol side: with ``augment`` the views ``q``/``k`` drawn per (sample, epoch),
    otherwise the un-augmented ``x`` under ``view``."""
    if augment is not None:
        return SkeletonDataset(store, protocol, side, kind=kind, mode="train", augment=augment,
                               window=window, seed=seed, modality=modality)
    return SkeletonDataset(store, protocol, side, kind=kind, mode="embed", window=window,
                           seed=seed, modality=modality, view=view)


def batches(dataset: Dataset, *, batch_size: int, shuffle: bool, seed: int, drop_last: bool,
            num_workers: int, start_method: str, pin_memory: bool) -> tuple[DataLoader, Any]:
    """A loader and its epoch sampler (``sampler.set_epoch(e)`` before epoch ``e``)."""
    return make_loader(dataset, batch_size=batch_size, shuffle=shuffle, seed=seed,
                       drop_last=drop_last, num_workers=num_workers, start_method=start_method,
                       pin_memory=pin_memory)


def side_loader(store: str | Path, protocol: str, side: str, *, kind: str, window: int,
                batch_size: int, num_workers: int, start_method: str, pin_memory: bool,
                seed: int = 0, modality: str = "joint", view: View | None = None
                ) -> tuple[DataLoader, SkeletonDataset]:
    """Un-augmented batches of one side in store order."""
    dataset = side_dataset(store, protocol, side, kind=kind, window=window, seed=seed,
                           modality=modality, view=view)
    loader, _ = batches(dataset, batch_size=batch_size, shuffle=False, seed=seed,
                        drop_last=False, num_workers=num_workers, start_method=start_method,
                        pin_memory=pin_memory)
    return loader, dataset


def side_order(dataset: SkeletonDataset, rows: np.ndarray) -> np.ndarray:
    """Positions in the side of the given store rows (to pick their labels and names)."""
    position = {int(r): i for i, r in enumerate(dataset.meta.indices)}
    return np.array([position[int(r)] for r in rows], dtype=np.int64)


# --- encoding --------------------------------------------------------------------------------------

def embed_modalities(method: Method, modality: str) -> tuple[str, ...]:
    """The streams to encode: one trained modality, or all of them for ``all``."""
    trained = tuple(method.modalities)
    if modality == ALL_MODALITIES:
        return trained
    if modality not in trained:
        raise TrainInputError(f"modality {modality!r} was not trained by {method.name}; "
                              f"trained: {', '.join(trained)} (or all)")
    return (modality,)


@torch.no_grad()
def compute_embeddings(method: Method, loader: Any, modality: str, device: torch.device, *,
                       progress: bool = False, desc: str = "embed",
                       combine: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """(N, D) embeddings in loader order and the store rows they belong to.

    ``modality="all"`` combines every trained stream: ``mean`` (the papers' multi-stream
    ensembles average them, D as one stream) or ``concat`` (D times the number of streams,
    in the order of the method's modalities).
    """
    if combine not in COMBINE:
        raise TrainInputError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
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


def encode_side(method: Method, loader: DataLoader, dataset: SkeletonDataset, modality: str,
                device: torch.device, *, progress: bool = False, desc: str = "embed",
                combine: str = "mean") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, names) of one side, in the side's order of the loader's batches."""
    features, rows = compute_embeddings(method, loader, modality, device, progress=progress,
                                        desc=desc, combine=combine)
    order = side_order(dataset, rows)
    return features, dataset.meta.labels[order], dataset.meta.names[order]
