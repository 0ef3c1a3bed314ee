"""Each loss against a direct, slow implementation of its equation (I²MD Eq. 1-6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelkit.train.losses.contrastive import info_nce, info_nce_logits
from skelkit.train.losses.distillation import kl_distillation, mutual_distillation, neighbour_distillation


def _unit_rows(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def slow_info_nce(q, k, bank, tau) -> float:
    """Eq. 1 sample by sample: -log exp(q.k/tau) / (exp(q.k/tau) + sum_i exp(q.m_i/tau))."""
    q, k, bank = q.numpy(), k.numpy(), bank.numpy()
    total = 0.0
    for n in range(q.shape[0]):
        pos = np.exp(q[n] @ k[n] / tau)
        neg = sum(np.exp(q[n] @ bank[i] / tau) for i in range(bank.shape[0]))
        total += -np.log(pos / (pos + neg))
    return total / q.shape[0]


def slow_distillation(key_a, bank_a, query_b, bank_b, kc, tau_t, tau_s) -> float:
    """Eq. 2-3 sample by sample: anchors = top-kc of key_a . bank_a; KL(p_teacher || p_student)."""
    key_a, bank_a, query_b, bank_b = (t.numpy() for t in (key_a, bank_a, query_b, bank_b))
    total = 0.0
    for n in range(key_a.shape[0]):
        sims = np.array([key_a[n] @ bank_a[i] for i in range(bank_a.shape[0])])
        anchors = np.argsort(-sims, kind="stable")[:kc]
        t = np.exp(sims[anchors] / tau_t)
        p_t = t / t.sum()
        s = np.exp(np.array([query_b[n] @ bank_b[i] for i in anchors]) / tau_s)
        p_s = s / s.sum()
        total += float(np.sum(p_t * np.log(p_t / p_s)))
    return total / key_a.shape[0]


SHAPES = [(1, 3, 5), (4, 8, 32), (7, 16, 64)]


@pytest.mark.parametrize(("n", "d", "k"), SHAPES)
@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_info_nce_matches_equation_1(n, d, k, tau):
    q, key, bank = _unit_rows(n, d, seed=1), _unit_rows(n, d, seed=2), _unit_rows(k, d, seed=3)
    got = info_nce(q, key, bank, tau).item()
    assert got == pytest.approx(slow_info_nce(q, key, bank, tau), rel=1e-5)


def test_info_nce_positive_is_column_zero():
    q = _unit_rows(3, 8, seed=4)
    bank = -q.repeat(4, 1)  # every bank entry points away from its query
    logits = info_nce_logits(q, q, bank, 0.07)
    assert torch.allclose(logits[:, 0], torch.full((3,), 1 / 0.07, dtype=logits.dtype))
    assert info_nce(q, q, bank, 0.07).item() < 1e-2  # positive wins -> loss ~ 0
    # The same query with the positive moved into the bank and a bad key: the loss is large.
    assert info_nce(q, -q, torch.cat([q, bank]), 0.07).item() > 10


@pytest.mark.parametrize(("n", "d", "k"), SHAPES)
@pytest.mark.parametrize("kc", [1, 3])
def test_neighbour_distillation_matches_equations_2_3(n, d, k, kc):
    key_a, bank_a = _unit_rows(n, d, seed=5), _unit_rows(k, d, seed=6)
    query_b, bank_b = _unit_rows(n, d, seed=7), _unit_rows(k, d, seed=8)
    got = neighbour_distillation(key_a, bank_a, query_b, bank_b, kc, 0.05, 0.1).item()
    want = slow_distillation(key_a, bank_a, query_b, bank_b, kc, 0.05, 0.1)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_distillation_is_sensitive_to_temperatures_and_direction():
    key_a, bank_a = _unit_rows(6, 16, seed=9), _unit_rows(40, 16, seed=10)
    query_b, bank_b = _unit_rows(6, 16, seed=11), _unit_rows(40, 16, seed=12)
    ref = slow_distillation(key_a, bank_a, query_b, bank_b, 10, 0.05, 0.1)
    got = neighbour_distillation(key_a, bank_a, query_b, bank_b, 10, 0.05, 0.1).item()
    swapped_temps = slow_distillation(key_a, bank_a, query_b, bank_b, 10, 0.1, 0.05)
    student_anchors = slow_distillation(query_b, bank_b, key_a, bank_a, 10, 0.05, 0.1)
    assert got == pytest.approx(ref, rel=1e-6)
    assert abs(ref - swapped_temps) > 1e-3 and abs(ref - student_anchors) > 1e-3


def test_mutual_distillation_is_both_directions_equation_4():
    ka, qa, ba = _unit_rows(5, 8, seed=13), _unit_rows(5, 8, seed=14), _unit_rows(30, 8, seed=15)
    kb, qb, bb = _unit_rows(5, 8, seed=16), _unit_rows(5, 8, seed=17), _unit_rows(30, 8, seed=18)
    got = mutual_distillation(ka, qa, ba, kb, qb, bb, 7, 0.05, 0.1).item()
    want = (slow_distillation(ka, ba, qb, bb, 7, 0.05, 0.1)
            + slow_distillation(kb, bb, qa, ba, 7, 0.05, 0.1))
    assert got == pytest.approx(want, rel=1e-6)


def test_equation_6_degenerate_case_is_cross_entropy_on_mined_positive():
    """tau_t -> 0 and K_c = N: KL reduces to -log p_u(z_q^b, tau_s), u = teacher's nearest entry."""
    key_a, bank_a = _unit_rows(6, 16, seed=19), _unit_rows(50, 16, seed=20)
    query_b, bank_b = _unit_rows(6, 16, seed=21), _unit_rows(50, 16, seed=22)
    got = neighbour_distillation(key_a, bank_a, query_b, bank_b, 50, 1e-5, 0.1).item()
    mined = (key_a @ bank_a.t()).argmax(dim=1)
    want = F.cross_entropy(query_b @ bank_b.t() / 0.1, mined).item()
    assert got == pytest.approx(want, rel=1e-6)


def test_gradient_reaches_only_the_student_query():
    key_a = _unit_rows(4, 8, seed=23).requires_grad_()
    query_b = _unit_rows(4, 8, seed=24).requires_grad_()
    bank_a = _unit_rows(20, 8, seed=25).requires_grad_()
    bank_b = _unit_rows(20, 8, seed=26).requires_grad_()
    neighbour_distillation(key_a, bank_a, query_b, bank_b, 5).backward()
    assert key_a.grad is None and bank_a.grad is None and bank_b.grad is None
    assert query_b.grad is not None and query_b.grad.abs().sum() > 0


def test_kl_distillation_zero_for_equal_and_positive_otherwise():
    logits = torch.randn(3, 9, generator=torch.Generator().manual_seed(0))
    assert kl_distillation(logits, logits).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_distillation(logits, logits.flip(1)).item() > 0


@pytest.mark.parametrize("which", ["info_nce", "distillation"])
def test_optimising_a_loss_on_random_tensors_makes_it_fall(which):
    torch.manual_seed(0)
    raw = torch.randn(8, 16, requires_grad=True)
    key, bank = _unit_rows(8, 16, seed=27).float(), _unit_rows(64, 16, seed=28).float()
    teacher_bank = _unit_rows(64, 16, seed=29).float()
    opt = torch.optim.SGD([raw], lr=0.5)

    def loss_fn() -> torch.Tensor:
        q = F.normalize(raw, dim=1)
        if which == "info_nce":
            return info_nce(q, key, bank, 0.07)
        return neighbour_distillation(key, teacher_bank, q, bank, 16, 0.05, 0.1)

    first = loss_fn().item()
    for _ in range(100):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    assert loss_fn().item() < 0.5 * first


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="K_c"):
        neighbour_distillation(torch.ones(2, 4), torch.ones(3, 4), torch.ones(2, 4),
                               torch.ones(3, 4), 5)
    with pytest.raises(ValueError, match="bank"):
        info_nce(torch.ones(2, 4), torch.ones(2, 4), torch.ones(3, 5))


def test_losses_ignore_autocast():
    q, k = _unit_rows(4, 8, seed=30).float(), _unit_rows(4, 8, seed=31).float()
    bank = _unit_rows(50, 8, seed=32).float()
    full = (info_nce(q, k, bank), neighbour_distillation(k, bank, q, bank, 10))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = (info_nce(q, k, bank), neighbour_distillation(k, bank, q, bank, 10))
    for a, b in zip(full, low):
        assert b.dtype == torch.float32 and a.item() == pytest.approx(b.item(), rel=1e-6)
