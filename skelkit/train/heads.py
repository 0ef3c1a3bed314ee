"""Projection heads mapping an encoder's pooled hidden feature to the contrastive embedding."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """MoCo v2's head: Linear(in, in) - ReLU - Linear(in, out) with ``mlp``, else Linear(in, out).

    CMD (``--mlp``) and SkeletonCLR both use the two-layer form with a hidden width equal to the
    encoder's feature width.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, mlp: bool = True,
                 hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.out_dim = out_dim
        if mlp:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)
            )
        else:
            self.net = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
