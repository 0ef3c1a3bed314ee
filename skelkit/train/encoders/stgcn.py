"""ST-GCN (Yan et al., 2018) as the CrosSCLR/SkeletonCLR backbone, graph from the store's layout.

Ten spatial-temporal blocks with channel widths 64,64,64,64,128,128,128,256,256 times
``channel_multiplier`` (CrosSCLR uses 1/4) and a last block of ``hidden_dim`` channels (256, not
scaled, as CrosSCLR's ``hidden_dim``), temporal stride 2 at blocks 5 and 8, learnable edge
importance, dropout in blocks 2-10, then global average pooling over time, joints and bodies.

The layers are those of ``net/st_gcn.py`` of the CrosSCLR/IKEM code (golden ``stgcn.npz``):
``data_bn`` on the (N*M, V*C, T) view (channel 3v + c), per block a 1x1 conv to K*C_out channels
aggregated over the K partitions, BatchNorm-ReLU-temporal conv-BatchNorm-Dropout, the residual,
ReLU; pooling is the mean over (T, V), then over the bodies (an all-zero second body counts).
Where the authors' code departs from the paper's graph and from our defaults, the difference is a
fidelity switch (``GRAPH_SWITCH``, ``DROPOUT_SWITCH``) that the methods pass as encoder args.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.graph import GRAPHS, build_adjacency
from skelkit.train.fidelity import Switch

_WIDTHS = (64, 64, 64, 64, 128, 128, 128, 256, 256)
_STRIDES = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)

GRAPH_SWITCH = Switch(
    "graph", "reference", "layout",
    "ST-GCN graph of net/utils/graph.py (IKEM, lines 3-147): NTU hand edges (22,23) (23,8) "
    "(24,25) (25,12), hop distances cut at max_hop 1, partitions [self, source "
    "farther-or-equal, source closer] (A[2] holds 8 entries); other layouts: the same "
    "construction on the layout's edges")
DROPOUT_SWITCH = Switch(
    "dropout", 0.5, 0.0,
    "Dropout(0.5) after the second BatchNorm of ST-GCN blocks 1-9 (net/st_gcn.py lines 77-156; "
    "dropout: 0.5 in config/crossclr_6views/*.yaml)")
_SWITCHED_ARGS = ("graph", "dropout")


def stgcn_switch_args(encoder: str, behaviour: object) -> dict[str, object]:
    """The ST-GCN encoder args a method's fidelity switches set (none for other encoders)."""
    if encoder != "stgcn":
        return {}
    return {name: getattr(behaviour, name) for name in _SWITCHED_ARGS}


def check_no_switched_args(encoder_args: dict[str, object]) -> None:
    """``encoder_args`` must leave the switched ST-GCN args to ``model.switches``."""
    owned = sorted(set(encoder_args) & set(_SWITCHED_ARGS))
    if owned:
        raise ValueError(f"encoder_args.{owned[0]}: set by the fidelity switch of that name "
                         f"(model.switches.{owned[0]}), not by encoder_args")


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
    """(N, C, T, V, M) -> (N, out_dim) pooled features. ``graph``: ``layout`` or ``reference``
    (see ``skelkit.train.encoders.graph``); ``dropout`` acts in blocks 1-9 (never block 0)."""

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int = 2,
                 channel_multiplier: float = 1.0, hidden_dim: int = 256, temporal_kernel: int = 9,
                 dropout: float = 0.0, edge_importance: bool = True,
                 graph: str = "layout") -> None:
        super().__init__()
        if channel_multiplier <= 0:
            raise ValueError(f"channel_multiplier must be positive, got {channel_multiplier}")
        if graph not in GRAPHS:
            raise ValueError(f"graph: one of {', '.join(GRAPHS)}, got {graph!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.num_joints, self.num_bodies = layout.num_joints, num_bodies
        self.register_buffer("adjacency", torch.from_numpy(build_adjacency(layout, graph)))
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
