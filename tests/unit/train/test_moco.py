"""MoCo core: FIFO bank order and wrap-around, momentum update value, no gradient to key encoders."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from skelkit.store import NTU25
from skelkit.train.methods import METHODS
from skelkit.train.moco import FeatureQueue, MoCoBranch, momentum_update


def _rows(start: int, n: int, dim: int = 2) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32)[:, None].repeat(1, dim)


def test_queue_fifo_order_and_wrap_around():
    queue = FeatureQueue(size=10, dim=2, value_dim=3)
    initial = queue.keys.clone()
    for b in range(3):
        keys = _rows(100 * (b + 1), 4)
        queue.enqueue(keys, values=keys[:, :1].repeat(1, 3) + 0.5)
    assert int(queue.ptr) == 2  # 12 entries written into 10 slots
    expected_first = [302, 303, 102, 103, 200, 201, 202, 203, 300, 301]
    assert queue.keys[:, 0].tolist() == expected_first
    assert queue.values[:, 0].tolist() == [v + 0.5 for v in expected_first]
    assert torch.equal(queue.values[:, 0], queue.values[:, 2])
    # Only the oldest slots were overwritten; keys start as unit vectors.
    assert torch.allclose(initial.norm(dim=1), torch.ones(10))


def test_queue_partial_first_batch_then_exact_fill():
    queue = FeatureQueue(size=6, dim=2)
    queue.enqueue(_rows(0, 6))
    assert int(queue.ptr) == 0 and queue.keys[:, 0].tolist() == [0, 1, 2, 3, 4, 5]
    queue.enqueue(_rows(10, 1))
    assert int(queue.ptr) == 1 and queue.keys[:, 0].tolist() == [10, 1, 2, 3, 4, 5]


def test_queue_rejects_bad_input():
    queue = FeatureQueue(size=4, dim=2)
    with pytest.raises(ValueError, match="exceeds"):
        queue.enqueue(_rows(0, 5))
    with pytest.raises(ValueError, match="values"):
        queue.enqueue(_rows(0, 2), values=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="keys must be"):
        queue.enqueue(torch.zeros(2, 3))


def test_momentum_update_value():
    q, k = nn.Linear(3, 2), nn.Linear(3, 2)
    q0 = [p.detach().clone() for p in q.parameters()]
    k0 = [p.detach().clone() for p in k.parameters()]
    momentum_update(q, k, 0.9)
    for pq, pk, p_q0, p_k0 in zip(q.parameters(), k.parameters(), q0, k0):
        assert torch.allclose(pk, 0.9 * p_k0 + 0.1 * p_q0, atol=1e-7)
        assert torch.equal(pq, p_q0)  # the query side is untouched


def test_branch_key_is_a_frozen_copy():
    encoder = nn.Linear(4, 6)
    encoder.out_dim = 6  # type: ignore[assignment]
    branch = MoCoBranch(encoder, feature_dim=3, queue_size=8)
    for pq, pk in zip(branch.encoder_q.parameters(), branch.encoder_k.parameters()):
        assert torch.equal(pq, pk) and pq.requires_grad and not pk.requires_grad
    z, hidden = branch.key(torch.randn(2, 4))
    assert not z.requires_grad and torch.allclose(z.norm(dim=1), torch.ones(2))
    assert hidden.shape == (2, 6)


def _tiny_cmd():
    cfg = METHODS["cmd"].Config.from_dict({
        "encoder_args": {"hidden_size": 16, "num_layers": 2}, "queue_size": 32, "topk": 8,
        "momentum": 0.9,
    })
    return METHODS["cmd"](cfg, NTU25)


def test_no_gradient_reaches_key_encoders_and_keys_are_enqueued():
    torch.manual_seed(0)
    model = _tiny_cmd()
    before = copy.deepcopy(model)
    batch = {"q": torch.randn(4, 3, 12, 25, 2), "k": torch.randn(4, 3, 12, 25, 2),
             "gamma": torch.ones(4)}
    loss, _ = model.training_step(batch, epoch=0)
    loss.backward()
    for m in model.modalities:
        branch, old = model.branch(m), before.branch(m)
        for p in (*branch.encoder_k.parameters(), *branch.head_k.parameters()):
            assert p.grad is None and not p.requires_grad
        assert all(p.grad is not None for p in branch.encoder_q.parameters())
        # Inside the step the key side moved by the momentum rule: k = m k0 + (1 - m) q0.
        for pk, pk0, pq0 in zip(branch.encoder_k.parameters(), old.encoder_k.parameters(),
                                old.encoder_q.parameters()):
            assert torch.allclose(pk, 0.9 * pk0 + 0.1 * pq0, atol=1e-6)
        # The KEY view's embeddings (not the query's) went into slots 0..3 of the bank.
        z_k, _ = branch.key(model.derive_input(batch["k"], batch["gamma"], m))
        assert int(branch.queue.ptr) == 4
        assert torch.allclose(branch.queue.keys[:4], z_k, atol=1e-5)
        assert torch.equal(branch.queue.keys[4:], old.queue.keys[4:])
