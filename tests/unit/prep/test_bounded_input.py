"""Memory is set by a raw file's size, never by what its header claims: a lying frame count or
``.npy`` shape is a per-file error (file, line, reason) and the build goes on; a file above
``--max-file-mb`` (a sparse multi-GB one too) is skipped with a reason, unread."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.prep.errors import RawFormatError
from skelkit.prep.formats import NTU60
from skelkit.prep.formats.ntu import prepare_ntu_task
from skelkit.prep.kernels.parse_ntu import parse_ntu_bytes
from skelkit.prep.limits import DEFAULT_MAX_FILE_MB, max_file_bytes
from skelkit.prep.tasks import FileTask, SampleSpec
from skelkit.store import KINECT20, NTU25
from tests.unit.prep.test_parse import ntu_text

LYING_FRAMES = 1_000_000


def lying_skeleton(path: Path, frames: int = 700) -> Path:
    """About 2 MB of genuine frames under a first line promising a million."""
    rng = np.random.default_rng(0)
    body = [[rng.normal(size=(NTU25.num_joints, 3))] for _ in range(frames)]
    text = ntu_text(body).split("\r\n", 1)[1]
    path.write_bytes(f"{LYING_FRAMES}\r\n{text}".encode())
    return path


def test_a_lying_frame_count_is_refused_naming_line_1(tmp_path: Path) -> None:
    data = lying_skeleton(tmp_path / "x.skeleton").read_bytes()
    assert 1.5e6 < len(data) < 3e6
    with pytest.raises(RawFormatError) as err:
        parse_ntu_bytes(data, NTU25.num_joints)
    assert err.value.line == 1
    assert err.value.reason.startswith(f"the header promises {LYING_FRAMES} frames but the file "
                                       f"({len(data)} bytes) has only {700 * 28} lines after it")
    # An honest header of the same frames still parses.
    honest = data.replace(str(LYING_FRAMES).encode(), b"700", 1)
    assert parse_ntu_bytes(honest, NTU25.num_joints).num_frames == 700


def test_a_lying_header_costs_its_file_and_the_build_goes_on(tmp_path: Path) -> None:
    path = lying_skeleton(tmp_path / "S001C001P001R001A001.skeleton", frames=20)
    spec = SampleSpec(name="S001C001P001R001A001", label=0, subject=1, camera=1, setup=1,
                      replication=1)
    out: list = []
    skipped: list = []
    prepare_ntu_task(FileTask(str(path), (spec,), path.stat().st_size), NTU25, 50, out,
                     skipped)
    assert out == [] and len(skipped) == 1
    skip = skipped[0]
    assert (skip.name, skip.file, skip.line) == (spec.name, str(path), 1), skip
    assert "the header promises 1000000 frames" in skip.reason


PEAK = """
import resource, sys
from skelkit.prep.formats.ntu import prepare_ntu_task
from skelkit.prep.tasks import FileTask, SampleSpec
from skelkit.store import NTU25
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
spec = SampleSpec(name="S001C001P001R001A001", label=0, subject=1, camera=1, setup=1,
                  replication=1)
skipped = []
prepare_ntu_task(FileTask(sys.argv[1], (spec,), 0), NTU25, 50, [], skipped)
assert len(skipped) == 1, skipped
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def empty_frames(path: Path, frames: int = LYING_FRAMES) -> Path:
    """A 2 MB file whose header is true: a million frames without a body ("0" lines)."""
    path.write_bytes(f"{frames}\n".encode() + b"0\n" * frames)
    return path


def test_a_million_empty_frames_are_refused_before_allocating(tmp_path: Path) -> None:
    data = empty_frames(tmp_path / "x.skeleton").read_bytes()
    with pytest.raises(RawFormatError) as err:
        parse_ntu_bytes(data, NTU25.num_joints)
    assert err.value.line == 1
    assert err.value.reason == ("the header's 1000000 frames would take 1200 MB in memory, "
                                "more than a 2.0 MB file may (128 MB): frames without bodies, "
                                "not a recording")
    # A genuine empty recording (a few hundred such frames) still parses.
    assert parse_ntu_bytes(b"300\n" + b"0\n" * 300, NTU25.num_joints).num_frames == 300


@pytest.mark.parametrize("make", [lying_skeleton, empty_frames])
def test_peak_memory_is_set_by_the_file_size_not_its_header(tmp_path: Path, make) -> None:
    """Before the bound the 2 MB file of empty frames peaked 1.8 GB above the interpreter
    (measured: 106 MB -> 1915 MB, 4 slots x 1e6 frames x 25 joints x 3 floats, then touched by
    the body selection); now reading either file adds about its own size."""
    path = make(tmp_path / "S001C001P001R001A001.skeleton")
    done = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before_kb, after_kb = (int(v) for v in done.stdout.split())
    assert (after_kb - before_kb) * 1024 < 100e6, (before_kb, after_kb)  # generous: 50x the file


# --- files above --max-file-mb --------------------------------------------------------------

def test_default_limit_and_its_conversion() -> None:
    assert max_file_bytes(DEFAULT_MAX_FILE_MB) == 256_000_000
    assert max_file_bytes(0) is None and max_file_bytes(None) is None
    assert max_file_bytes(1.5) == 1_500_000


def test_a_sparse_2gb_file_is_skipped_unread(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    small = raw / "S001C001P001R001A001.skeleton"
    small.write_text(ntu_text([[np.ones((NTU25.num_joints, 3))]]))
    big = raw / "S001C001P002R001A001.skeleton"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: 2 GiB on paper, nothing on disk
    disc = NTU60.discover(raw, None, max_file_bytes=max_file_bytes(DEFAULT_MAX_FILE_MB))
    assert [t.file for t in disc.tasks] == [str(small)]
    (skip,) = [s for s in disc.skipped if s.kind == "too_large"]
    assert (skip.name, skip.file, skip.line) == (big.stem, str(big), None)
    assert skip.reason == "file is 2147.5 MB, above --max-file-mb 256: not read"
    # Without a limit it would be a task (and read whole by its worker).
    assert len(NTU60.discover(raw, None).tasks) == 2


def _generic(raw: Path, arrays: dict[str, np.ndarray | bytes]) -> Path:
    lines = ["name,file,label,subject,split_xsub"]
    for i, (name, array) in enumerate(arrays.items()):
        if isinstance(array, bytes):
            (raw / f"{name}.npy").write_bytes(array)
        else:
            np.save(raw / f"{name}.npy", array, allow_pickle=False)
        lines.append(f"{name},{name}.npy,{i % 2},{i},{'train' if i % 2 else 'test'}")
    manifest = raw / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _npy_claiming(shape: tuple[int, ...], data: bytes) -> bytes:
    """A .npy whose header says ``shape`` (float32) followed by ``data``."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue() + data  # the header writer puts the magic first


def test_generic_build_skips_a_lying_npy_header_and_an_oversize_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(1)
    v = KINECT20.num_joints
    good = {f"g{i}": (rng.normal(size=(30, v, 3)) + np.array([0, 0, 3])).astype(np.float32)
            for i in range(4)}
    lying = _npy_claiming((10**9, v, 3), np.zeros((5, v, 3), np.float32).tobytes())
    big = (rng.normal(size=(3000, v, 3)) + np.array([0, 0, 3])).astype(np.float32)  # 0.9 MB
    manifest = _generic(raw, {**good, "lying": lying, "big": big})
    report = build_store(BuildOptions(dataset="generic", raw=raw, out=tmp_path / "s.zarr",
                                      workers=1, progress=False, manifest=manifest,
                                      layout="kinect20", max_file_mb=0.5))
    assert report["samples_written"] == 4
    skips = {s["name"]: s for s in report["skipped"]}
    assert set(skips) == {"lying", "big"}
    assert skips["lying"]["line"] == 6 and skips["lying"]["file"] == str(manifest)
    assert ("its header promises (1000000000, 20, 3) float32 (240000000000 bytes of data) but "
            "the file holds 1200") in skips["lying"]["reason"]
    assert skips["big"]["kind"] == "too_large" and "above --max-file-mb 0.5" in skips["big"][
        "reason"]
