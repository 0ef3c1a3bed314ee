"""IKEM's losses: the implicit knowledge exchange (IKEM Eq. 1-2) and the relational
distillation of the student (IKEM Eq. 7-8).

IKEM's concatenated embeddings are unit vectors: the concatenation of n unit embeddings divided
by sqrt(n); the mapped query z~_u is L2-normalised, so every logit is a cosine over tau.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from skelkit.train.losses.common import check_pair
from skelkit.train.losses.crossview import context_contrast, mine_topk


def concat_unit(embeddings: Sequence[Tensor]) -> Tensor:
    """[z_1, ..., z_n] / sqrt(n): the unit concatenation of n unit embeddings (IKEM z^_c)."""
    if not embeddings:
        raise ValueError("need at least one embedding to concatenate")
    return torch.cat(list(embeddings), dim=-1) / math.sqrt(len(embeddings))


def implicit_exchange(mapped_query: Tensor, concat_key: Tensor, concat_bank: Tensor,
                      temperature: float = 0.07) -> Tensor:
    """L_u, IKEM Eq. 1: InfoNCE of one modality's mapped query z~_u against the concatenated
    keys of all modalities z^_c, with the bank M_c of concatenated keys as negatives."""
    check_pair(mapped_query, concat_key, concat_bank)
    positive = (mapped_query.float() * concat_key.detach().float()).sum(dim=1)
    negatives = mapped_query.float() @ concat_bank.detach().float().t()
    none = torch.empty(positive.shape[0], 0, dtype=torch.long, device=positive.device)
    return context_contrast(positive, negatives, none, temperature)


def relational_distillation(student: Tensor, teacher_concat: Tensor, teacher_bank: Tensor,
                            teacher_view: Tensor, teacher_view_bank: Tensor,
                            temperature: float = 0.07) -> Tensor:
    """L_{v->u}, IKEM Eq. 7: teacher modality v distils into student modality u.

    ``student`` z^u (N, D) is the student's mapped query in the teacher's concatenated space;
    ``teacher_concat`` z^t (N, D) the unit concatenation of the frozen teacher's embeddings;
    ``teacher_bank`` (K, D) the queue of such concatenations. s_i^u = z^u . m_i and
    s_i^v = z^t_v . m_i^v, with ``teacher_view`` z^t_v (N, d) and ``teacher_view_bank`` (K, d) the
    v-slices. The extra positive j is the entry most similar to the teacher in modality v.
    """
    check_pair(student, teacher_concat, teacher_bank)
    check_pair(teacher_view, teacher_view, teacher_view_bank)
    if teacher_bank.shape[0] != teacher_view_bank.shape[0]:
        raise ValueError("teacher bank and its modality slice must have the same number of rows")
    s_u = student.float() @ teacher_bank.detach().float().t()
    s_v = teacher_view.detach().float() @ teacher_view_bank.detach().float().t()
    positive = (student.float() * teacher_concat.detach().float()).sum(dim=1)
    return context_contrast(positive, s_u * s_v, mine_topk(s_v, 1), temperature)
