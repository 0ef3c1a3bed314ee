"""ST-GCN (Yan et al., 2018) as the CrosSCLR/SkeletonCLR backbone, graph from the store's layout.

Ten spatial-temporal blocks with channel widths 64,64,64,64,128,128,128,256,256 times
``channel_multiplier`` (CrosSCLR uses 1/4) and a last block of ``hidden_dim`` channels (256, not
scaled, as CrosSCLR's ``hidden_dim``), temporal stride 2 at blocks 5 and 8, learnable edge
importance, dropout in blocks 2-10, then global average pooling over time, joints and bodies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.graph import spatial_partitions

_WIDTHS = (64, 64, 64, 64, 128, 128, 128, 256, 256)
_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)


class GraphConv(nn.Module):
    """Sum over partitions k of (W_k x) A_k: a 1x1 conv to K*C_out channels, then the graph."""

    def __init__(self, in_channels: int, out_channels: int, num_partitions: int) -> None:
        super().__init__()
        self.num_partitions = num_partitions
        self.conv = nn.Conv2d(in_channels, out_channels * num_partitions, kernel_size=1)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        n, _, t, v = x.shape
        y = self.conv(x).view(n, self.num_partitions, -1, t, v)
        return torch.einsum("nkctv,kvw->nctw", y, adjacency)


class STGCNBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_partitions: int, stride: int,
                 temporal_kernel: int = 9, dropout: float = 0.0, residual: bool = True) -> None:
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, num_partitions)
        pad = (temporal_kernel - 1) // 2
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), (stride, 1), (pad, 0)),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout, inplace=True),
        )
        if not residual:
            self.residual: nn.Module | None = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        y = self.tcn(self.gcn(x, adjacency))
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """(N, C, T, V, M) -> (N, out_dim) pooled features."""

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int = 2,
                 channel_multiplier: float = 1.0, hidden_dim: int = 256, temporal_kernel: int = 9,
                 dropout: float = 0.0, edge_importance: bool = True) -> None:
        super().__init__()
        if channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier must be positive, got {channel_multiplier}")
        self.num_joints, self.num_bodies = layout.num_joints, num_bodies
        self.register_buffer("adjacency", torch.from_numpy(spatial_partitions(layout)))
        k = self.adjacency.shape[0]
        widths = [max(1, round(w * channel_multiplier)) for w in _WIDTHS] + [hidden_dim]
        # Per-body BatchNorm over (joint, channel), shared by the bodies, as CrosSCLR's ST-GCN.
        self.data_bn = nn.BatchNorm1d(in_channels * layout.num_joints)
        blocks, c_in = [], in_channels
        for i, (c_out, stride) in enumerate(zip(widths, _STRIDES)):
            blocks.append(STGCNBlock(c_in, c_out, k, stride, temporal_kernel,
                                     dropout=0.0 if i == 0 else dropout, residual=i > 0))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        shape = self.adjacency.shape
        self.edge_importance = nn.ParameterList(
            [nn.Parameter(torch.ones(shape), requires_grad=edge_importance) for _ in blocks]
        )
        self.out_dim = widths[-1]

    def forward(self, x: Tensor) -> Tensor:
        n, c, t, v, m = x.shape
        if v != self.num_joints or m != self.num_bodies:
            raise ValueError(f"ST-GCN built for V={self.num_joints}, M={self.num_bodies}; "
                             f"got input {tuple(x.shape)}")
        x = x.permute(0, 4, 3, 1, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x)
        x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(n * m, c, t, v)
        for block, importance in zip(self.blocks, self.edge_importance):
            x = block(x, self.adjacency * importance)
        return x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
