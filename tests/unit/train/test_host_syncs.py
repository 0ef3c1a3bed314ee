"""No host synchronisation per training step: every method, through the engine's own loop.

A device->host read (``float(t)``, ``t.item()``, ``bool(t)``, ``t.tolist()``, ``t.cpu()``,
``t.numpy()``, or an op whose output size depends on the data) makes the host wait for the
device. The engine reads its step logs back only every ``engine.log_every`` steps and at the end
of an epoch (:mod:`skelkit.train.steplog`); between two reads a step must make none.

On a CPU-only machine a ``.to("cpu")`` of a CPU tensor cannot be told from a no-op, so the
counter sees reads through the calls above; the engine's and the methods' code uses only those.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from skelkit.train.config import resolve_run_config
from skelkit.train.data import write_random_walk_store
from skelkit.train.engine import NonFiniteLossError, train
from skelkit.train.methods import METHODS
from skelkit.train.runs import method_class
from skelkit.train.steplog import StepLog

# Ops that hand a value (or a data-dependent size) from the device to the host.
SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default",
            "aten.masked_select.default", "aten.is_nonzero.default", "aten.equal.default",
            "aten._unique2.default", "aten.unique_consecutive.default"}
SYNC_METHODS = ("tolist", "cpu", "numpy")


def optimizer_step_count() -> bool:
    """Whether the read in progress is a torch optimiser's ``_get_value(step)``: Adam(W) keeps its
    step counts on the host (unless ``capturable``/``fused``) precisely so that reading them never
    waits for the device; on this CPU-only machine they look like any other read."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "_get_value" and "torch/optim" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class SyncCounter(TorchDispatchMode):
    """Counts host reads in this thread (the loader runs here: ``num_workers=0``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if str(func) in SYNC_OPS and not optimizer_step_count():
            self.count += 1
        return func(*args, **(kwargs or {}))


@contextmanager
def counting() -> Iterator[SyncCounter]:
    counter = SyncCounter()
    originals = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def counted(original: Any) -> Any:
        def call(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return original(self, *args, **kwargs)
        return call

    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counted(original))
        with counter:
            yield counter
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("syncs") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 60), seed=1)


FAST = ["data.num_workers=0", "engine.batch_size=4", "engine.knn_every=0", "engine.threads=1",
        "model.queue_size=16"]
EXTRA = {
    "cmd": ["model.topk=8"],
    "i2md": ["model.topk=8"],
    # Stage two (cross-view mining) from the second epoch, so both stages are counted.
    "crossclr": ["model.cross_view_epoch=1", "model.topk=2"],
    "ikem": ["model.cross_view_epoch=1", "model.topk=2"],
    "ikem-student": [],
}


def config(method: str, store: Path, *extra: str, epochs: int = 2) -> Any:
    return resolve_run_config(method, method_class(method), "tiny",
                              [*FAST, *EXTRA.get(method, []), *extra],
                              {"data.store": str(store), "data.protocol": "xsub",
                               "engine.epochs": epochs, "engine.device": "cpu"})


def syncs_per_step(monkeypatch: pytest.MonkeyPatch, cfg: Any, run_dir: Path) -> list[list[int]]:
    """Host reads made between one step's ``StepLog.add`` and the next, per epoch (the first
    step of an epoch also carries the loader's start and the previous epoch's end)."""
    epochs: list[list[int]] = []
    original_add, original_init = StepLog.add, StepLog.__init__

    def init(self: StepLog, device: torch.device) -> None:
        original_init(self, device)
        epochs.append([])

    def add(self: StepLog, loss: torch.Tensor, logs: dict[str, Any]) -> None:
        original_add(self, loss, logs)
        epochs[-1].append(counter.count)

    monkeypatch.setattr(StepLog, "__init__", init)
    monkeypatch.setattr(StepLog, "add", add)
    with counting() as counter:
        train(cfg, run_dir, progress=False)
    return [[b - a for a, b in itertools.pairwise(marks)] for marks in epochs]


def teacher_overrides(store: Path, tmp_path: Path) -> list[str]:
    """An IKEM teacher run (its random initialisation suffices here) for the student."""
    train(config("ikem", store, epochs=0), tmp_path / "teacher", progress=False)
    return [f"model.teacher={tmp_path / 'teacher'}"]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_no_host_sync_between_log_reads(method: str, store: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    extra = teacher_overrides(store, tmp_path) if method == "ikem-student" else []
    per_epoch = syncs_per_step(monkeypatch, config(method, store, *extra), tmp_path / "run")
    assert len(per_epoch) == 2 and all(len(steps) >= 2 for steps in per_epoch)
    assert per_epoch == [[0] * len(steps) for steps in per_epoch]


def test_reads_come_at_the_log_interval_and_the_counter_sees_them(
        store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``engine.log_every=2``: a read after every second step, none elsewhere; this also shows
    the counter is not blind to the engine's reads."""
    per_epoch = syncs_per_step(monkeypatch, config("cmd", store, "engine.log_every=2"),
                               tmp_path / "run")
    # steps[i]: reads after step i + 1 (1-based) up to step i + 2: the read after steps 2, 4, ...
    assert all(len(steps) >= 2 for steps in per_epoch)
    for steps in per_epoch:
        assert all((count > 0) == (i % 2 == 1) for i, count in enumerate(steps)), steps


def test_a_per_step_float_in_a_method_is_counted(store: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails when a method converts a log term on the host (as they used to)."""
    cls = method_class("skeletonclr")
    original = cls.loss

    def eager(self: Any, encoded: Any, epoch: int) -> Any:
        out = original(self, encoded, epoch)
        out.logs = {k: float(v) for k, v in out.logs.items()}
        return out

    monkeypatch.setattr(cls, "loss", eager)
    per_epoch = syncs_per_step(monkeypatch, config("skeletonclr", store), tmp_path / "run")
    assert all(count >= 2 for steps in per_epoch for count in steps)


def test_nan_loss_is_caught_at_the_read_with_its_step(store: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The device-side flag keeps the first non-finite step and its value until the read."""
    cls = method_class("skeletonclr")
    original = cls.loss
    calls = {"n": 0}

    def poisoned(self: Any, encoded: Any, epoch: int) -> Any:
        out = original(self, encoded, epoch)
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 1, step 3; later steps finite again
            out.loss = out.loss * float("inf")
        return out

    monkeypatch.setattr(cls, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at epoch 1 step 3;"):
        train(config("skeletonclr", store), tmp_path / "run", progress=False)
