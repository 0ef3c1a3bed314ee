"""Cross-view knowledge mining of CrosSCLR (Eq. 4-8) in the paper's form and in the authors' form.

The banks of different views hold the same samples at the same rows (they are written together),
which is what lets one view's mined indices and similarities address another view's bank.

Reading of the papers (where they leave a choice open):
- CrosSCLR Eq. 6 prints ``exp(s_i^u s_i^v)/tau)``; we read it as ``exp(s_i^u s_i^v / tau)``, so
  with K = 0 and every weight 1 it is exactly InfoNCE (Eq. 1).
- The other view's similarities s^v are knowledge handed to view u: detached, so L_{v->u} trains
  view u only (view v learns from L_{u->v}).

The authors' code computes a different loss (fidelity ``reference``, golden
``crossview_loss.npz``; ``processor/pretrain_crossclr_6views.py`` lines 87-131 of IKEM, the same
form in CrosSCLR's ``pretrain_crossclr_3views.py``): per directed pair (u, v) the logits
[q_u.k_u, q_u.M_u, (q_u.M_u) * (q_v.M_v)] / tau with 1 + 2K columns, the positives
[1, onehot(Topk(q_v.M_v)), the same onehot], and the term is the MEAN of -log p over the
positives (not -log of their summed probability); q_v is not detached, so the term trains view v
too. ``mined_view_loss`` and ``cross_view_reference`` below compute it; IKEM's student uses the
same form with the student's embedding in place of q_u and the teacher's in place of q_v.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from skelkit.train.losses.common import check_pair, full_precision


def mine_topk(similarities: Tensor, k: int) -> Tensor:
    """Gamma(S) = Topk(S), CrosSCLR Eq. 4: (N, k) bank indices of the k most similar entries."""
    if not 0 <= k <= similarities.shape[1]:
        raise ValueError(f"need 0 <= K <= bank size {similarities.shape[1]}, got {k}")
    return similarities.detach().topk(k, dim=1).indices


def context_contrast(positive: Tensor, context: Tensor, mined: Tensor, temperature: float) -> Tensor:
    """The shared form of CrosSCLR Eq. 5-6 and IKEM Eq. 7, averaged over the batch.

    -log [exp(p/tau) + sum_{i in N+} exp(c_i/tau)] / [exp(p/tau) + sum_{i in N} exp(c_i/tau)],
    with ``positive`` p (N,), ``context`` c (N, K) and ``mined`` N+ as (N, k) indices into c.
    """
    if positive.ndim != 1 or context.ndim != 2 or context.shape[0] != positive.shape[0]:
        raise ValueError(f"positive must be (N,) and context (N, K), got {tuple(positive.shape)} "
                         f"and {tuple(context.shape)}")
    logits = torch.cat([positive.float().unsqueeze(1), context.float()], dim=1) / temperature
    keep = torch.zeros_like(logits, dtype=torch.bool)
    keep[:, 0] = True
    if mined.numel():
        keep.scatter_(1, mined.long() + 1, True)
    numerator = logits.masked_fill(~keep, float("-inf")).logsumexp(dim=1)
    return (logits.logsumexp(dim=1) - numerator).mean()


def knowledge_mining(query: Tensor, key: Tensor, bank: Tensor, k: int = 1,
                     temperature: float = 0.07) -> Tensor:
    """L_KM, CrosSCLR Eq. 5: InfoNCE whose positives also include the top-k bank entries."""
    check_pair(query, key, bank)
    sims = query.float() @ bank.detach().float().t()
    return context_contrast((query * key).sum(dim=1), sims, mine_topk(sims, k), temperature)


def cross_view_mining(query_u: Tensor, key_u: Tensor, bank_u: Tensor, query_v: Tensor,
                      bank_v: Tensor, k: int = 1, temperature: float = 0.07,
                      embedding_context: bool = True) -> Tensor:
    """L_{v->u}, CrosSCLR Eq. 6: view v's knowledge guides view u.

    Step 1: the positives N+^v are the top-k of s^v = z^v . M^v (Eq. 4). Step 2: every bank
    similarity of view u is weighted by view v's, s_i^u s_i^v (``embedding_context=False`` sets
    s_i^v = 1, the paper's "w/o EC" ablation). Gradients reach ``query_u`` only.
    """
    check_pair(query_u, key_u, bank_u)
    check_pair(query_v, query_v, bank_v)
    if bank_u.shape[0] != bank_v.shape[0] or query_u.shape[0] != query_v.shape[0]:
        raise ValueError("views u and v need the same batch and the same bank size (shared rows)")
    s_u = query_u.float() @ bank_u.detach().float().t()
    s_v = query_v.detach().float() @ bank_v.detach().float().t()
    context = s_u * s_v if embedding_context else s_u
    return context_contrast((query_u * key_u).sum(dim=1), context, mine_topk(s_v, k), temperature)


@full_precision
def bank_similarities(query: Tensor, bank: Tensor) -> Tensor:
    """(N, K) q . m_i against a bank (K, D), in float32; the bank carries no gradient."""
    return query.float() @ bank.detach().float().t()


def positive_mask(similarities_v: Tensor, k: int = 1, context: bool = True) -> Tensor:
    """View v's positives over the columns of ``context_logits``: [1, onehot(Topk(s^v)), and
    with ``context`` the same onehot again] (net/crossclr_6views.py lines 1105-1134)."""
    onehot = torch.zeros_like(similarities_v).scatter_(1, mine_topk(similarities_v, k), 1.0)
    ones = torch.ones_like(similarities_v[:, :1])
    return torch.cat([ones, onehot, onehot] if context else [ones, onehot], dim=1)


@full_precision
def context_logits(positive: Tensor, similarities_u: Tensor, similarities_v: Tensor,
                   temperature: float, context: bool = True) -> Tensor:
    """[p, s^u, s^u * s^v] / tau (N, 1 + 2K); without ``context`` [p, s^u] / tau. Both factors
    of the context block keep their gradient (net/crossclr_6views.py lines 975-1040)."""
    parts = [positive.float().unsqueeze(1), similarities_u.float()]
    if context:
        parts.append(similarities_u.float() * similarities_v.float())
    return torch.cat(parts, dim=1) / temperature


@full_precision
def mean_positive_nll(logits: Tensor, mask: Tensor) -> Tensor:
    """(N,) -sum(mask * log_softmax(logits)) / sum(mask): the mean of -log p over the positives
    (processor/pretrain_crossclr_6views.py lines 87-120)."""
    return -(F.log_softmax(logits.float(), dim=1) * mask).sum(dim=1) / mask.sum(dim=1)


@dataclasses.dataclass
class MinedViewLoss:
    """One view's loss in the authors' form and what it is made of, per mining view."""

    loss: Tensor
    """Mean over the batch of the mean over mining views of the per-sample terms."""
    logits: list[Tensor]
    terms: list[Tensor]


def mined_view_loss(positive: Tensor, similarities_u: Tensor,
                    miners: Sequence[tuple[Tensor, Tensor]], temperature: float,
                    context: bool = True) -> MinedViewLoss:
    """loss_u = mean over the batch of (sum_v term_uv) / len(miners), where ``miners`` holds
    (s^v, positive mask of v) per mining view v (pretrain_crossclr_6views.py lines 114-131)."""
    if not miners:
        raise ValueError("need at least one mining view")
    logits = [context_logits(positive, similarities_u, s_v, temperature, context)
              for s_v, _ in miners]
    terms = [mean_positive_nll(lg, mask) for lg, (_, mask) in zip(logits, miners, strict=True)]
    loss = (torch.stack(terms).sum(dim=0) / len(miners)).mean()
    return MinedViewLoss(loss, logits, terms)


def cross_view_reference(queries: Sequence[Tensor], keys: Sequence[Tensor],
                         banks: Sequence[Tensor], k: int = 1, temperature: float = 0.07,
                         context: bool = True) -> tuple[list[MinedViewLoss], list[Tensor]]:
    """The authors' cross-view loss of every view u against all other views v (stage two of
    CrosSCLR and IKEM, without IKEM's exchange term): (per-view losses, positive masks).
    Mining uses each view's query (not its key), and no view is detached."""
    n = len(queries)
    if n < 2 or len(keys) != n or len(banks) != n:
        raise ValueError(f"need at least two views with one key and bank each, got {n}")
    for q, key, bank in zip(queries, keys, banks, strict=True):
        check_pair(q, key, bank)
    sims = [bank_similarities(q, bank) for q, bank in zip(queries, banks, strict=True)]
    masks = [positive_mask(s, k, context) for s in sims]
    losses = []
    for u in range(n):
        positive = (queries[u].float() * keys[u].detach().float()).sum(dim=1)
        miners = [(sims[v], masks[v]) for v in range(n) if v != u]
        losses.append(mined_view_loss(positive, sims[u], miners, temperature, context))
    return losses, masks
