"""CMD's sequence encoder: BatchNorm on the flattened frame, then a bidirectional multi-layer GRU.

The whole sequence goes through ONE ``nn.GRU`` call (fused kernels); the reference code fed one
frame per call, which is far slower and (because each call sees a length-1 sequence) makes its
"backward" direction run forward in time. Here both directions read the whole sequence, and the
pooled feature is, by default, what CMD pools in spirit: the top layer's final state of each
direction after reading every frame (``pool="final"``: [h_fwd(T-1), h_bwd(0)]). ``pool="last"``
takes the top layer's output at the last frame (CMD's literal index), ``pool="mean"`` the mean
over frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout

POOLS = ("final", "last", "mean")


class BiGRU(nn.Module):
    """(N, C, T, V, M) -> (N, 2 * hidden_size)."""

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int = 2,
                 hidden_size: int = 1024, num_layers: int = 3, pool: str = "final") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.input_size = in_channels * layout.num_joints * num_bodies
        self.pool = pool
        self.input_norm = nn.BatchNorm1d(self.input_size)
        self.gru = nn.GRU(self.input_size, hidden_size, num_layers=num_layers,
                          batch_first=True, bidirectional=True)
        for name, p in self.gru.named_parameters():  # CMD: Xavier-uniform on every weight matrix
            if name.startswith("weight"):
                nn.init.xavier_uniform_(p)
        self.out_dim = 2 * hidden_size

    def flatten(self, x: Tensor) -> Tensor:
        """(N, C, T, V, M) -> batch-normalised frames (N, T, V*C*M), CMD's flattening order."""
        n, c, t, v, m = x.shape
        if c * v * m != self.input_size:
            raise ValueError(f"BiGRU built for {self.input_size} features per frame; "
                             f"got input {tuple(x.shape)}")
        frames = x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)
        return self.input_norm(frames.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        output, h_n = self.gru(self.flatten(x))
        return pool_gru(output, h_n, self.pool)


def pool_gru(output: Tensor, h_n: Tensor, pool: str) -> Tensor:
    """Pool a bidirectional GRU's (N, T, 2H) output and (2L, N, H) final states."""
    if pool == "final":
        return torch.cat([h_n[-2], h_n[-1]], dim=1)
    if pool == "last":
        return output[:, -1]
    if pool == "mean":
        return output.mean(dim=1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


def gru_stepwise(gru: nn.GRU, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Reference: the same bidirectional GRU as a per-timestep Python loop over its weights.

    Only for tests and ``bench/step.py`` (it is what the full-sequence call replaces). Returns
    (output (N, T, 2H), h_n (2L, N, H)) like ``nn.GRU`` with ``batch_first=True``.
    """
    if not (gru.batch_first and gru.bidirectional):
        raise ValueError("gru_stepwise expects a batch_first bidirectional GRU")
    layer_input, finals = frames, []
    n, t, _ = frames.shape
    for layer in range(gru.num_layers):
        outputs = []
        for suffix, steps in (("", range(t)), ("_reverse", range(t - 1, -1, -1))):
            w_ih = getattr(gru, f"weight_ih_l{layer}{suffix}")
            w_hh = getattr(gru, f"weight_hh_l{layer}{suffix}")
            b_ih = getattr(gru, f"bias_ih_l{layer}{suffix}")
            b_hh = getattr(gru, f"bias_hh_l{layer}{suffix}")
            h = frames.new_zeros(n, gru.hidden_size)
            per_step: list[Tensor] = [h] * t
            for step in steps:
                h = _gru_cell(layer_input[:, step], h, w_ih, w_hh, b_ih, b_hh)
                per_step[step] = h
            outputs.append(torch.stack(per_step, dim=1))
            finals.append(h)
        layer_input = torch.cat(outputs, dim=2)
    return layer_input, torch.stack(finals)


def _gru_cell(x: Tensor, h: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor,
              b_hh: Tensor) -> Tensor:
    gi = x @ w_ih.t() + b_ih
    gh = h @ w_hh.t() + b_hh
    i_r, i_z, i_n = gi.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    candidate = torch.tanh(i_n + r * h_n)
    return (1 - z) * candidate + z * h
