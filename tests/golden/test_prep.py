"""Parity with the golden outputs of the published reference code (../shared/golden/README.md).

Every golden array is checked for every input: 21 NTU files, 24 PKU-MMD clips.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

from skelkit.prep.formats.ntu import prepare_ntu_file
from skelkit.prep.kernels.bodies import select_bodies
from skelkit.prep.kernels.modalities import derive_modalities
from skelkit.prep.kernels.normalize import cmd_normalize, ikem_fixed
from skelkit.prep.kernels.parse_ntu import parse_ntu_file
from skelkit.prep.kernels.parse_pku import parse_pku_labels, parse_pku_skeleton
from skelkit.prep.kernels.sample import PreparedSample, prepare_bodies
from skelkit.store.layout import NTU25
from skelkit.store.schema import MODALITIES

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"
ATOL = 1e-4
ATOL_DERIVED = 1e-3  # acceleration and angular velocity (golden README)
GOLDEN_KEY = {
    "joint": "ikem_joint", "motion": "ikem_motion", "bone": "ikem_bone",
    "acceleration": "ikem_acceleration", "axis": "ikem_rotation_axis",
    "angular_velocity": "ikem_omega",
}


def _names(npz: str, fallback: list[str]) -> list[str]:
    path = GOLDEN / npz
    if not path.is_file():
        return fallback
    with np.load(path, allow_pickle=False) as z:
        return [str(n) for n in z["names"]]


NTU_NAMES = _names("ntu_reference.npz", ["golden-data-absent"])
PKU_NAMES = _names("pku_reference.npz", ["golden-data-absent"])


@cache
def _ntu(name: str) -> tuple[np.ndarray, int, PreparedSample]:
    parsed = parse_ntu_file(GOLDEN / "ntu" / name, NTU25.num_joints)
    bodies, _ = select_bodies(parsed.slots, 2)
    return bodies, parsed.num_frames, prepare_ntu_file(GOLDEN / "ntu" / name, NTU25)


@cache
def _pku(name: str) -> tuple[np.ndarray, int, int, PreparedSample]:
    video, index = name.rsplit("_", 1)
    clip = parse_pku_labels(GOLDEN / "pku" / "label" / video)[int(index)]
    skeleton = parse_pku_skeleton(GOLDEN / "pku" / "skeleton" / video, NTU25.num_joints, 2)
    bodies = np.ascontiguousarray(skeleton[clip.start:clip.end].transpose(1, 0, 2, 3))
    return bodies, clip.end - clip.start, clip.label0, prepare_bodies(bodies, NTU25)


def _row(golden: dict[str, np.ndarray], name: str) -> int:
    return int(np.flatnonzero(golden["names"] == name)[0])


def _as_bodies(ctvm: np.ndarray) -> np.ndarray:
    """Golden (C, T, V, M) -> (M, T, V, 3)."""
    return ctvm.transpose(3, 1, 2, 0)


@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_frame_count(ntu_golden, name):
    _, frames, sample = _ntu(name)
    i = _row(ntu_golden, name)
    assert frames == ntu_golden["num_frame"][i] == sample.num_frames
    assert sample.gamma == pytest.approx(frames / 50)


@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_cmd_raw(ntu_golden, name):
    """Body selection: the two most active of up to four bodies, zero beyond the recording."""
    bodies, frames, _ = _ntu(name)
    golden = ntu_golden["cmd_raw"][_row(ntu_golden, name)]
    np.testing.assert_allclose(bodies, _as_bodies(golden[:, :frames]), rtol=0, atol=ATOL)
    assert not golden[:, frames:].any()


@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_cmd_normalized(ntu_golden, name):
    bodies, frames, sample = _ntu(name)
    golden = ntu_golden["cmd_normalized"][_row(ntu_golden, name)][:, :frames]
    np.testing.assert_allclose(cmd_normalize(bodies, NTU25), _as_bodies(golden), rtol=0,
                               atol=ATOL)
    # The store keeps (T, 3, V, M).
    np.testing.assert_allclose(sample.raw, golden.transpose(1, 0, 2, 3), rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_ikem_j50(ntu_golden, name):
    bodies, _, _ = _ntu(name)
    golden = ntu_golden["ikem_j50"][_row(ntu_golden, name)]
    np.testing.assert_allclose(ikem_fixed(bodies, NTU25, 50), _as_bodies(golden), rtol=0,
                               atol=ATOL)


def _hinge_sine(bones: np.ndarray) -> np.ndarray:
    """(C, F, V, M) bones -> |sin| of the angle between the two bones of each hinge (0 when a
    bone is zero): how well the hinge's axis direction is defined."""
    partner = np.array([w for _, w in NTU25.hinges])
    b, c = bones.astype(np.float64), bones[:, :, partner].astype(np.float64)
    lengths = np.linalg.norm(b, axis=0) * np.linalg.norm(c, axis=0)
    cross = np.linalg.norm(np.cross(b, c, axis=0), axis=0)
    return np.where(lengths > 1e-12, cross / np.maximum(lengths, 1e-30), 0.0)


def _unit_golden_axis(raw_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reference stores the raw cross product; the project stores x / max(|x|, 1e-12)."""
    size = np.linalg.norm(raw_axis.astype(np.float64), axis=0)
    return raw_axis / np.maximum(size, 1e-12), size


def _check_modality(ours: np.ndarray, golden: np.ndarray, modality: str, sine: np.ndarray,
                    min_cross: float) -> None:
    """ours, golden: (3, F, V, M). The axis is compared only where the golden raw cross product
    |b x c| >= min_cross: on a degenerate hinge (sine ~ 0) the golden "axis" normalises
    rounding noise (the torso normal crossed with itself gives |x| ~ 1e-8), and a short cross
    product amplifies any difference of the input joints by 1 / |b x c|."""
    assert ours.shape == golden.shape and ours.dtype == np.float32
    atol = ATOL_DERIVED if modality in ("acceleration", "angular_velocity") else ATOL
    if modality != "axis":
        np.testing.assert_allclose(ours, golden, rtol=0, atol=atol)
        return
    unit, size = _unit_golden_axis(golden)
    assert np.all(sine[size < 1e-6] < 1e-4), "a tiny golden axis on a well-defined hinge"
    keep = size >= min_cross
    assert keep.sum() > 0.8 * np.count_nonzero(sine)  # most real hinges are compared
    np.testing.assert_allclose(ours.transpose(1, 2, 3, 0)[keep],
                               unit.transpose(1, 2, 3, 0)[keep], rtol=0, atol=atol)
    norms = np.linalg.norm(ours, axis=0)
    assert np.all((np.abs(norms - 1) < 1e-5) | (norms == 0))


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_modalities(ntu_golden, name, modality):
    """The modality maths alone: from the golden 50-frame joints to each golden modality."""
    i = _row(ntu_golden, name)
    j50 = _as_bodies(ntu_golden["ikem_j50"][i])
    ours = derive_modalities(j50, ntu_golden["num_frame"][i] / 50, NTU25)[modality]
    golden = ntu_golden[GOLDEN_KEY[modality]][i].astype(np.float64)
    sine = _hinge_sine(ntu_golden["ikem_bone"][i])
    _check_modality(_as_bodies(ours), golden, modality, sine, min_cross=1e-6)


@pytest.mark.parametrize("modality", MODALITIES)
@pytest.mark.parametrize("name", NTU_NAMES)
def test_ntu_sample_fixed(ntu_golden, name, modality):
    """End to end: prepare_ntu_file's store-ordered (3, F, V, M) arrays against the golden."""
    _, _, sample = _ntu(name)
    i = _row(ntu_golden, name)
    golden = ntu_golden[GOLDEN_KEY[modality]][i].astype(np.float64)
    sine = _hinge_sine(ntu_golden["ikem_bone"][i])
    _check_modality(sample.fixed[modality], golden, modality, sine, min_cross=1e-3)


@pytest.mark.parametrize("name", NTU_NAMES[:3])
def test_derive_modalities_matches_sample(name):
    """The dict API gives the same numbers as the store-ordered sample."""
    bodies, frames, sample = _ntu(name)
    mods = derive_modalities(ikem_fixed(bodies, NTU25, 50), frames / 50, NTU25)
    for modality in MODALITIES:
        np.testing.assert_array_equal(mods[modality], _as_bodies(sample.fixed[modality]))


@pytest.mark.parametrize("name", PKU_NAMES)
def test_pku_clip_meta(pku_golden, name):
    _, frames, label0, sample = _pku(name)
    i = _row(pku_golden, name)
    assert frames == pku_golden["num_frame"][i] == sample.num_frames
    assert label0 == pku_golden["label"][i]
    assert sample.gamma == pytest.approx(frames / 50)


@pytest.mark.parametrize("name", PKU_NAMES)
def test_pku_cmd_raw(pku_golden, name):
    """PKU clips keep the file's body order (no selection), frames start..end-1."""
    bodies, frames, _, _ = _pku(name)
    golden = pku_golden["cmd_raw"][_row(pku_golden, name)]
    np.testing.assert_allclose(bodies, _as_bodies(golden[:, :frames]), rtol=0, atol=ATOL)
    assert not golden[:, frames:].any()


@pytest.mark.parametrize("name", PKU_NAMES)
def test_pku_cmd_normalized(pku_golden, name):
    _, frames, _, sample = _pku(name)
    golden = pku_golden["cmd_normalized"][_row(pku_golden, name)][:, :frames]
    np.testing.assert_allclose(sample.raw, golden.transpose(1, 0, 2, 3), rtol=0, atol=ATOL)
