"""Contrastive and distillation losses as pure functions; temperatures are arguments.

Embeddings are L2-normalised rows (N, D); a memory bank is (K, D) with one key per row.
Every loss is computed in float32 with autocast off (fp16 similarities would blur the top-K
anchors and the 1/tau-scaled logits) and averaged over the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

_F = TypeVar("_F", bound=Callable[..., Any])


def _full_precision(fn: _F) -> _F:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


@_full_precision
def info_nce_logits(query: Tensor, key: Tensor, bank: Tensor, temperature: float) -> Tensor:
    """(N, 1 + K) logits: column 0 the positive q.k, then q.m_i for every bank entry, over tau."""
    query, key, bank = query.float(), key.float(), bank.float()
    positive = (query * key).sum(dim=1, keepdim=True)
    negatives = query @ bank.detach().t()
    return torch.cat([positive, negatives], dim=1) / temperature


def info_nce(query: Tensor, key: Tensor, bank: Tensor, temperature: float = 0.07) -> Tensor:
    """MoCo v2 InfoNCE, I²MD Eq. 1: -log softmax of the positive (index 0) against the bank."""
    _check_pair(query, key, bank)
    logits = info_nce_logits(query, key, bank, temperature)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)


@_full_precision
def kl_distillation(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)) summed over the last dim, mean over rows
    (I²MD Eq. 3). Logits arrive already divided by their temperatures; the teacher is detached."""
    teacher_log_p = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    student_log_p = F.log_softmax(student_logits.float(), dim=-1)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    return kl.mean()


@_full_precision
def mine_anchors(teacher_key: Tensor, teacher_bank: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k bank entries nearest each teacher key: (similarities, indices), both (N, k)."""
    if not 0 < k <= teacher_bank.shape[0]:
        raise ValueError(f"need 0 < K_c <= bank size {teacher_bank.shape[0]}, got {k}")
    sims = teacher_key.detach().float() @ teacher_bank.detach().float().t()
    return sims.topk(k, dim=1)


@_full_precision
def neighbour_distillation(
    teacher_key: Tensor,
    teacher_bank: Tensor,
    student_query: Tensor,
    student_bank: Tensor,
    k: int,
    teacher_temperature: float = 0.05,
    student_temperature: float = 0.1,
) -> Tensor:
    """One direction of mutual distillation, teacher A -> student B (I²MD Eq. 2-3).

    Anchors are the top-``k`` entries of A's bank nearest A's key z_k^a. The teacher distribution
    is p(z_k^a, tau_t) over those anchors in A's bank; the student distribution is p(z_q^b, tau_s)
    over B's bank entries at the SAME indices. Returns KL(teacher || student); gradients reach only
    the student query.
    """
    _check_pair(teacher_key, student_query, teacher_bank)
    if student_bank.shape[0] != teacher_bank.shape[0]:
        raise ValueError("teacher and student banks must have the same size (shared indices)")
    teacher_sims, anchors = mine_anchors(teacher_key, teacher_bank, k)
    student_sims = (student_query.float() @ student_bank.detach().float().t()).gather(1, anchors)
    return kl_distillation(teacher_sims / teacher_temperature, student_sims / student_temperature)


def mutual_distillation(
    key_a: Tensor, query_a: Tensor, bank_a: Tensor,
    key_b: Tensor, query_b: Tensor, bank_b: Tensor,
    k: int, teacher_temperature: float = 0.05, student_temperature: float = 0.1,
) -> Tensor:
    """L_MD^{a<->b}, I²MD Eq. 4: A teaches B plus B teaches A."""
    a_to_b = neighbour_distillation(key_a, bank_a, query_b, bank_b, k,
                                    teacher_temperature, student_temperature)
    b_to_a = neighbour_distillation(key_b, bank_b, query_a, bank_a, k,
                                    teacher_temperature, student_temperature)
    return a_to_b + b_to_a


def _check_pair(a: Tensor, b: Tensor, bank: Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"embeddings must be two equal (N, D) tensors, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if bank.ndim != 2 or bank.shape[1] != a.shape[1]:
        raise ValueError(f"bank must be (K, {a.shape[1]}), got {tuple(bank.shape)}")
