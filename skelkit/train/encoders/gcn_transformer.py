"""I²MD's GCN-Transformer (Section 3.3.1, 4.1.1): ST-GCN frame features -> Transformer -> mean pool.

The first three ST-GCN blocks (widths 64, 64, 64 at the paper's size) turn every frame into one
token of C * V * M features (3200 for NTU's 25 joints and 2 bodies); a linear layer maps it to the
model width (768), then L layers (6) of self-attention, an optional cross-attention block and a
feed-forward block (12 heads, FFN 3072) run over the T temporal tokens, and the output is averaged
over time into the hidden embedding h.

The cross-attention block is what makes the cluster-level branch of I²MD (Dynamic Neighbours
Aggregation): the T tokens attend to the hidden embeddings of the sample's nearest queue entries.
Without a ``context`` the blocks are skipped, so the instance-level branch is the same module with
the same weights, called without neighbours.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.graph import spatial_partitions
from skelkit.train.encoders.stgcn import STGCNBlock


class FrameGCN(nn.Module):
    """ST-GCN's data BatchNorm and first blocks: (N, C, T, V, M) -> (N, T, widths[-1] * V * M)."""

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int,
                 widths: tuple[int, ...] = (64, 64, 64), temporal_kernel: int = 9) -> None:
        super().__init__()
        if not widths or any(w <= 0 for w in widths):
            raise ValueError(f"gcn widths must be positive, got {widths}")
        self.num_joints, self.num_bodies = layout.num_joints, num_bodies
        self.register_buffer("adjacency", torch.from_numpy(spatial_partitions(layout)))
        partitions = self.adjacency.shape[0]
        self.data_bn = nn.BatchNorm1d(in_channels * layout.num_joints * num_bodies)
        blocks, c_in = [], in_channels
        for i, c_out in enumerate(widths):
            # As in ST-GCN, the first block has no residual; stride 1 keeps one token per frame.
            blocks.append(STGCNBlock(c_in, c_out, partitions, stride=1,
                                     temporal_kernel=temporal_kernel, residual=i > 0))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.edge_importance = nn.ParameterList(
            [nn.Parameter(torch.ones(self.adjacency.shape)) for _ in blocks]
        )
        self.out_dim = widths[-1] * layout.num_joints * num_bodies

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        if v != self.num_joints or m != self.num_bodies:
            raise ValueError(f"GCN-Transformer built for V={self.num_joints}, M={self.num_bodies}; "
                             f"got input {tuple(x.shape)}")
        x = x.permute(0, 4, 3, 1, 2).reshape(n, m * v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.adjacency * importance)
        # (N*M, C', T, V) -> one token per frame holding every body's joints.
        c_out = x.shape[1]
        return x.view(n, m, c_out, t, v).permute(0, 3, 1, 2, 4).reshape(n, t, m * c_out * v)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(length, dim) fixed sine/cosine position codes; no maximum sequence length to configure."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device)
                          * (-math.log(10000.0) / dim))
    codes = torch.zeros(length, dim, device=device)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency)[:, : dim // 2]
    return codes


class TransformerLayer(nn.Module):
    """Pre-norm self-attention, optional cross-attention to a context, feed-forward; residuals."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float = 0.0,
                 cross_attention: bool = True) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.cross_attention: nn.MultiheadAttention | None = None
        if cross_attention:
            self.norm_cross = nn.LayerNorm(dim)
            self.norm_context = nn.LayerNorm(dim)
            self.cross_attention = nn.MultiheadAttention(dim, heads, dropout=dropout,
                                                         batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_dim, dim))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        y = self.norm_self(x)
        x = x + self.dropout(self.self_attention(y, y, y, need_weights=False)[0])
        if context is not None:
            if self.cross_attention is None:
                raise ValueError("this encoder was built without cross-attention blocks")
            y, c = self.norm_cross(x), self.norm_context(context)
            x = x + self.dropout(self.cross_attention(y, c, c, need_weights=False)[0])
        return x + self.dropout(self.ffn(self.norm_ffn(x)))


class GCNTransformer(nn.Module):
    """(N, C, T, V, M) [+ context (N, K, dim)] -> (N, dim) hidden embedding h (``out_dim`` = dim).

    ``context`` holds the hidden embeddings of K neighbours (the cluster-level branch of I²MD);
    they have the width of h, so a queue of this encoder's own outputs can feed it.
    """

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int = 2,
                 gcn_widths: tuple[int, ...] | list[int] = (64, 64, 64), dim: int = 768,
                 layers: int = 6, heads: int = 12, ffn_dim: int = 3072, dropout: float = 0.0,
                 cross_attention: bool = True, temporal_kernel: int = 9) -> None:
        super().__init__()
        if dim % heads or dim % 2:
            raise ValueError(f"dim {dim} must be even and divisible by heads {heads}")
        if layers < 1:
            raise ValueError(f"need at least one transformer layer, got {layers}")
        self.frames = FrameGCN(in_channels, layout, num_bodies, tuple(gcn_widths), temporal_kernel)
        self.token = nn.Linear(self.frames.out_dim, dim)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, heads, ffn_dim, dropout, cross_attention) for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim
        self.has_cross_attention = cross_attention

    def tokens(self, x: Tensor) -> Tensor:
        """(N, C, T, V, M) -> (N, T, dim) frame tokens with position codes (the GCN part).

        The instance and cluster branches read the same view with the same weights, so a caller
        running both computes this once and passes it to :meth:`transform` twice."""
        tokens = self.token(self.frames(x))
        return tokens + sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device)

    def transform(self, tokens: Tensor, context: Tensor | None = None) -> Tensor:
        """(N, T, dim) tokens [+ neighbour context (N, K, dim)] -> (N, dim) hidden embedding."""
        if context is not None and (context.ndim != 3 or context.shape[0] != tokens.shape[0]
                                    or context.shape[2] != self.out_dim):
            raise ValueError(f"context must be (N={tokens.shape[0]}, K, {self.out_dim}), "
                             f"got {tuple(context.shape)}")
        for layer in self.layers:
            tokens = layer(tokens, context)
        return self.norm(tokens).mean(dim=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.transform(self.tokens(x), context)
