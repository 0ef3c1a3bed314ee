"""CMD's sequence encoder: BatchNorm on the flattened frame, then a two-direction multi-layer GRU.

The parameters are always those of one ``nn.GRU(bidirectional=True)`` (names ``gru.weight_ih_l0``,
``gru.weight_ih_l0_reverse``, ...: the layout of the reference's ``encoder.gru``), so a checkpoint
loads whichever way the encoder runs. ``directions`` chooses how:

- ``bidirectional``: a true bidirectional GRU, one fused ``nn.GRU`` call over the whole sequence;
  the "reverse" weights read the sequence backwards.
- ``forward``: what CMD's code computes (``moco/GRU.py`` lines 30-49 of maoyunyao/CMD). It calls
  the GRU once per frame with a length-1 sequence and the previous call's hidden state, so the
  "reverse" weight set of every layer also runs forward in time, and layer l > 0 at frame t reads
  [fwd_{l-1}(t), rev_{l-1}(t)]. Here that is two unidirectional GRU runs per layer over the whole
  sequence (fused kernels, no per-frame Python loop), their outputs concatenated as the next
  layer's input.

``pool`` picks the feature: ``last`` the top layer's output at the last frame (CMD's index,
[h_fwd(T-1), h_rev(T-1)] in ``forward`` mode), ``final`` the top layer's final state of each
direction ([h_fwd(T-1), h_bwd(0)] when bidirectional), ``mean`` the mean output over frames.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torch.func import functional_call

from skelkit.store.layout import Layout

POOLS = ("final", "last", "mean")
DIRECTIONS = ("bidirectional", "forward")
_GRU_TENSORS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
_DIRECTION_SUFFIXES = ("", "_reverse")


class BiGRU(nn.Module):
    """(N, C, T, V, M) -> (N, 2 * hidden_size)."""

    def __init__(self, in_channels: int, layout: Layout, num_bodies: int = 2,
                 hidden_size: int = 1024, num_layers: int = 3, pool: str = "final",
                 directions: str = "bidirectional") -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {directions!r}")
        self.input_size = in_channels * layout.num_joints * num_bodies
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.pool, self.directions = pool, directions
        self.input_norm = nn.BatchNorm1d(self.input_size)
        self.gru = nn.GRU(self.input_size, hidden_size, num_layers=num_layers,
                          batch_first=True, bidirectional=True)
        for name, p in self.gru.named_parameters():  # CMD: Xavier-uniform on every weight matrix
            if name.startswith("weight"):
                nn.init.xavier_uniform_(p)
        self.out_dim = 2 * hidden_size
        # Shape-only one-layer GRUs that ``forward`` mode calls with this GRU's weights; kept out
        # of the module tree (no parameters of their own, nothing to move between devices).
        self._templates: dict[int, nn.GRU] = {}

    def frames(self, x: Tensor) -> Tensor:
        """(N, C, T, V, M) -> (N, T, V*C*M) frames before the BatchNorm: feature index
        (v*C + c)*M + m, the reference's flattening (``moco/builder_cmd.py`` line 164)."""
        n, c, t, v, m = x.shape
        if c * v * m != self.input_size:
            raise ValueError(f"BiGRU built for {self.input_size} features per frame; "
                             f"got input {tuple(x.shape)}")
        return x.permute(0, 2, 3, 1, 4).reshape(n, t, v * c * m)

    def flatten(self, x: Tensor) -> Tensor:
        """(N, C, T, V, M) -> batch-normalised frames (N, T, V*C*M); the BatchNorm normalises
        each flattened feature over N and T."""
        return self.input_norm(self.frames(x).transpose(1, 2)).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        frames = self.flatten(x)
        if self.directions == "forward":
            output, h_n = self.run_forward_directions(frames)
        else:
            output, h_n = self.gru(frames)
        return pool_gru(output, h_n, self.pool)

    def run_forward_directions(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Both weight sets of every layer run forward in time over the whole sequence.

        Returns (top layer's output (N, T, 2H) = [fwd, rev] per frame, final states (2L, N, H))
        in ``nn.GRU``'s layout."""
        layer_input, finals = frames, []
        for layer in range(self.num_layers):
            outputs = []
            for suffix in _DIRECTION_SUFFIXES:
                weights = {f"{name}_l0": getattr(self.gru, f"{name}_l{layer}{suffix}")
                           for name in _GRU_TENSORS}
                output, h_n = self._call_template(layer_input, weights)
                outputs.append(output)
                finals.append(h_n[0])
            layer_input = torch.cat(outputs, dim=2)
        return layer_input, torch.stack(finals)

    def _call_template(self, layer_input: Tensor, weights: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        size = layer_input.shape[-1]
        if size not in self._templates:
            self._templates[size] = nn.GRU(size, self.hidden_size, batch_first=True,
                                           device="meta")
        with warnings.catch_warnings():
            # cuDNN copies weights that are not one flat buffer (these are views of the
            # bidirectional GRU's), and says so on every call; the copy is the price of sharing.
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            return functional_call(self._templates[size], weights, (layer_input,))


def pool_gru(output: Tensor, h_n: Tensor, pool: str) -> Tensor:
    """Pool a two-direction GRU's (N, T, 2H) output and (2L, N, H) final states."""
    if pool == "final":
        return torch.cat([h_n[-2], h_n[-1]], dim=1)
    if pool == "last":
        return output[:, -1]
    if pool == "mean":
        return output.mean(dim=1)
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")


def gru_stepwise(gru: nn.GRU, frames: Tensor) -> tuple[Tensor, Tensor]:
    """Reference: the same bidirectional GRU as a per-timestep Python loop over its weights.

    Only for tests (it is what the full-sequence call replaces). Returns (output (N, T, 2H),
    h_n (2L, N, H)) like ``nn.GRU`` with ``batch_first=True``.
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


def gru_per_frame_calls(gru: nn.GRU, frames: Tensor) -> Tensor:
    """The authors' loop (``moco/GRU.py`` EncoderRNN.forward, lines 30-49 of maoyunyao/CMD): the
    GRU called once per frame on a length-1 sequence, carrying its (2L, N, H) hidden state.
    Returns the top layer's output at every frame (N, T, 2H). For tests and ``bench/step.py``."""
    hidden, outputs = None, []
    for t in range(frames.shape[1]):
        output, hidden = gru(frames[:, t:t + 1], hidden)
        outputs.append(output)
    return torch.cat(outputs, dim=1)


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
