"""MoCo v2 core shared by every method: a FIFO memory bank and a query/key encoder pair.

The bank can hold a value per key (I²MD stores the hidden embedding beside each key, Eq. 7).
The key branch is a momentum copy of the query branch and never receives gradients.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from skelkit.train.heads import ProjectionHead


class FeatureQueue(nn.Module):
    """FIFO bank of ``size`` L2-normalised keys (size, dim), optionally with a value per key.

    Entries are written at ``ptr`` and the pointer wraps around, so the oldest entries are
    overwritten first. Starts from random unit keys (as MoCo does) and zero values.
    """

    def __init__(self, size: int, dim: int, value_dim: int = 0) -> None:
        super().__init__()
        if size <= 0 or dim <= 0 or value_dim < 0:
            raise ValueError(f"bad queue shape: size={size}, dim={dim}, value_dim={value_dim}")
        self.size, self.dim, self.value_dim = size, dim, value_dim
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("values", torch.zeros(size, value_dim) if value_dim else None)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: Tensor, values: Tensor | None = None) -> None:
        """Write a batch of keys (and values) over the oldest entries; gathered across ranks."""
        keys = gather_from_all_ranks(keys.detach())
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"keys must be (n, {self.dim}), got {tuple(keys.shape)}")
        if (values is None) != (self.value_dim == 0):
            raise ValueError("values must be given exactly when the queue has value_dim > 0")
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(f"batch of {n} keys exceeds the queue size {self.size}")
        slots = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[slots] = keys.to(self.keys.dtype)
        if values is not None:
            values = gather_from_all_ranks(values.detach())
            self.values[slots] = values.to(self.values.dtype)
        # Stays on the device: reading the pointer back would synchronise every step.
        self.ptr.copy_((self.ptr + n) % self.size)


@torch.no_grad()
def gather_from_all_ranks(x: Tensor) -> Tensor:
    """Concatenate ``x`` from every DDP rank (identity outside distributed runs)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def momentum_update(query: nn.Module, key: nn.Module, momentum: float) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q (I²MD Section 3.1); buffers are not averaged.

    Written as the references write it (two products, then the sum: CMD
    ``moco/builder_cmd.py`` _momentum_update_key_encoder), so the rounding is theirs too."""
    for p_q, p_k in zip(query.parameters(), key.parameters(), strict=True):
        p_k.copy_(p_k * momentum + p_q.detach() * (1.0 - momentum))


class MoCoBranch(nn.Module):
    """A query encoder + projection head, its momentum key copy, and its memory bank."""

    def __init__(self, encoder: nn.Module, feature_dim: int = 128, queue_size: int = 16384,
                 momentum: float = 0.999, mlp: bool = True, value_dim: int = 0) -> None:
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.encoder_q = encoder
        self.head_q = ProjectionHead(encoder.out_dim, feature_dim, mlp=mlp)
        self.encoder_k = copy.deepcopy(encoder)
        self.head_k = copy.deepcopy(self.head_q)
        for p in (*self.encoder_k.parameters(), *self.head_k.parameters()):
            p.requires_grad_(False)
        self.queue = FeatureQueue(queue_size, feature_dim, value_dim)

    @torch.no_grad()
    def sync_key(self) -> None:
        """Key encoder and head <- copies of the query's (MoCo's start; after a re-init)."""
        self.encoder_k.load_state_dict(self.encoder_q.state_dict())
        self.head_k.load_state_dict(self.head_q.state_dict())

    def query(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z_q L2-normalised, pooled hidden h_q) of the query branch."""
        hidden = self.encoder_q(x)
        return F.normalize(self.head_q(hidden), dim=1), hidden

    @torch.no_grad()
    def key(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(z_k L2-normalised, pooled hidden h_k) of the key branch, without gradient."""
        hidden = self.encoder_k(x)
        return F.normalize(self.head_k(hidden), dim=1), hidden

    @torch.no_grad()
    def momentum_update(self) -> None:
        momentum_update(self.encoder_q, self.encoder_k, self.momentum)
        momentum_update(self.head_q, self.head_k, self.momentum)
