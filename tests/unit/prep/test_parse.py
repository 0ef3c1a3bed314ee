"""Raw readers and kernels against slow, obvious references; bad input raises RawFormatError."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from skelkit.prep.errors import RawFormatError
from skelkit.prep.formats.ntu import prepare_ntu_file
from skelkit.prep.kernels.bodies import select_bodies
from skelkit.prep.kernels.normalize import cmd_normalize, ikem_fixed
from skelkit.prep.kernels.parse_ntu import _read_line, parse_ntu_bytes, parse_ntu_file
from skelkit.prep.kernels.parse_pku import (
    PkuClip,
    cut_pku_clip,
    parse_pku_labels,
    parse_pku_skeleton,
    parse_pku_split,
)
from skelkit.prep.kernels.sample import prepare_bodies
from skelkit.store.layout import NTU25

V = NTU25.num_joints
NTU_REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "ntu-real"


# --- a slow reference reader: the way the published scripts read (readline, split, float) ---

def reference_read(text: str, max_slots: int = 4) -> tuple[np.ndarray, int]:
    lines = iter(text.splitlines())
    frames = int(next(lines))
    out = np.zeros((max_slots, frames, V, 3), dtype=np.float32)
    most = 0
    for t in range(frames):
        bodies = int(next(lines))
        most = max(most, bodies)
        for m in range(bodies):
            next(lines)
            joints = int(next(lines))
            for v in range(joints):
                values = [float(s) for s in next(lines).split()]
                if m < max_slots:
                    out[m, t, v] = values[:3]
    return out, most


def ntu_text(frames: list[list[np.ndarray]], newline: str = "\r\n") -> str:
    """A .skeleton file in the genuine layout; frames[t] is a list of (V, 3) bodies."""
    rows = [str(len(frames))]
    for bodies in frames:
        rows.append(str(len(bodies)))
        for k, body in enumerate(bodies):
            rows.append(f"7205759403793{k:04d} 0 1 1 1 1 0 0.02764709 0.05745083 2")
            rows.append(str(len(body)))
            for x, y, z in body:
                rows.append(f"{x:.7g} {y:.7g} {z:.7g} 277.419 191.8218 1036.233 519.1677 "
                            "-0.2059419 0.05349901 0.9692109 -0.1239193 2")
    return newline.join(rows) + newline


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def random_frames(rng, frames: int = 6, bodies: int = 1) -> list[list[np.ndarray]]:
    return [[rng.normal(size=(V, 3)) for _ in range(bodies)] for _ in range(frames)]


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def with_line(text: str, number: int, new: str) -> str:
    """Replace 1-based line ``number`` (CRLF kept)."""
    rows = text.split("\r\n")
    rows[number - 1] = new
    return "\r\n".join(rows)


# --- the number tokenizer ---

@pytest.mark.parametrize("token", [
    "0", "-0", "1", "+2", "-3.25", "0.2181153", "-0.0668001", ".5", "-.5", "5.", "1e3", "1E+3",
    "2.5e-05", "-7.125E-3", "72057594037931101", "123456789012345678901234", "0.000000",
    "3.785547", "9007199254740993", "1e-300",
])
def test_number_tokens_match_python_float(token):
    vals = np.zeros(4)
    count, _, status, _ = _read_line(np.frombuffer(f" {token}\t{token}\r\n".encode(), np.uint8),
                                     0, vals)
    assert status == 0 and count == 2
    if len(token.lstrip("+-").replace(".", "")) <= 15 and "e-300" not in token:
        assert vals[0] == float(token) and vals[1] == float(token)  # correctly rounded
    else:  # beyond 15 digits or 1e22 the parser is within a few ulps
        assert vals[0] == pytest.approx(float(token), rel=1e-14)


def test_crlf_and_lf_parse_identically(rng):
    frames = random_frames(rng, 5, 2)
    crlf = parse_ntu_bytes(ntu_text(frames, "\r\n").encode(), V)
    lf = parse_ntu_bytes(ntu_text(frames, "\n").encode(), V)
    np.testing.assert_array_equal(crlf.slots, lf.slots)
    reference, most = reference_read(ntu_text(frames, "\n"))
    np.testing.assert_array_equal(crlf.slots, reference)
    assert crlf.num_frames == 5 and crlf.max_bodies_seen == most == 2


def test_bodies_placed_by_position_and_fifth_body_dropped(rng):
    frames = [[rng.normal(size=(V, 3)) for _ in range(5)], [], [rng.normal(size=(V, 3))]]
    raw = parse_ntu_bytes(ntu_text(frames).encode(), V, max_slots=4)
    assert raw.slots.shape == (4, 3, V, 3) and raw.max_bodies_seen == 5
    for m in range(4):
        np.testing.assert_allclose(raw.slots[m, 0], frames[0][m], atol=1e-6)
    assert not raw.slots[:, 1].any()
    np.testing.assert_allclose(raw.slots[0, 2], frames[2][0], atol=1e-6)
    assert not raw.slots[1:, 2].any()


def test_genuine_ntu_files_parse():
    files = sorted(NTU_REAL.glob("*.skeleton"))
    if not files:
        pytest.skip(f"no genuine NTU files under {NTU_REAL}")
    for path in files:
        raw = parse_ntu_file(path)
        text = path.read_bytes().decode()
        assert raw.num_frames == int(text.split(maxsplit=1)[0])
        assert 10 <= raw.num_frames <= 300
        assert 1 <= raw.max_bodies_seen <= 4
        assert np.isfinite(raw.slots).all()
        assert np.abs(raw.slots).max() < 10  # metres in front of a Kinect
        assert raw.slots[0].any(axis=(1, 2)).mean() > 0.9  # body 0 is there most of the time
        reference, most = reference_read(text)
        np.testing.assert_array_equal(raw.slots, reference)
        assert raw.max_bodies_seen == most
        sample = prepare_ntu_file(path, NTU25)
        assert sample.raw.shape == (raw.num_frames, 3, V, 2)
        assert all(np.isfinite(a).all() for a in sample.fixed.values())


# --- bad input: RawFormatError with the 1-based line and a clear reason ---

def _error(data: bytes) -> RawFormatError:
    with pytest.raises(RawFormatError) as info:
        parse_ntu_bytes(data, V)
    return info.value


def test_empty_file():
    for data in (b"", b"\r\n  \n"):
        err = _error(data)
        assert err.line == 1 and "empty" in err.reason


def test_zero_frames():
    err = _error(b"0\r\n")
    assert err.line == 1 and "zero frames" in err.reason


def test_truncated_file(rng):
    text = ntu_text(random_frames(rng, 4))
    rows = lines_of(text)
    cut = "\r\n".join(rows[:40]) + "\r\n"  # frame 2 stops after 10 of its 25 joint lines
    err = _error(cut.encode())
    assert err.line == 41 and "truncated" in err.reason and "1 of the 4 frames" in err.reason
    err = _error(("\r\n".join(rows[:29]) + "\r\n").encode())  # all of frame 1, nothing more
    assert err.line == 30 and "1 of the 4 frames" in err.reason


def test_wrong_joint_count(rng):
    text = ntu_text(random_frames(rng, 3))
    err = _error(with_line(text, 32, "24").encode())  # frame 2's joint-count line
    assert err.line == 32 and "24 joints, expected 25" in err.reason


def test_missing_joint_line_is_caught(rng):
    rows = lines_of(ntu_text(random_frames(rng, 3)))
    del rows[10]  # frame 1 loses a joint line: frame 2's body count lands on a joint line
    err = _error(("\r\n".join(rows) + "\r\n").encode())
    assert err.line == 29 and "a joint line has 1 values, expected 12" in err.reason


def test_non_numeric_token(rng):
    text = ntu_text(random_frames(rng, 3))
    row = lines_of(text)[14].split()
    row[1] = "0.12x4"
    err = _error(with_line(text, 15, " ".join(row)).encode())
    assert err.line == 15 and "non-numeric token '0.12x4'" in err.reason
    err = _error(with_line(text, 2, "one").encode())
    assert err.line == 2 and "non-numeric token 'one'" in err.reason
    for token in ("1.2.3", "--1", "-", ".", "7e", "0x1F", "1,5"):  # in a field that is not kept
        row = lines_of(text)[14].split()
        row[8] = token
        err = _error(with_line(text, 15, " ".join(row)).encode())
        assert err.line == 15 and f"non-numeric token {token!r}" in err.reason
    row = lines_of(text)[14].split()
    row[8], row[9] = "+5", "-.5e-3"  # unusual but valid numbers
    assert parse_ntu_bytes(with_line(text, 15, " ".join(row)).encode(), V).num_frames == 3


@pytest.mark.parametrize("field", [2, 9])  # z, and an orientation field that is not kept
@pytest.mark.parametrize(("token", "word"), [("nan", "NaN"), ("-NaN", "NaN"), ("inf", "infinite"),
                                             ("-Infinity", "infinite"), ("1e999", "infinite"),
                                             ("-0.02e311", "infinite")])
def test_nan_and_inf_values(rng, token, word, field):
    text = ntu_text(random_frames(rng, 3))
    row = lines_of(text)[40].split()
    row[field] = token
    err = _error(with_line(text, 41, " ".join(row)).encode())
    assert err.line == 41 and word in err.reason


def test_huge_but_finite_unread_field_is_accepted(rng):
    text = ntu_text(random_frames(rng, 2))
    row = lines_of(text)[5].split()
    row[9] = "1.5e308"
    assert parse_ntu_bytes(with_line(text, 6, " ".join(row)).encode(), V).num_frames == 2


def test_fractional_count_and_trailing_content(rng):
    text = ntu_text(random_frames(rng, 2))
    err = _error(with_line(text, 2, "1.5").encode())
    assert err.line == 2 and "integer count" in err.reason
    err = _error((text + "1\r\n").encode())
    assert err.line == 2 * 28 + 2 and "after the last" in err.reason


def test_recording_without_bodies_is_reported(tmp_path):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(b"3\r\n0\r\n0\r\n0\r\n")
    assert parse_ntu_file(path).max_bodies_seen == 0  # well-formed text
    with pytest.raises(RawFormatError, match="no body in any of the 3 frames") as info:
        prepare_ntu_file(path, NTU25)
    assert info.value.file == str(path)


def test_absurd_frame_count_does_not_allocate():
    err = _error(b"99999999999\r\n0\r\n")
    assert err.line == 1 and "truncated" in err.reason


def test_file_errors_name_the_file(tmp_path, rng):
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_bytes(with_line(ntu_text(random_frames(rng, 2)), 3, "1 2 3").encode())
    with pytest.raises(RawFormatError) as info:
        parse_ntu_file(path)
    err = info.value
    assert err.file == str(path) and err.line == 3 and "body info line has 3 values, expected 10" in err.reason
    assert str(path) in str(err)
    copy = pickle.loads(pickle.dumps(err))  # crosses dask worker boundaries intact
    assert (copy.file, copy.line, copy.reason) == (err.file, err.line, err.reason)


# --- PKU-MMD ---

def test_pku_skeleton_and_errors(tmp_path, rng):
    frames = rng.normal(size=(4, 2, V, 3)).astype(np.float32)
    rows = [" ".join(f"{v:.6f}" for v in f.ravel()) for f in frames]
    good = tmp_path / "A01N01-L.txt"
    good.write_text("\n".join(rows) + "\n")
    np.testing.assert_allclose(parse_pku_skeleton(good, V, 2), frames, atol=1e-6)
    short = tmp_path / "short.txt"
    short.write_text("\n".join([*rows[:2], rows[2].rsplit(" ", 1)[0], rows[3]]) + "\n")
    with pytest.raises(RawFormatError) as info:
        parse_pku_skeleton(short, V, 2)
    assert info.value.line == 3 and "149 values, expected 150" in info.value.reason
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join([rows[0], rows[1].replace(" ", " nan ", 1)]) + "\n")
    with pytest.raises(RawFormatError) as info:
        parse_pku_skeleton(bad, V, 2)
    assert info.value.line == 2 and "NaN" in info.value.reason
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(RawFormatError, match="empty file"):
        parse_pku_skeleton(empty, V, 2)


def test_pku_clip_cut_and_past_the_end(rng):
    skeleton = rng.normal(size=(40, 2, V, 3)).astype(np.float32)
    bodies = cut_pku_clip(skeleton, PkuClip(0, 10, 25, 1, 3), "label.txt")
    assert bodies.shape == (2, 15, V, 3)
    np.testing.assert_array_equal(bodies[1, 0], skeleton[10, 1])
    with pytest.raises(RawFormatError, match="past the end") as info:
        cut_pku_clip(skeleton, PkuClip(0, 30, 41, 1, 3), "label.txt")
    assert info.value.line == 3 and info.value.file == "label.txt"


def test_pku_labels_and_split(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("5,12,69,1\n\n2,108,152,2\n")
    clips = parse_pku_labels(labels)
    assert [(c.label0, c.start, c.end, c.confidence, c.line) for c in clips] == [
        (4, 12, 69, 1, 1), (1, 108, 152, 2, 3)]
    for text, line, words in [("5,12,69\n", 1, "4 comma"), ("1,2,3,4\n5,x,9,1\n", 2, "integer"),
                              ("3,50,40,1\n", 1, "range"), ("0,1,9,1\n", 1, "1-based")]:
        labels.write_text(text)
        with pytest.raises(RawFormatError, match=words) as info:
            parse_pku_labels(labels)
        assert info.value.line == line
    split = tmp_path / "cross_subject_v2.txt"
    split.write_text("Training videos:\r\nA02N02-L, A02N02-M,A02N02-R\r\nValidataion videos:\r\n"
                     "A01N01-L\r\n")
    assert parse_pku_split(split) == ["A02N02-L", "A02N02-M", "A02N02-R"]
    split.write_text("Validation videos:\nA01N01-L\n")
    with pytest.raises(RawFormatError, match="Training videos"):
        parse_pku_split(split)


# --- kernels against numpy transcriptions of the reference steps ---

def numpy_select(slots: np.ndarray, keep: int) -> np.ndarray:
    energies = []
    for body in slots.astype(np.float64):
        present = body[body.sum(-1).sum(-1) != 0]
        energies.append(sum(present[:, :, c].std() for c in range(3)) if len(present) else 0)
    order = np.argsort(np.array(energies), kind="stable")[::-1][:keep]
    return slots[order]


def test_select_bodies_matches_energy_order(rng):
    slots = np.zeros((4, 30, V, 3), dtype=np.float32)
    slots[0, :20] = rng.normal(scale=0.1, size=(20, V, 3))
    slots[1, 5:] = rng.normal(scale=0.5, size=(25, V, 3))
    slots[2, 3:4] = rng.normal(size=(1, V, 3))  # one frame still has a spread over joints
    slots[3, :] = rng.normal(scale=0.3, size=(30, V, 3))
    ours, non_empty = select_bodies(slots, 2)
    np.testing.assert_array_equal(ours, numpy_select(slots, 2))
    assert non_empty == 2
    lonely = np.zeros_like(slots)
    lonely[2, 3] = 0.5  # one frame, every joint at one point: energy 0 like the empty slots
    ours, non_empty = select_bodies(lonely, 2)
    np.testing.assert_array_equal(ours, numpy_select(lonely, 2))
    # Equal energies: the later slot first, like argsort()[::-1]: slot 3 (empty), then slot 2.
    assert not ours[0].any() and ours[1, 3].all() and non_empty == 1
    assert select_bodies(np.zeros((4, 3, V, 3), np.float32), 2)[1] == 0


def test_cmd_padding_quirks(rng):
    x = np.zeros((2, 8, V, 3), dtype=np.float32)
    x[0] = rng.normal(size=(1, V, 3))  # a still body 0: centring and rotation are the same
    x[1, 2:5] = rng.normal(size=(3, V, 3))  # first frame empty: frames 2..4 move to the front
    out = cmd_normalize(x, NTU25)
    # Undo nothing: check the structure the reference produces. Body 1 is periodic with
    # period 3 (its three frames repeated), and every joint of it is non-zero.
    np.testing.assert_allclose(out[1, 3:6], out[1, 0:3], atol=1e-6)
    np.testing.assert_allclose(out[1, 6:8], out[1, 0:2], atol=1e-6)
    assert np.all(np.abs(out[1]).sum(-1) > 0)
    # Body 0's first frame: centre joint at the origin, the shoulders along +x (the last
    # rotation), lengths kept by the rotations.
    np.testing.assert_allclose(out[0, 0, NTU25.center_joint], 0, atol=1e-6)
    left, right = NTU25.x_axis
    shoulders = out[0, 0, right] - out[0, 0, left]
    assert shoulders[0] > 0 and np.abs(shoulders[1:]).max() < 1e-5
    bottom, top = NTU25.z_axis
    np.testing.assert_allclose(np.linalg.norm(out[0, 0, top] - out[0, 0, bottom]),
                               np.linalg.norm(x[0, 0, top] - x[0, 0, bottom]), rtol=1e-5)
    assert not cmd_normalize(np.zeros_like(x), NTU25).any()


def test_ikem_fixed_degenerate_inputs(rng):
    x = np.zeros((2, 10, V, 3), dtype=np.float32)
    assert not ikem_fixed(x, NTU25, 50).any()  # no frame with body 0: zeros, not a crash
    x[0, 0] = rng.normal(size=(V, 3))
    out = ikem_fixed(x, NTU25, 50)  # one frame resized to 50: all frames equal
    assert out.shape == (2, 50, V, 3)
    np.testing.assert_allclose(out[0], np.broadcast_to(out[0, :1], out[0].shape), atol=1e-6)


def test_prepare_bodies_shapes_and_gamma(rng):
    bodies = np.zeros((2, 75, V, 3), dtype=np.float32)
    bodies[0] = rng.normal(size=(75, V, 3))
    sample = prepare_bodies(bodies, NTU25, frames=50)
    assert sample.raw.shape == (75, 3, V, 2) and sample.raw.dtype == np.float32
    assert sample.num_frames == 75 and sample.num_bodies == 1 and sample.gamma == 1.5
    assert set(sample.fixed) == {"joint", "motion", "bone", "acceleration", "axis",
                                 "angular_velocity"}
    for name, array in sample.fixed.items():
        assert array.shape == (3, 50, V, 2) and array.dtype == np.float32, name
        assert array.flags.c_contiguous
    assert not sample.fixed["motion"][:, -1].any()
    assert not sample.fixed["acceleration"][:, -2:].any()
    assert not sample.fixed["angular_velocity"][:, -1].any()
    # motion = (x_{t+1} - x_t) / gamma
    joint = sample.fixed["joint"]
    np.testing.assert_allclose(sample.fixed["motion"][:, :-1], (joint[:, 1:] - joint[:, :-1]) / 1.5,
                               atol=1e-5)
