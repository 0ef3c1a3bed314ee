"""A few optimiser steps of one method on one fixed batch, and the same steps at lr = 0.

The smoke tests read what :func:`smoke_run` records: the loss on the fixed batch before and after
the steps (trained and control), both against the banks as the first step left them; every
queue's pointer and keys, every trainable parameter's gradient, every loss term's reach and the
key encoders around one step (``RECORDED_STEP``, for the EMA check).

Each method is built from its packaged ``tiny`` config with a smaller memory bank, on a
random-walk store; the batch is the first 8 training samples' two augmented views.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from skelkit.store.reader import open_store
from skelkit.train.checkpoint import save_checkpoint
from skelkit.train.config import RunConfig, resolve_run_config
from skelkit.train.data import build_augment
from skelkit.train.engine import build_optimizer
from skelkit.train.methods.base import Method, batch_views
from skelkit.train.moco import FeatureQueue, MoCoBranch
from skelkit.train.runs import build_method, method_class, side_dataset

STEPS = 5
SEED = 0
RECORDED_STEP = 1
"""The step whose gradients, loss terms, queue moves and key updates are recorded: the second.
At the rec, I²MD's bank values are still the initial zeros, so its cross-attention blocks read
an all-zero context and get no gradient (measured: every ``cross_attention`` and ``norm_cross``
parameter); from the second on the banks hold the first batch's keys and values."""
BATCH = 8
QUEUE = 32
"""Bank size of every method here: four batches, so the five steps wrap the pointer once."""
REFERENCE = ["model.fidelity=reference", "model.switches.init=default",
             "model.switches.dropout=0.5", "model.switches.graph=reference"]
"""The cross-view methods are smoke-tested with the published configs' switches (their tiny
configs set dropout 0 and the layout graph, which learn better over a few epochs) except the
init: the authors' N(0, 0.02) collapses the tiny widths. In paper fidelity the stage-two loss on a fixed
batch need not fall within five steps (measured: CrosSCLR 8.00 -> 9.15), since its positives are
re-mined from the other view as the encoders move."""
MODEL_OVERRIDES = {
    "cmd": [f"model.queue_size={QUEUE}", "model.topk=16"],
    "i2md": [f"model.queue_size={QUEUE}", "model.topk=16", "model.neighbours=4"],
    "skeletonclr": [f"model.queue_size={QUEUE}"],
    "crossclr": [f"model.queue_size={QUEUE}", "model.cross_view_epoch=1", *REFERENCE],
    "ikem": [f"model.queue_size={QUEUE}", "model.cross_view_epoch=1", *REFERENCE],
    "ikem-student": [f"model.queue_size={QUEUE}", *REFERENCE],
}

LR_SCALE = {"cmd": 0.2}
"""The packaged tiny learning rate, scaled where a fixed batch needs a smaller step: CMD's lr 0.05
with SGD momentum 0.9 overshoots on one batch (motion stream InfoNCE 1.19 -> 3.64 after 5 steps,
the total 6.29 -> 7.91; at 0.01: 1.19 -> 0.73, total 6.29 -> 4.01)."""


@dataclasses.dataclass
class QueueMove:
    size: int
    batch: int
    ptr_before: int
    ptr_after: int
    written_changed: bool
    """Every slot the step wrote differs from what it held before."""
    others_kept: bool
    """Every slot the step did not write is unchanged."""


@dataclasses.dataclass
class SmokeRecord:
    """What the smoke tests check, for one method at one training epoch (its stage)."""

    probe_before: float
    probe_after: float
    control_before: float
    control_after: float
    losses: list[float]
    queues: dict[str, QueueMove]
    grads: dict[str, Tensor | None]
    """First step: gradient of every parameter with ``requires_grad`` (None: none arrived)."""
    untrainable: list[str]
    """Names of the parameters without ``requires_grad`` (key encoders and heads)."""
    untrainable_grads: dict[str, Tensor | None]
    term_reach: dict[str, int]
    """Per loss term: how many encoder parameters its autograd graph reaches."""
    ema: dict[str, tuple[float, float]]
    """Per MoCo branch: (max |key - EMA(key, query)|, max |key - key before|) after step one."""
    frozen_keys: tuple[str, ...]
    momentum: dict[str, float]


def tiny_config(method: str, store: Path, lr_scale: float = 1.0,
                teacher: Path | None = None) -> RunConfig:
    """The method's packaged ``tiny`` config with a small bank, its learning rate scaled."""
    cfg = resolve_run_config(method, method_class(method), "tiny",
                             ["data.num_workers=0", "engine.knn_every=0",
                              *MODEL_OVERRIDES[method],
                              *([f"model.teacher={teacher}"] if teacher else [])],
                             {"data.store": str(store), "data.protocol": "xsub",
                              "engine.device": "cpu", "engine.seed": SEED})
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim,
                                                              lr=cfg.optim.lr * lr_scale))


def write_teacher_run(store: Path, folder: Path) -> Path:
    """A randomly initialised IKEM run directory (config.yaml + last checkpoint) as the
    student's teacher: the student's step does not depend on what the teacher learned."""
    cfg = tiny_config("ikem", store)
    torch.manual_seed(SEED)
    teacher = build_method(cfg, open_store(store))
    tree = {"method": "ikem", "data": {"store": str(store)}, "model": cfg.model.to_dict()}
    text = yaml.safe_dump(tree, sort_keys=False)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text)
    save_checkpoint(folder / "checkpoints" / "last.pt", method="ikem", epoch=1,
                    model=teacher.state_dict(), optimizer=None, scheduler=None, scaler=None,
                    config_text=text)
    return folder


def fixed_batch(cfg: RunConfig, method: Method) -> dict[str, Tensor]:
    """The two augmented views of the first ``BATCH`` training samples, drawn once (epoch 0)."""
    ds = side_dataset(cfg.data.store, "xsub", "train", kind=method.input_kind,
                      window=cfg.data.window, seed=SEED, augment=build_augment(cfg.data.augment))
    items = ds.__getitems__([(i, 0) for i in range(BATCH)])
    return {"q": torch.from_numpy(np.stack([it["q"] for it in items])),
            "k": torch.from_numpy(np.stack([it["k"] for it in items])),
            "gamma": torch.tensor(np.array([it["gamma"] for it in items]))}


def queues(method: nn.Module) -> Iterator[tuple[str, FeatureQueue]]:
    for name, module in method.named_modules():
        if isinstance(module, FeatureQueue):
            yield name, module


def branches(method: nn.Module) -> Iterator[tuple[str, MoCoBranch]]:
    for name, module in method.named_modules():
        if isinstance(module, MoCoBranch):
            yield name, module


def probe_loss(method: Method, batch: dict[str, Tensor], epoch: int,
               banks: dict[str, Tensor]) -> float:
    """The loss of one step on ``batch`` against the banks ``banks`` (state-dict entries), on a
    copy: the method itself is left as it was. Seeded, so dropout draws the same masks.

    The banks are those after the first step's enqueue: they hold the batch's own keys. Against
    the initial random banks a random encoder's loss is already near 0 (its pooled features
    barely differ between samples, so q.k ~ 1 beats random unit keys: SkeletonCLR measured 0.0)
    and cannot fall; against the batch's keys it is the instance discrimination the method
    learns (about ln 9 at the start: 8 near-equal keys plus random ones)."""
    twin = copy.deepcopy(method)
    twin.load_state_dict(banks, strict=False)
    torch.manual_seed(SEED + 1)
    with torch.no_grad():
        return float(twin.step(batch, epoch).loss)


def bank_state(method: nn.Module) -> dict[str, Tensor]:
    """Copies of every memory bank's buffers (keys, values, pointer), as state-dict entries."""
    state = method.state_dict()
    return {f"{name}.{buffer}": state[f"{name}.{buffer}"].clone()
            for name, _ in queues(method) for buffer in ("keys", "values", "ptr")
            if f"{name}.{buffer}" in state}


def encoder_parameters(method: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters of the encoders (not of heads or exchange MLPs)."""
    return [(n, p) for n, p in method.named_parameters()
            if p.requires_grad and ("encoder" in n)]


def reached_parameters(tensor: Tensor) -> set[int]:
    """Ids of the leaf tensors ``tensor``'s autograd graph leads to (a walk of the graph, no
    backward pass: one per loss term would cost more than the steps themselves)."""
    found: set[int] = set()
    seen: set[Any] = set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)  # AccumulateGrad: a leaf parameter
        if variable is not None:
            found.add(id(variable))
        stack.extend(child for child, _ in node.next_functions)
    return found


def loss_terms(method: Method, encoded: Any, out: Any) -> dict[str, Tensor]:
    """The named terms of this step's loss, however the method exposes them."""
    terms: dict[str, Tensor] = {"total": out.loss}
    if hasattr(method, "loss_terms"):  # CMD, I²MD
        terms.update(method.loss_terms(encoded))
    for field in ("view_losses", "exchange_losses", "stream_losses"):
        for name, value in (getattr(out, field, None) or {}).items():
            terms[f"{field}/{name}"] = value
    return terms


def run_steps(method: Method, cfg: RunConfig, batch: dict[str, Tensor], epoch: int,
              record: bool) -> tuple[list[float], dict[str, Any]]:
    """``STEPS`` optimiser steps on ``batch`` with the config's optimiser; the gradients, term
    reach, queue moves and key encoders of step ``RECORDED_STEP`` when ``record``; the
    banks after the first step's enqueue always."""
    optimizer = build_optimizer([p for p in method.parameters() if p.requires_grad], cfg.optim)
    method.train()
    losses: list[float] = []
    rec: dict[str, Any] = {}
    for step in range(STEPS):
        torch.manual_seed(SEED + 100 + step)
        if record and step == RECORDED_STEP:
            rec["queues_before"] = {n: (q.keys.clone(), int(q.ptr)) for n, q in queues(method)}
            rec["keys_before"] = {n: ([p.detach().clone() for p in b.encoder_k.parameters()]
                                        + [p.detach().clone() for p in b.head_k.parameters()],
                                        [p.detach().clone() for p in b.encoder_q.parameters()]
                                        + [p.detach().clone() for p in b.head_q.parameters()])
                                    for n, b in branches(method)}
            # The step's parts, in Method.step's order, so the loss terms can be read.
            q, k, gamma = batch_views(batch)
            encoded = method.encode(q, k, gamma, epoch)
            out = method.loss(encoded, epoch)
            terms = loss_terms(method, encoded, out)
            encoders = {id(p) for _, p in encoder_parameters(method)}
            rec["term_reach"] = {name: len(reached_parameters(term) & encoders)
                                 for name, term in terms.items()}
            method.enqueue(encoded)
            loss = out.loss
        else:
            loss = method.step(batch, epoch).loss
        if step == 0:
            rec["banks"] = bank_state(method)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if record and step == RECORDED_STEP:
            rec["grads"] = {n: (None if p.grad is None else p.grad.detach().clone())
                              for n, p in method.named_parameters() if p.requires_grad}
            rec["untrainable_grads"] = {n: p.grad for n, p in method.named_parameters()
                                          if not p.requires_grad}
            rec["queues_after"] = {n: (q.keys.clone(), int(q.ptr)) for n, q in queues(method)}
            rec["keys_after"] = {n: [p.detach().clone() for p in b.encoder_k.parameters()]
                                   + [p.detach().clone() for p in b.head_k.parameters()]
                                   for n, b in branches(method)}
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses, rec


def ema_distances(method: Method, rec: dict[str, Any]) -> dict[str, tuple[float, float]]:
    out = {}
    for name, branch in branches(method):
        key_before, query_before = rec["keys_before"][name]
        key_after = rec["keys_after"][name]
        m = branch.momentum
        expected = [kb * m + qb * (1.0 - m) for kb, qb in zip(key_before, query_before,
                                                                 strict=True)]
        out[name] = (max(float((a - e).abs().max()) for a, e in zip(key_after, expected,
                                                                        strict=True)),
                     max(float((a - b).abs().max()) for a, b in zip(key_after, key_before,
                                                                        strict=True)))
    return out


def queue_moves(rec: dict[str, Any], batch_size: int,
                method: Method) -> dict[str, QueueMove]:
    moves = {}
    sizes = {n: q.size for n, q in queues(method)}
    for name, (keys_before, ptr_before) in rec["queues_before"].items():
        keys_after, ptr_after = rec["queues_after"][name]
        written = (ptr_before + torch.arange(batch_size)) % sizes[name]
        kept = torch.ones(sizes[name], dtype=torch.bool)
        kept[written] = False
        moves[name] = QueueMove(
            size=sizes[name], batch=batch_size, ptr_before=ptr_before, ptr_after=ptr_after,
            written_changed=bool((keys_after[written] != keys_before[written]).any(1).all()),
            others_kept=bool(torch.equal(keys_after[kept], keys_before[kept])))
    return moves


def smoke_run(method_name: str, store: Path, epoch: int, teacher: Path | None = None
              ) -> SmokeRecord:
    """Trained and lr = 0 runs of ``STEPS`` steps at ``epoch`` from the same start.

    A stage-two case (``epoch`` > 0) starts where ``STEPS`` stage-one steps left the method, as
    a run does: from the random init, stage two mines positives among near-identical features
    and its loss on a fixed batch need not fall (CrosSCLR, batch 8: 8.33 -> 8.60 after five
    steps; 8.33 -> 8.24 and 8.35 at a fifth and half the learning rate)."""
    cfg = tiny_config(method_name, store, LR_SCALE.get(method_name, 1.0), teacher)
    torch.manual_seed(SEED)
    start = build_method(cfg, open_store(store))
    batch = fixed_batch(cfg, start)
    if epoch > 0:
        run_steps(start, cfg, batch, 0, record=False)
    results = {}
    for label, scale in (("trained", 1.0), ("control", 0.0)):
        run_cfg = dataclasses.replace(cfg, optim=dataclasses.replace(
            cfg.optim, lr=cfg.optim.lr * scale))
        method, initial = copy.deepcopy(start), copy.deepcopy(start)
        losses, rec = run_steps(method, run_cfg, batch, epoch, record=label == "trained")
        before = probe_loss(initial, batch, epoch, rec["banks"])
        after = probe_loss(method, batch, epoch, rec["banks"])
        results[label] = (method, batch, before, after, losses, rec)
    method, batch, before, after, losses, rec = results["trained"]
    _, _, control_before, control_after, _, _ = results["control"]
    frozen = tuple(method.frozen_keys(epoch)) if hasattr(method, "frozen_keys") else ()
    return SmokeRecord(
        probe_before=before, probe_after=after, control_before=control_before,
        control_after=control_after, losses=losses,
        queues=queue_moves(rec, batch["q"].shape[0], method),
        grads=rec["grads"],
        untrainable=sorted(rec["untrainable_grads"]),
        untrainable_grads=rec["untrainable_grads"],
        term_reach=rec["term_reach"], ema=ema_distances(method, rec),
        frozen_keys=frozen, momentum={n: b.momentum for n, b in branches(method)})
