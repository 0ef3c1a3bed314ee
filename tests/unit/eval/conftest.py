"""Shared helpers for the eval tests: synthetic embedding files and run directories."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from skelkit.store.embeddings import EmbeddingGroup, write_embeddings


def clustered(
    rng: np.random.Generator, n: int, dim: int, num_classes: int, spread: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around random class centres (distance ~3 apart per dimension)."""
    centres = rng.standard_normal((num_classes, dim)) * 3.0
    label = rng.integers(0, num_classes, size=n)
    x = centres[label] + spread * rng.standard_normal((n, dim))
    return x.astype(np.float32), label.astype(np.int64)


def write_split_file(
    path: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    attrs: dict[str, Any] | None = None,
) -> Path:
    groups = {
        name: EmbeddingGroup(x, y, np.array([f"{name}{i:05d}" for i in range(len(y))]))
        for name, (x, y) in (("train", train), ("test", test))
    }
    write_embeddings(path, groups, attrs or {"method": "test", "modality": "joint"})
    return path


@pytest.fixture
def make_clustered():
    return clustered


@pytest.fixture
def make_split_file():
    return write_split_file


@pytest.fixture
def make_run():
    return make_run_dir


@pytest.fixture
def sgd_learning_rates(monkeypatch) -> list[float]:
    """The learning rate of every SGD step taken while the test runs, in order."""
    import torch

    seen: list[float] = []
    original_step = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    return seen


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def separable_file(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Two well separated groups sharing 6 class centres: KNN and linear should be near 100 %."""
    centres = rng.standard_normal((6, 16)) * 3.0

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 6, size=n)
        return (centres[y] + 0.3 * rng.standard_normal((n, 16))).astype(np.float32), y
    return write_split_file(tmp_path / "sep.h5", draw(300), draw(120))


def make_run_dir(root: Path, name: str, seed: int, *, epochs: int = 10,
                 method: str = "cmd", store: str = "ntu60.zarr") -> Path:
    """A run directory as `skeltrain run` leaves it: the resolved config.yaml and a checkpoint."""
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    config = {
        "method": method,
        "data": {"store": store, "protocol": "xsub", "num_workers": 2},
        "optim": {"name": "sgd", "lr": 0.01},
        "schedule": {"kind": "step", "milestones": [8]},
        "engine": {"epochs": epochs, "seed": seed, "device": "auto"},
        "model": {"hidden": 32},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    return run


# --- tiny pre-trained runs on a random-walk store (shared by the recipe and baseline tests) ---

TINY_RUN_OVERRIDES = {
    "cmd": ["data.num_workers=0", "engine.batch_size=8", "engine.knn_every=0",
            "engine.threads=1", "model.queue_size=32", "model.topk=8",
            "model.encoder_args.hidden_size=16"],
    "i2md": ["data.num_workers=0", "engine.batch_size=8", "engine.knn_every=0",
             "engine.threads=1", "model.queue_size=32", "model.topk=8", "model.neighbours=4",
             "model.encoder_args.gcn_widths=[8,8,8]", "model.encoder_args.dim=16",
             "model.encoder_args.layers=1", "model.encoder_args.heads=2",
             "model.encoder_args.ffn_dim=32"],
    "skeletonclr": ["data.num_workers=0", "engine.batch_size=8", "engine.knn_every=0",
                    "engine.threads=1", "model.queue_size=32"],
}


@pytest.fixture(scope="session")
def random_walk_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skelkit.train.data import write_random_walk_store

    root = tmp_path_factory.mktemp("eval-store")
    return write_random_walk_store(root / "rw.zarr", classes=4, per_class=8, frames=(20, 40),
                                   seed=1)


@pytest.fixture(scope="session")
def tiny_run(random_walk_store: Path, tmp_path_factory: pytest.TempPathFactory):
    """tiny_run(method, epochs) -> a run directory trained on the random-walk store (cached)."""
    import torch

    from skelkit.train.config import resolve_run_config
    from skelkit.train.engine import train
    from skelkit.train.runs import method_class

    made: dict[tuple[str, int], Path] = {}

    def make(method: str, epochs: int) -> Path:
        if (method, epochs) not in made:
            torch.set_num_threads(1)
            cfg = resolve_run_config(method, method_class(method), "tiny",
                                     TINY_RUN_OVERRIDES[method],
                                     {"data.store": str(random_walk_store),
                                      "data.protocol": "xsub", "engine.epochs": epochs,
                                      "engine.device": "cpu"})
            run = tmp_path_factory.mktemp("runs") / f"{method}-{epochs}"
            train(cfg, run, progress=False)
            made[(method, epochs)] = run
        return made[(method, epochs)]

    return make
