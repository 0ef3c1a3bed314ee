"""Shared machinery of the learning checks: does pre-training learn more than a random encoder?

On a synth store (``skelprep synth`` + ``skelprep build``; a random-walk store if skelprep is
missing) a check trains one method with one packaged config for ``max(epochs)`` epochs (one
schedule) and measures, from the checkpoints at each epoch in ``epochs`` (embeddings computed in
memory through ``skelkit.train.runs``, as ``skeltrain embed`` computes them):

- class KNN: cosine 1-NN top-1 of the pooled joint features, test side against train side;
- view retrieval: how often a test sample's first augmented view is nearest its own second view
  among the second views of all test samples (what the contrastive task teaches).

Checkpoint 0 is the random initialisation (the engine writes it before the first step). Its
BatchNorm statistics are the initial ones (mean 0, variance 1), which leaves a random ST-GCN's
pooled features nearly constant (class KNN near chance), so part of any "gain" over it is only
the statistics settling. The baseline the checks compare with is therefore the stronger of
checkpoint 0 and ``random_init_bn``: the same random weights with every BatchNorm's statistics
re-estimated on the un-augmented training side (a cumulative average over one pass).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skelkit.knn import knn_evaluate
from skelkit.store.reader import open_store
from skelkit.store.rundir import checkpoint_name
from skelkit.train.checkpoint import load_checkpoint
from skelkit.train.config import resolve_run_config
from skelkit.train.data import SkeletonDataset, build_augment, write_random_walk_store
from skelkit.train.engine import train
from skelkit.train.runs import build_method, encode_side, load_run_config, method_class, open_run, side_loader

PROTOCOL = "xsub"
THREADS = 2
"""Torch threads of every check, whatever the machine: CI's two cores, and the thread count
changes the order of float sums, so a check's numbers are only comparable at one count."""


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Runs the block with ``count`` intra-op threads, then restores the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_synth_store(folder: Path, classes: int | None = None,
                      performers: int | None = None, nuisance: str = "none") -> Path:
    """The ntu60 synth set built into a store with skelprep (random-walk store without it).

    ``nuisance="none"``: the generator the checks' thresholds were measured on (bit-identical
    to the one before ``skelprep synth --nuisance`` existed; the default level is ``real``)."""
    raw, store = folder / "raw", folder / "synth.zarr"
    try:
        from click.testing import CliRunner

        from skelkit.prep.cli import main as skelprep
    except ImportError:
        return write_random_walk_store(store, classes=classes or 20, per_class=60)
    runner = CliRunner()
    sizes = [*(["--classes", str(classes)] if classes else []),
             *(["--performers", str(performers)] if performers else [])]
    for args in (["synth", "--dataset", "ntu60", "--out", str(raw), "--nuisance", nuisance,
                  *sizes],
                 ["build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(store),
                  "--workers", "1"]):
        result = runner.invoke(skelprep, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return store


def knn_top1(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
             test_y: np.ndarray) -> float:
    """Cosine 1-NN top-1, the KNN monitor's measure."""
    return knn_evaluate(train_x, train_y, test_x, test_y, k=1).top1


def raw_knn(store: Path, window: int = 64) -> float:
    """1-NN on the un-augmented 64-frame joint views themselves (flattened)."""
    feats = {}
    for side in ("train", "test"):
        ds = SkeletonDataset(store, PROTOCOL, side, kind="sequence", mode="embed", window=window)
        items = ds.__getitems__(list(range(len(ds))))
        feats[side] = (np.stack([it["x"].ravel() for it in items]), ds.meta.labels)
    return knn_top1(*feats["train"], *feats["test"])


def checkpoint_knn(run_dir: Path, checkpoint: str, modality: str = "joint") -> float:
    """Class KNN of ``checkpoint``'s frozen encoder: both sides encoded in memory exactly as
    ``skeltrain embed`` encodes them (the run's evaluation view, store order), no HDF5 file."""
    sides = checkpoint_features(run_dir, checkpoint, modality)
    return knn_top1(*sides["train"], *sides["test"])


def effective_rank(features: np.ndarray) -> float:
    """exp(entropy) of the centred features' normalised squared singular values: 1.0 when the
    samples vary along one direction only (dimensional collapse), D when evenly along D."""
    singular = np.linalg.svd(features - features.mean(axis=0), compute_uv=False)
    share = singular**2 / max(float((singular**2).sum()), 1e-30)
    share = share[share > 0]
    return float(np.exp(-(share * np.log(share)).sum()))


def leading_direction(features: np.ndarray, covariate: np.ndarray) -> tuple[float, float]:
    """(share of the centred features' variance on their first principal direction, |Pearson
    correlation| of the samples' coordinates on it with ``covariate``): how much one axis
    dominates an embedding space and whether that axis is a known nuisance."""
    centred = features - features.mean(axis=0)
    left, singular, _ = np.linalg.svd(centred, full_matrices=False)
    share = float(singular[0] ** 2 / max(float((singular**2).sum()), 1e-30))
    coordinate = left[:, 0] * singular[0]
    if np.std(coordinate) == 0 or np.std(covariate) == 0:
        return share, 0.0
    return share, float(abs(np.corrcoef(coordinate, covariate)[0, 1]))


def checkpoint_features(run_dir: Path, checkpoint: str, modality: str = "joint"
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(features, labels) of the train and test sides under ``checkpoint``, as
    :func:`checkpoint_knn` compares them."""
    method, loaders = evaluation_loaders(run_dir, checkpoint)
    sides = {}
    for side, (loader, dataset) in loaders.items():
        features, labels, _ = encode_side(method, loader, dataset, modality, torch.device("cpu"))
        sides[side] = (features, labels)
    return sides


def evaluation_loaders(run_dir: Path, checkpoint: str
                       ) -> tuple[Any, dict[str, tuple[Any, SkeletonDataset]]]:
    """``checkpoint``'s method and, per side, the in-process loader of the run's un-augmented
    evaluation view (store order) with its dataset."""
    run = open_run(run_dir)
    store = run.config.data.store
    method = run.build(open_store(store), run.checkpoint(checkpoint))
    loaders = {side: side_loader(store, PROTOCOL, side, kind=method.input_kind,
                                 window=run.window,
                                 batch_size=run.config.engine.embed_batch_size, num_workers=0,
                                 start_method=run.config.data.start_method, pin_memory=False,
                                 view=run.evaluation_view())
               for side in ("train", "test")}
    return method, loaders


@torch.no_grad()
def view_retrieval(run_dir: Path, checkpoint: str, seed: int = 123,
                   modality: str = "joint") -> float:
    """Top-1 rate at which a test sample's first augmented view is nearest (cosine, pooled
    encoder features) to its own second view among the second views of all test samples."""
    cfg = load_run_config(run_dir)
    method = build_method(cfg, open_store(cfg.data.store))
    method.load_state_dict(load_checkpoint(run_dir / "checkpoints" / checkpoint)["model"])
    method.eval()
    ds = SkeletonDataset(cfg.data.store, PROTOCOL, "test", kind=method.input_kind, mode="train",
                         augment=build_augment(cfg.data.augment), window=cfg.data.window,
                         seed=seed)
    items = ds.__getitems__([(i, 0) for i in range(len(ds))])
    gamma = torch.tensor(np.array([it["gamma"] for it in items]))
    views = [torch.from_numpy(np.stack([it[v] for it in items])) for v in ("q", "k")]
    a, b = (torch.nn.functional.normalize(method.embed(x, gamma, modality), dim=1)
            for x in views)
    return float(((a @ b.T).argmax(1) == torch.arange(len(items))).float().mean())


@torch.no_grad()
def calibrate_batchnorm(run_dir: Path, checkpoint: str, batch_size: int = 128) -> str:
    """Write ``<checkpoint>_bn.pt`` beside ``checkpoint``: its weights, with the BatchNorm
    statistics of every trained stream re-estimated on the train side; returns its name."""
    cfg = load_run_config(run_dir)
    method = build_method(cfg, open_store(cfg.data.store))
    path = run_dir / "checkpoints" / checkpoint
    payload = load_checkpoint(path)
    method.load_state_dict(payload["model"])
    for module in method.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the pass
    method.train()
    ds = SkeletonDataset(cfg.data.store, PROTOCOL, "train", kind=method.input_kind, mode="embed",
                         window=cfg.data.window, view=open_run(run_dir).evaluation_view())
    for lo in range(0, len(ds), batch_size):
        items = ds.__getitems__(list(range(lo, min(lo + batch_size, len(ds)))))
        x = torch.from_numpy(np.stack([it["x"] for it in items]))
        gamma = torch.tensor(np.array([it["gamma"] for it in items]))
        for modality in method.modalities:
            method.embed(x, gamma, modality)
    payload["model"] = method.state_dict()
    name = path.stem + "_bn.pt"
    torch.save(payload, path.parent / name)
    return name


def pretrain(method: str, store: Path, run_dir: Path, epochs: int, seed: int = 0,
             overrides: tuple[str, ...] = (), config: str = "tiny") -> None:
    cfg = resolve_run_config(method, method_class(method), config,
                             ["engine.knn_every=0", f"engine.threads={THREADS}", *overrides],
                             {"data.store": str(store), "data.protocol": PROTOCOL,
                              "engine.epochs": epochs, "engine.device": "cpu",
                              "engine.seed": seed})
    train(cfg, run_dir, progress=False)


def learning_check(method: str, store: Path, workdir: Path, epochs: list[int], seed: int = 0,
                   overrides: tuple[str, ...] = (), config: str = "tiny",
                   views: bool = True) -> dict[str, float]:
    """``random_init`` and ``{method}_{e}`` class KNN (and ``..._views`` view retrieval when
    ``views``) for one run of ``max(epochs)`` epochs, read from its checkpoints."""
    with torch_threads(THREADS):
        run = workdir / method
        every = int(np.gcd.reduce(epochs))
        pretrain(method, store, run, max(epochs), seed,
                 (f"engine.checkpoint_every={every}", *overrides), config)
        calibrated = calibrate_batchnorm(run, checkpoint_name(0))
        report = {"random_init": checkpoint_knn(run, checkpoint_name(0)),
                  "random_init_bn": checkpoint_knn(run, calibrated)}
        if views:
            report["random_init_views"] = view_retrieval(run, checkpoint_name(0))
            report["random_init_bn_views"] = view_retrieval(run, calibrated)
        for e in epochs:
            report[f"{method}_{e}"] = checkpoint_knn(run, checkpoint_name(e))
            if views:
                report[f"{method}_{e}_views"] = view_retrieval(run, checkpoint_name(e))
        return report


def baseline(report: dict[str, float], views: bool = False) -> float:
    """The untrained encoder's score: the better of checkpoint 0 and its BN-calibrated copy."""
    suffix = "_views" if views else ""
    return max(report[f"random_init{suffix}"], report[f"random_init_bn{suffix}"])


Runner = Callable[[Path, Path, list[int], tuple[str, ...]], dict[str, dict[str, float]]]


def standalone_check(description: str, default_epochs: list[int], run: Runner) -> None:
    """Command line of a full learning check: ``--epochs``, ``--store``, ``--set``; prints the
    report of every method ``run(store, workdir, epochs, overrides)`` returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, nargs="+", default=default_epochs)
    parser.add_argument("--store", type=Path, default=None, help="Existing synth store.")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or build_synth_store(Path(tmp))
        t0 = time.perf_counter()
        result = run(store, Path(tmp), sorted(args.epochs), tuple(args.overrides))
        print(f"{description} on {store} ({time.perf_counter() - t0:.0f} s):")
        for method, report in result.items():
            for key, value in report.items():
                print(f"  {method:>12} {key:>24}: {100 * value:.1f} %")
