"""Encoders: BiGRU full-sequence call = per-timestep reference; ST-GCN graph from the layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skelkit.store import NTU25, Layout
from skelkit.train.encoders import ENCODERS, STGCN, BiGRU, build_encoder
from skelkit.train.encoders.bigru import gru_per_frame_calls, gru_stepwise
from skelkit.train.encoders.graph import graph_center, hop_distance, spatial_partitions

# A 5-joint chain 0-1-2-3-4 rooted at 2: proves nothing assumes 25 joints.
CHAIN = Layout(name="chain5", joint_names=("a", "b", "c", "d", "e"), parents=(1, 2, 2, 2, 3),
               hinges=((0, 1), (1, 2), (2, 2), (3, 2), (4, 3)), z_axis=(2, 1), x_axis=(0, 4))


def test_registry_names():
    assert {"bigru", "stgcn", "gcn_transformer"} <= set(ENCODERS)
    with pytest.raises(ValueError, match="unknown encoder"):
        build_encoder("lstm", 3, NTU25)
    with pytest.raises(ValueError, match="bigru"):
        build_encoder("bigru", 3, NTU25, hidden=3)


@pytest.mark.parametrize("pool", ["final", "last", "mean"])
def test_bigru_full_sequence_equals_per_timestep_loop(pool):
    torch.manual_seed(0)
    enc = BiGRU(3, CHAIN, num_bodies=2, hidden_size=8, num_layers=3, pool=pool).eval()
    x = torch.randn(4, 3, 7, 5, 2)
    frames = enc.flatten(x)
    out, h_n = enc.gru(frames)
    ref_out, ref_h = gru_stepwise(enc.gru, frames)
    assert torch.allclose(out, ref_out, atol=1e-5) and torch.allclose(h_n, ref_h, atol=1e-5)
    feats = enc(x)
    assert feats.shape == (4, 16) and enc.out_dim == 16
    want = {"final": torch.cat([ref_out[:, -1, :8], ref_out[:, 0, 8:]], dim=1),
            "last": ref_out[:, -1], "mean": ref_out.mean(dim=1)}[pool]
    assert torch.allclose(feats, want, atol=1e-5)


def test_bigru_forward_directions_equal_the_authors_per_frame_calls():
    """``directions="forward"`` (CMD reference) = one nn.GRU call per frame carrying the hidden
    state (moco/GRU.py), features and gradients; and differs from the bidirectional GRU."""
    torch.manual_seed(4)
    enc = BiGRU(3, CHAIN, num_bodies=2, hidden_size=8, num_layers=3, pool="last",
                directions="forward").train()
    x = torch.randn(4, 3, 7, 5, 2)
    feats = enc(x)
    frames = enc.flatten(x)
    loop = gru_per_frame_calls(enc.gru, frames)[:, -1]
    assert torch.allclose(feats, loop, atol=1e-6)
    g = torch.randn_like(feats)
    ours = torch.autograd.grad((feats * g).sum(), list(enc.gru.parameters()), retain_graph=True)
    ref = torch.autograd.grad((loop * g).sum(), list(enc.gru.parameters()))
    for a, b in zip(ours, ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    bidirectional, _ = enc.gru(frames)
    assert (bidirectional[:, -1] - feats).abs().max() > 1e-2


def test_bigru_batchnorm_on_flattened_frames_and_every_body_counts():
    torch.manual_seed(1)
    enc = BiGRU(3, CHAIN, num_bodies=2, hidden_size=8, num_layers=1).eval()
    assert enc.input_norm.num_features == 3 * 5 * 2
    x = torch.randn(2, 3, 6, 5, 2)
    y = x.clone()
    y[..., 1] += 1.0  # move only the second body
    assert not torch.allclose(enc(x), enc(y))
    # CMD's flattening: frame features ordered (joint, channel, body).
    enc.input_norm.reset_running_stats()
    frames = enc.flatten(x)
    assert torch.allclose(frames[0, 2, (4 * 3 + 1) * 2 + 1], x[0, 1, 2, 4, 1] / (1 + 1e-5) ** 0.5)
    with pytest.raises(ValueError, match="features per frame"):
        enc(torch.randn(2, 3, 6, 4, 2))


def test_stgcn_shapes_and_channel_multiplier():
    torch.manual_seed(2)
    enc = STGCN(3, CHAIN, num_bodies=2, channel_multiplier=0.25, hidden_dim=32)
    assert enc.out_dim == 32
    widths = [b.gcn.conv.out_channels // 3 for b in enc.blocks]
    assert widths == [16, 16, 16, 16, 32, 32, 32, 64, 64, 32]  # CrosSCLR's 1/4 channels
    assert STGCN(3, NTU25, channel_multiplier=1.0).out_dim == 256
    assert enc.data_bn.num_features == 3 * 5  # per body, over (joint, channel)
    out = enc(torch.randn(3, 3, 16, 5, 2))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="V=5"):
        enc(torch.randn(3, 3, 16, 25, 2))


def test_stgcn_mixes_joints_only_along_layout_edges():
    """With one block and a 1x1 temporal kernel, joint 0's output depends on joints 0 and 1
    (its neighbours in CHAIN) but not on joint 4."""
    torch.manual_seed(3)
    enc = STGCN(3, CHAIN, num_bodies=1, channel_multiplier=0.25, temporal_kernel=1).eval()
    block = enc.blocks[0]
    x = torch.randn(1, 3, 4, 5, requires_grad=True)
    block(x, enc.adjacency)[0, :, :, 0].sum().backward()
    touched = x.grad.abs().sum(dim=(0, 1, 2))
    assert touched[0] > 0 and touched[1] > 0 and touched[2] == 0 and touched[4] == 0


def test_hop_distance_and_centre():
    d = hop_distance(5, CHAIN.edges)
    assert d[0].tolist() == [0, 1, 2, 3, 4]
    assert graph_center(CHAIN) == 2
    assert graph_center(NTU25) == 20  # spine_shoulder, ST-GCN's NTU centre


def test_spatial_partitions():
    a = spatial_partitions(CHAIN)
    assert a.shape == (3, 5, 5) and a.dtype == np.float32
    assert np.allclose(a.sum(axis=(0, 1)), 1.0)  # each target's column sums to 1
    root, centripetal, centrifugal = a
    # Joint 1 (distance 1 from centre 2) hears itself (root), 2 (closer) and 0 (farther), 1/3 each.
    assert root[1, 1] == pytest.approx(1 / 3)
    assert centripetal[2, 1] == pytest.approx(1 / 3) and centrifugal[0, 1] == pytest.approx(1 / 3)
    assert centripetal[0, 1] == 0 and centrifugal[2, 1] == 0 and a[:, 4, 1].sum() == 0
    ntu = spatial_partitions(NTU25)
    assert np.allclose(ntu.sum(axis=(0, 1)), 1.0) and (ntu[0] > 0).sum() == 25
