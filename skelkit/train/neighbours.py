"""Dynamic Neighbours Aggregation's retrieval (I²MD Section 3.3.1).

Each sample's instance-level embedding (z_q or z_k) looks up its K_d nearest keys in a
:class:`~skelkit.train.moco.FeatureQueue` that stores (key, hidden) pairs; the hidden embeddings
stored in those slots become the cross-attention input H (K_d, C) of the cluster-level branch.
Retrieval is a lookup, not a function to differentiate: nothing here carries gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from skelkit.train.moco import FeatureQueue


@torch.no_grad()
def nearest_slots(embedding: Tensor, keys: Tensor, k: int) -> Tensor:
    """(N, k) queue slots of the k keys with the largest dot product (cosine, as both are unit
    rows) with each embedding row, nearest first."""
    if embedding.ndim != 2 or keys.ndim != 2 or embedding.shape[1] != keys.shape[1]:
        raise ValueError(f"embedding (N, D) and keys (K, D) must share D, got "
                         f"{tuple(embedding.shape)} and {tuple(keys.shape)}")
    if not 0 < k <= keys.shape[0]:
        raise ValueError(f"need 0 < K_d <= queue size {keys.shape[0]}, got {k}")
    similarity = embedding.detach().float() @ keys.detach().float().t()
    return similarity.topk(k, dim=1).indices


@torch.no_grad()
def retrieve_hidden(embedding: Tensor, queue: FeatureQueue, k: int) -> Tensor:
    """H: (N, k, value_dim) hidden embeddings stored beside the k nearest keys of each row."""
    if queue.values is None:
        raise ValueError("Dynamic Neighbours Aggregation needs a queue that stores hidden values "
                         "(FeatureQueue(..., value_dim > 0))")
    slots = nearest_slots(embedding, queue.keys, k)
    return queue.values[slots].detach()
