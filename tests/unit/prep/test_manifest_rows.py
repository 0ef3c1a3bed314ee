"""Manifest rows of `--dataset generic` that must cost one row, never the build: integers past
what the store holds, files outside --raw, folders, devices and FIFOs; and no reason ever quotes
what a named file holds."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.prep.cli import main
from skelkit.prep.formats.generic import read_manifest
from skelkit.store import KINECT20
from skelkit.store.reader import open_store

V = KINECT20.num_joints
SECRET = "root:x:0:0:SECRET-CONTENT"


def walker(seed: int, frames: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 0.3, (V, 3))[None] + rng.normal(0, 0.01, (frames, V, 3))
            ).astype(np.float32)


def manifest(raw: Path, rows: list[str]) -> Path:
    path = raw / "manifest.csv"
    path.write_text("\n".join(["name,file,label,subject,camera,split_xsub", *rows]) + "\n")
    return path


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "raw"
    folder.mkdir()
    for i in range(4):
        np.save(folder / f"ok{i}.npy", walker(i), allow_pickle=False)
    return folder


def build(raw: Path, out: Path, *extra: str):
    return CliRunner().invoke(main, ["build", "--dataset", "generic", "--raw", str(raw),
                                     "--out", str(out), "--layout", "kinect20", "--workers",
                                     "1", *extra], catch_exceptions=False)


def test_integers_past_the_store_columns_are_skipped_not_fatal(raw: Path, tmp_path: Path) -> None:
    rows = [
        "good0,ok0.npy,0,1,1,train",
        f"biglabel,ok1.npy,{2 ** 63},1,1,train",          # int64 overflow
        f"bigsubject,ok1.npy,1,{2 ** 32},1,train",        # int32 overflow
        f"bigcamera,ok1.npy,1,1,{-2 ** 40},test",
        f"hugelabel,ok1.npy,{'9' * 5000},1,1,test",        # a 5000-digit number
        f"maxlabel,ok2.npy,{2 ** 63 - 1},2,1,train",       # the largest int64 is fine
        "good3,ok3.npy,1,2,1,test",
    ]
    disc = read_manifest(manifest(raw, rows), raw, KINECT20)
    assert [t.samples[0].name for t in disc.tasks] == ["good0", "maxlabel", "good3"]
    kinds = {s.name: (s.kind, s.line) for s in disc.skipped}
    assert kinds == {"biglabel": ("bad_label", 3), "bigsubject": ("bad_subject", 4),
                     "bigcamera": ("bad_camera", 5), "hugelabel": ("bad_label", 6)}
    huge = next(s for s in disc.skipped if s.name == "hugelabel")
    assert len(huge.reason) < 200  # a 5000-digit cell is not echoed whole

    outcome = build(raw, tmp_path / "s.zarr")
    assert outcome.exit_code == 0, outcome.output
    store = open_store(tmp_path / "s.zarr")
    assert list(store.samples["name"]) == ["good0", "maxlabel", "good3"]
    assert int(store.samples["label"].iloc[1]) == 2 ** 63 - 1
    assert store.report["samples_skipped"] == 4


def test_paths_outside_raw_are_skipped_unless_allowed(raw: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    np.save(outside / "far.npy", walker(9), allow_pickle=False)
    (raw / "link.npy").symlink_to(outside / "far.npy")
    rows = [
        "good0,ok0.npy,0,1,1,train",
        "dotdot,../elsewhere/far.npy,1,1,1,train",
        f"absolute,{outside / 'far.npy'},1,2,1,test",
        "link,link.npy,1,2,1,test",                       # a link leading out
        f"inside,{raw / 'ok1.npy'},1,2,1,test",           # absolute but inside: fine
    ]
    m = manifest(raw, rows)
    disc = read_manifest(m, raw, KINECT20)
    assert [t.samples[0].name for t in disc.tasks] == ["good0", "inside"]
    assert {s.name: s.kind for s in disc.skipped} == {
        "dotdot": "outside_raw", "absolute": "outside_raw", "link": "outside_raw"}
    assert all("--allow-outside-raw" in s.reason for s in disc.skipped)

    outcome = build(raw, tmp_path / "s.zarr")
    assert outcome.exit_code == 0, outcome.output
    assert len(open_store(tmp_path / "s.zarr")) == 2
    outcome = build(raw, tmp_path / "t.zarr", "--allow-outside-raw")
    assert outcome.exit_code == 0, outcome.output
    assert list(open_store(tmp_path / "t.zarr").samples["name"]) == [
        "good0", "dotdot", "absolute", "link", "inside"]


def test_folders_devices_and_fifos_are_skipped_without_reading_them(raw: Path,
                                                                    tmp_path: Path) -> None:
    (raw / "folder.npy").mkdir()
    os.mkfifo(raw / "pipe.npy")  # opening it would block the build for ever
    rows = [
        "good0,ok0.npy,0,1,1,train",
        "folder,folder.npy,1,1,1,train",
        "pipe,pipe.npy,1,1,1,train",
        "device,/dev/zero,1,1,1,test",
        "good1,ok1.npy,1,2,1,test",
    ]
    disc = read_manifest(manifest(raw, rows), raw, KINECT20, allow_outside_raw=True)
    assert [t.samples[0].name for t in disc.tasks] == ["good0", "good1"]
    reasons = {s.name: (s.kind, s.reason) for s in disc.skipped}
    assert reasons["folder"][0] == "bad_file" and "is a folder" in reasons["folder"][1]
    assert "not a regular file" in reasons["pipe"][1]
    assert "not a regular file" in reasons["device"][1]


def test_reasons_never_quote_what_a_named_file_holds(raw: Path, tmp_path: Path) -> None:
    (raw / "passwd.npy").write_text(SECRET + "\n")
    secret_outside = tmp_path / "passwd"
    secret_outside.write_text(SECRET + "\n")
    garbage = raw / "header.npy"
    garbage.write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': '" + SECRET.encode() + b"'}   \n")
    rows = [
        "good0,ok0.npy,0,1,1,train",
        "text,passwd.npy,1,1,1,train",
        f"outside,{secret_outside},1,1,1,train",
        "header,header.npy,1,1,1,test",
        "good1,ok1.npy,1,2,1,test",
    ]
    m = manifest(raw, rows)
    for allow in (False, True):
        disc = read_manifest(m, raw, KINECT20, allow_outside_raw=allow)
        assert len(disc.skipped) == 3
        for skip in disc.skipped:
            assert "SECRET" not in skip.reason and "root:" not in skip.reason, skip.reason
    outcome = build(raw, tmp_path / "s.zarr", "--allow-outside-raw")
    assert outcome.exit_code == 0, outcome.output
    assert "SECRET" not in outcome.output and "root:" not in outcome.output
    info = CliRunner().invoke(main, ["info", str(tmp_path / "s.zarr"), "--json"])
    assert info.exit_code == 0 and "SECRET" not in info.output
