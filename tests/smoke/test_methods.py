"""Smoke tests: a few optimiser steps of every method (and both stages of the two-stage ones) on
one fixed batch of a tiny store, against an lr = 0 control from the same seed (``steps.py``).

Each case checks, in seconds, what a silent wiring bug breaks long before a learning check would
notice: the loss on the fixed batch falls (against the initial banks, so the enqueue of that very
batch does not count) and by more than the control's; every memory bank moved by one batch;
every trainable parameter received a finite non-zero gradient and every loss term reaches the
encoders (a detached term does not); the key encoders follow theta_k <- m theta_k +
(1 - m) theta_q (MoCo v2, He et al. 2020), or stand still where a stage freezes them.

Parameters that never get a gradient, by design: the key encoders and key heads of every MoCo
branch (``requires_grad`` False: they move only by the EMA), and the IKEM student's teacher
(kept outside the module tree, ``requires_grad`` False). IKEM's exchange MLPs get none in stage
one under the reference fidelity (``stage_one_exchange_grad``: the authors leave them out of the
stage-one graph), so stage one lists them as exceptions.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.smoke.steps import SmokeRecord, smoke_run, write_teacher_run

CASES = {  # case id -> (method, training epoch)
    "cmd": ("cmd", 0),
    "i2md": ("i2md", 0),
    "skeletonclr": ("skeletonclr", 0),
    "crossclr-stage1": ("crossclr", 0),
    "crossclr-stage2": ("crossclr", 1),
    "ikem-stage1": ("ikem", 0),
    "ikem-stage2": ("ikem", 1),
    "ikem-student": ("ikem-student", 0),
}


def no_gradient_by_design(case: str, name: str) -> bool:
    """Trainable parameters allowed to get no gradient in ``case`` (see the module text)."""
    return case == "ikem-stage1" and name.startswith("exchange.")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skelkit.train.data import write_random_walk_store

    return write_random_walk_store(tmp_path_factory.mktemp("smoke") / "rw.zarr", classes=4,
                                   per_class=8, frames=(20, 40), seed=1)


@pytest.fixture(scope="module")
def records() -> dict[str, SmokeRecord]:
    """Each case's record, computed once for its five tests."""
    return {}


@pytest.fixture
def record(request: pytest.FixtureRequest, records: dict[str, SmokeRecord], store: Path,
           tmp_path_factory: pytest.TempPathFactory) -> SmokeRecord:
    case = request.param
    if case not in records:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            method, epoch = CASES[case]
            teacher = (write_teacher_run(store, tmp_path_factory.mktemp("teacher"))
                       if method == "ikem-student" else None)
            records[case] = r = smoke_run(method, store, epoch, teacher)
            print(f"{case}: loss on the fixed batch {r.probe_before:.3f} -> {r.probe_after:.3f}, "
                  f"lr 0 control {r.control_before:.3f} -> {r.control_after:.3f}")
        finally:
            torch.set_num_threads(before)
    return records[case]


cases = pytest.mark.parametrize("record", list(CASES), indirect=True)


@cases
def test_the_loss_falls_more_than_at_lr_zero(record: SmokeRecord) -> None:
    r = record
    assert all(math.isfinite(v) for v in (*r.losses, r.probe_before, r.probe_after)), r.losses
    assert r.probe_before == pytest.approx(r.control_before, rel=1e-6)  # same seed, same start
    trained, control = r.probe_before - r.probe_after, r.control_before - r.control_after
    assert trained > 0, (r.probe_before, r.probe_after)
    assert trained > control + 0.01 * r.probe_before, (trained, control, r.probe_before)


@cases
def test_every_queue_moves_by_one_batch(record: SmokeRecord) -> None:
    assert record.queues, "no memory bank found"
    for name, q in record.queues.items():
        assert q.ptr_after == (q.ptr_before + q.batch) % q.size, (name, q)
        assert q.written_changed and q.others_kept, (name, q)


@cases
def test_every_trainable_parameter_gets_a_finite_nonzero_gradient(
        request: pytest.FixtureRequest, record: SmokeRecord) -> None:
    case = request.node.callspec.id
    missing, bad = [], []
    for name, grad in record.grads.items():
        if no_gradient_by_design(case, name):
            assert grad is None or not grad.any(), f"{name} got a gradient in {case}"
            continue
        if grad is None or not grad.any():
            missing.append(name)
        elif not torch.isfinite(grad).all():
            bad.append(name)
    assert not missing, f"no gradient reached {missing}"
    assert not bad, f"non-finite gradient in {bad}"
    # The stop-gradient side: exactly the key branches are untrainable, and they got nothing.
    stray = [n for n in record.untrainable if not any(part in n for part in (".encoder_k.",
                                                                             ".head_k."))]
    assert not stray, f"parameters without requires_grad outside the key branches: {stray}"
    assert all(g is None for g in record.untrainable_grads.values())


@cases
def test_every_loss_term_reaches_the_encoders(record: SmokeRecord) -> None:
    assert record.term_reach, "no loss terms found"
    dead = sorted(name for name, reach in record.term_reach.items() if reach == 0)
    assert not dead, f"loss terms whose graph reaches no encoder parameter: {dead}"


@cases
def test_key_encoders_follow_their_momentum_update(record: SmokeRecord) -> None:
    if not record.ema:
        assert not record.momentum  # the student has no momentum encoder
        return
    for name, (off_ema, moved) in record.ema.items():
        modality = name.rsplit(".", 1)[-1]
        if modality in record.frozen_keys:
            assert moved == 0.0, f"{name} is frozen in this stage but moved by {moved}"
        else:
            assert off_ema < 1e-6, f"{name}: key is {off_ema} off m k + (1 - m) q"
