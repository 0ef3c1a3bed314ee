"""Neighbour distillation of CMD and I²MD: KL between teacher and student similarity
distributions over the teacher's top-K_c anchors (I²MD Eq. 2-5, Eq. 8)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from skelkit.train.losses.common import check_pair, full_precision


@full_precision
def kl_distillation(teacher_logits: Tensor, student_logits: Tensor) -> Tensor:
    """KL(softmax(teacher) || softmax(student)) summed over the last dim, mean over rows
    (I²MD Eq. 3). Logits arrive already divided by their temperatures; the teacher is detached."""
    teacher_log_p = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    student_log_p = F.log_softmax(student_logits.float(), dim=-1)
    kl = (teacher_log_p.exp() * (teacher_log_p - student_log_p)).sum(dim=-1)
    return kl.mean()


@full_precision
def mine_anchors(teacher_key: Tensor, teacher_bank: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k bank entries nearest each teacher key: (similarities, indices), both (N, k)."""
    if not 0 < k <= teacher_bank.shape[0]:
        raise ValueError(f"need 0 < K_c <= bank size {teacher_bank.shape[0]}, got {k}")
    sims = teacher_key.detach().float() @ teacher_bank.detach().float().t()
    return sims.topk(k, dim=1)


@full_precision
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
    check_pair(teacher_key, student_query, teacher_bank)
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
