"""Encoder registry: name -> class(in_channels, layout, num_bodies, **kwargs) with ``.out_dim``;
forward maps (N, C, T, V, M) to pooled hidden features (N, out_dim)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.bigru import BiGRU
from skelkit.train.encoders.gcn_transformer import GCNTransformer
from skelkit.train.encoders.stgcn import STGCN

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "bigru": BiGRU, "stgcn": STGCN, "gcn_transformer": GCNTransformer,
}


def build_encoder(name: str, in_channels: int, layout: Layout, num_bodies: int = 2,
                  **kwargs: object) -> nn.Module:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; known: {', '.join(sorted(ENCODERS))}")
    try:
        return ENCODERS[name](in_channels, layout, num_bodies, **kwargs)
    except TypeError as exc:
        raise ValueError(f"encoder {name}: {exc}") from None


__all__ = ["ENCODERS", "STGCN", "BiGRU", "GCNTransformer", "build_encoder"]
