"""InfoNCE of MoCo v2 (He et al. 2020; I²MD Eq. 1), averaged over the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from skelkit.train.losses.common import check_pair, full_precision


@full_precision
def info_nce_logits(query: Tensor, key: Tensor, bank: Tensor, temperature: float) -> Tensor:
    """(N, 1 + K) logits: column 0 the positive q.k, then q.m_i for every bank entry, over tau."""
    query, key, bank = query.float(), key.float(), bank.float()
    positive = (query * key).sum(dim=1, keepdim=True)
    negatives = query @ bank.detach().t()
    return torch.cat([positive, negatives], dim=1) / temperature


def info_nce(query: Tensor, key: Tensor, bank: Tensor, temperature: float = 0.07) -> Tensor:
    """MoCo v2 InfoNCE, I²MD Eq. 1: -log softmax of the positive (index 0) against the bank."""
    check_pair(query, key, bank)
    logits = info_nce_logits(query, key, bank, temperature)
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
