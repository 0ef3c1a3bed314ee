"""The engine: exact resume, random-init checkpoints, NaN stop, schedules, KNN monitor, DDP."""

from __future__ import annotations

import csv
import dataclasses
import os
import socket
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from skelkit.knn import knn_evaluate
from skelkit.train.checkpoint import load_checkpoint
from skelkit.train.config import OptimConfig, ScheduleConfig, resolve_run_config
from skelkit.train.data import write_random_walk_store
from skelkit.train.engine import EpochSchedule, NonFiniteLossError, build_optimizer, train
from skelkit.train.methods import METHODS
from skelkit.train.methods.base import Method, MethodConfig
from skelkit.train.runs import method_class

FAST = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=0",
        "engine.checkpoint_every=2", "model.queue_size=16", "engine.threads=1"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("engine") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 60), seed=1)


def config(method: str, store: Path, *extra: str, epochs: int = 3):
    fast = [*FAST, "model.topk=8"] if method == "cmd" else FAST
    return resolve_run_config(method, method_class(method), "tiny", [*fast, *extra],
                              {"data.store": str(store), "data.protocol": "xsub",
                               "engine.epochs": epochs, "engine.device": "cpu"})


def metric_column(run_dir: Path, key: str) -> list[float]:
    with (run_dir / "metrics.csv").open(newline="") as f:
        return [float(r[key]) for r in csv.DictReader(f)]


def test_resume_continues_exactly(store: Path, tmp_path: Path) -> None:
    """A run cut after 2 of 3 epochs (cosine schedule over 3) and resumed equals the full run."""
    full = train(config("skeletonclr", store, epochs=3), tmp_path / "full", progress=False)
    train(config("skeletonclr", store, epochs=3), tmp_path / "cut", progress=False, stop_after=2)
    resumed = train(config("skeletonclr", store, epochs=3), tmp_path / "cut", resume=True,
                    progress=False)
    assert metric_column(tmp_path / "full", "epoch") == [1, 2, 3]
    assert metric_column(tmp_path / "cut", "epoch") == [1, 2, 3]
    # Bit-identical losses and weights, not merely close ones.
    assert metric_column(tmp_path / "cut", "loss") == metric_column(tmp_path / "full", "loss")
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    names = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir())
    assert names == ["epoch_0000.pt", "epoch_0002.pt", "epoch_0003.pt", "last.pt"]
    for name in ("config.yaml", "train.log", "metrics.csv"):
        assert (tmp_path / "full" / name).is_file()
    assert any((tmp_path / "full" / "tb").iterdir())


def test_resume_extends_a_finished_run(store: Path, tmp_path: Path) -> None:
    """Step schedule: 2 epochs, then --resume with --epochs 3, equals 3 epochs straight."""
    step = ["schedule.kind=step", "schedule.milestones=[2]"]
    train(config("cmd", store, *step, epochs=3), tmp_path / "full", progress=False)
    train(config("cmd", store, *step, epochs=2), tmp_path / "cut", progress=False)
    train(config("cmd", store, *step, epochs=3), tmp_path / "cut", resume=True, progress=False)
    assert metric_column(tmp_path / "cut", "loss") == metric_column(tmp_path / "full", "loss")
    assert metric_column(tmp_path / "cut", "lr") == pytest.approx([0.05, 0.05, 0.005])


def test_epochs_zero_writes_the_random_initialisation(store: Path, tmp_path: Path) -> None:
    result = train(config("cmd", store, epochs=0), tmp_path / "r0", progress=False)
    path = tmp_path / "r0" / "checkpoints" / "last.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain types only
    assert payload["epoch"] == 0 and payload["method"] == "cmd"
    assert "method: cmd" in payload["config"]
    torch.manual_seed(0)
    fresh = method_class("cmd")(config("cmd", store, epochs=0).model,
                                result.method.layout, num_bodies=2)
    assert all(torch.equal(v, payload["model"][k]) for k, v in fresh.state_dict().items())
    assert not (tmp_path / "r0" / "metrics.csv").exists()


@dataclasses.dataclass
class ToyConfig(MethodConfig):
    nan_at_epoch: int = -1
    dim: int = 8


class Toy(Method):
    """A linear encoder pulling two views together; optionally a NaN loss from one epoch on."""

    name: ClassVar[str] = "toy"
    Config: ClassVar[type[MethodConfig]] = ToyConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: ToyConfig, layout: Any, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.modalities = ("joint",)
        self.net = nn.Linear(3 * layout.num_joints * num_bodies, cfg.dim)

    def encoder(self, modality: str) -> nn.Module:
        return self.net

    def embed(self, x: torch.Tensor, gamma: torch.Tensor, modality: str) -> torch.Tensor:
        return self.net(x.mean(2).flatten(1))

    def training_step(self, batch: dict[str, torch.Tensor], epoch: int) -> Any:
        zq = F.normalize(self.embed(batch["q"], batch["gamma"], "joint"), dim=1)
        zk = F.normalize(self.embed(batch["k"], batch["gamma"], "joint"), dim=1)
        loss = (zq - zk).pow(2).sum(1).mean()
        if 0 <= self.cfg.nan_at_epoch <= epoch:
            loss = loss * float("nan")
        return loss, {"toy/pull": float(loss.detach())}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(METHODS, "toy", Toy)
    cfg_path = tmp_path / "toy.yaml"
    cfg_path.write_text("method: toy\ndata: {num_workers: 0}\nengine: {batch_size: 4, "
                        "device: cpu, checkpoint_every: 1}\nmodel: {nan_at_epoch: 1}\n")
    return cfg_path


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(store: Path, toy: Path,
                                                          tmp_path: Path) -> None:
    cfg = resolve_run_config("toy", Toy, str(toy), [], {
        "data.store": str(store), "data.protocol": "xsub", "engine.epochs": 4})
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2 step 1.*last\.pt"):
        train(cfg, tmp_path / "nan", progress=False)
    last = load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in last["model"].values())
    assert metric_column(tmp_path / "nan", "epoch") == [1]
    assert "loss is nan" in (tmp_path / "nan" / "train.log").read_text()


def test_knn_monitor_logs_top1(store: Path, toy: Path, tmp_path: Path) -> None:
    cfg = resolve_run_config("toy", Toy, str(toy), ["model.nan_at_epoch=-1",
                                                    "engine.knn_every=2"], {
        "data.store": str(store), "data.protocol": "xsub", "engine.epochs": 3})
    result = train(cfg, tmp_path / "knn", progress=False)
    knn = [r.get("knn_top1") for r in result.metrics]
    assert knn[0] is None and knn[1] is not None and knn[2] is not None  # epochs 2 and last
    assert 0.0 <= knn[1] <= 1.0
    with (tmp_path / "knn" / "metrics.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["knn_top1"] == "" and float(rows[1]["knn_top1"]) == pytest.approx(knn[1])


def test_monitor_knn_matches_a_direct_count() -> None:
    """The monitor's measure, ``knn_evaluate(k=1).top1``: the nearest train sample's class."""
    rng = np.random.default_rng(0)
    train_x, test_x = rng.normal(size=(50, 6)), rng.normal(size=(30, 6))
    train_y, test_y = rng.integers(0, 4, 50), rng.integers(0, 4, 30)
    sims = (test_x / np.linalg.norm(test_x, axis=1, keepdims=True)) @ (
        train_x / np.linalg.norm(train_x, axis=1, keepdims=True)).T
    expected = float(np.mean(train_y[sims.argmax(1)] == test_y))
    knn = knn_evaluate(train_x, train_y, test_x, test_y, k=1, test_chunk=7, train_chunk=9)
    assert knn.top1 == pytest.approx(expected)
    assert knn_evaluate(train_x, train_y, train_x * 3.0, train_y, k=1).top1 == 1.0  # scale-free


def test_optimizer_choice() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    sgd = build_optimizer(params, OptimConfig(lr=0.1, momentum=0.8, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.8
    adamw = build_optimizer(params, OptimConfig(name="adamw", lr=1e-3, momentum=0.85,
                                                weight_decay=0.05))
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.defaults["betas"] == (0.85, 0.999) and adamw.defaults["weight_decay"] == 0.05


def test_schedules() -> None:
    step = EpochSchedule(0.1, ScheduleConfig(kind="step", milestones=[3, 5], gamma=0.1), 8)
    assert [round(step.lr(e), 6) for e in range(7)] == [0.1, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    cos = EpochSchedule(1.0, ScheduleConfig(kind="cosine", min_lr=0.0), 4)
    assert [cos.lr(e) for e in range(4)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])
    warm = EpochSchedule(1.0, ScheduleConfig(kind="step", warmup_epochs=2), 5)
    assert [warm.lr(e) for e in range(3)] == [0.5, 1.0, 1.0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, store: str, run_dir: str, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = config("skeletonclr", Path(store), "engine.batch_size=8", epochs=2)
    result = train(cfg, run_dir, progress=False)
    grads = {k: v for k, v in result.method.named_parameters() if v.requires_grad}
    torch.save({k: v.detach() for k, v in grads.items()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_processes_keep_weights_in_sync(store: Path, tmp_path: Path) -> None:
    """gloo, 2 ranks, different shards: only all-reduced gradients keep the weights equal."""
    torch.multiprocessing.spawn(_ddp_worker, args=(str(store), str(tmp_path / "ddp"),
                                                   _free_port(), str(tmp_path)), nprocs=2)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys() and a
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    fresh = config("skeletonclr", store, epochs=0)
    torch.manual_seed(0)
    init = method_class("skeletonclr")(fresh.model, __import__(
        "skelkit.store", fromlist=["NTU25"]).NTU25).state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a)  # it did train
    assert metric_column(tmp_path / "ddp", "epoch") == [1, 2]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["epoch"] == 2
