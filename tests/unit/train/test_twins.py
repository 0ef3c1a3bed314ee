"""The torch twins equal the numba kernels of skelkit/prep and the golden reference arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from skelkit.store import NTU25, Layout
from skelkit.train.modalities import MODALITY_NAMES, derive, temporal_difference

GOLDEN = Path(__file__).resolve().parents[3] / ".." / "shared" / "golden" / "ntu_reference.npz"
TOLERANCE = {"acceleration": 1e-3, "angular_velocity": 1e-3}  # golden README
GOLDEN_KEYS = {"joint": "ikem_joint", "motion": "ikem_motion", "bone": "ikem_bone",
               "acceleration": "ikem_acceleration", "axis": "ikem_rotation_axis",
               "angular_velocity": "ikem_omega"}


def _joints(n: int, t: int, layout: Layout, seed: int) -> np.ndarray:
    """Plausible joints (N, 3, T, V, 2): a random pose drifting smoothly; body 1 absent in one."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(scale=0.3, size=(n, 3, 1, layout.num_joints, 2))
    drift = np.cumsum(rng.normal(scale=0.02, size=(n, 3, t, layout.num_joints, 2)), axis=2)
    x = (pose + drift).astype(np.float32)
    x[0, ..., 1] = 0.0
    return x


@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_twin_equals_numba_kernel(modality):
    prep = pytest.importorskip("skelkit.prep.kernels.modalities", exc_type=ImportError)
    x = _joints(3, 50, NTU25, seed=0)
    gamma = np.array([2.06, 1.0, 0.7], dtype=np.float32)
    got = derive(torch.from_numpy(x), modality, torch.from_numpy(gamma), NTU25).numpy()
    for i in range(len(x)):
        ref = prep.derive_modalities(x[i].transpose(3, 1, 2, 0), float(gamma[i]), NTU25)[modality]
        np.testing.assert_allclose(got[i], ref.transpose(3, 1, 2, 0),
                                   atol=TOLERANCE.get(modality, 1e-4), rtol=0)


@pytest.mark.skipif(not GOLDEN.is_file(), reason="golden data not present")
@pytest.mark.parametrize("modality", MODALITY_NAMES)
def test_twin_equals_golden_reference(modality):
    golden = np.load(GOLDEN)
    x = torch.from_numpy(golden["ikem_j50"])
    gamma = torch.from_numpy(golden["num_frame"] / 50.0).float()
    ref = golden[GOLDEN_KEYS[modality]]
    got = derive(x, modality, gamma, NTU25).numpy()
    if modality == "axis":  # the reference stores the raw cross product (golden README)
        size = np.linalg.norm(ref, axis=1, keepdims=True)
        ref = ref / np.maximum(size, 1e-12)
        # Where the raw cross product is ~0 (absent bodies, the self-hinge's float32 residue of
        # ~1e-8, near-parallel bones) its direction is rounding noise; compare elsewhere.
        keep = np.broadcast_to(size >= 1e-6, ref.shape)
        assert keep.mean() > 0.5
        got, ref = got[keep], ref[keep]
    np.testing.assert_allclose(got, ref, atol=TOLERANCE.get(modality, 1e-4), rtol=0)


def test_twins_run_batched_without_layout_assumptions():
    chain = Layout(name="chain4", joint_names=("a", "b", "c", "d"), parents=(0, 0, 1, 2),
                   hinges=((0, 0), (1, 0), (2, 1), (3, 2)), z_axis=(0, 1), x_axis=(2, 3))
    x = torch.from_numpy(_joints(2, 6, chain, seed=1))
    for modality in MODALITY_NAMES:
        assert derive(x, modality, torch.ones(2), chain).shape == x.shape
    bone = derive(x, "bone", None, chain)
    assert torch.equal(bone[:, :, :, 0], torch.zeros_like(bone[:, :, :, 0]))  # root self-loop
    assert torch.allclose(bone[:, :, :, 3], x[:, :, :, 3] - x[:, :, :, 2])


def test_motion_divides_by_gamma_and_ends_in_zero():
    x = torch.from_numpy(_joints(2, 5, NTU25, seed=2))
    m = temporal_difference(x, torch.tensor([2.0, 0.5]))
    assert torch.allclose(m[0, :, 1], (x[0, :, 2] - x[0, :, 1]) / 2.0)
    assert torch.allclose(m[1, :, 1], (x[1, :, 2] - x[1, :, 1]) / 0.5)
    assert torch.all(m[:, :, -1] == 0)
    assert torch.allclose(temporal_difference(x)[:, :, :-1], x[:, :, 1:] - x[:, :, :-1])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="unknown modality"):
        derive(torch.zeros(1, 3, 4, 25, 2), "velocity", None, NTU25)
    with pytest.raises(ValueError, match="V=24"):
        derive(torch.zeros(1, 3, 4, 24, 2), "bone", None, NTU25)
    with pytest.raises(ValueError, match="gamma"):
        derive(torch.zeros(2, 3, 4, 25, 2), "motion", torch.ones(3), NTU25)
