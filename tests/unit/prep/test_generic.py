"""`--dataset generic`: the manifest, per-row skips, whole-manifest errors and normalisations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.prep.cli import main
from skelkit.prep.errors import DatasetError, ManifestError
from skelkit.prep.formats.generic import Normalisation, parse_normalisation, read_manifest
from skelkit.store import KINECT20, NTU25
from skelkit.store.reader import open_store

V = KINECT20.num_joints


def _walker(frames: int, seed: int, people: int | None = None) -> np.ndarray:
    """A person standing at a random place and drifting: distinct, non-degenerate joints."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, (V, 3)) + np.array([0.0, 0.0, 3.0])
    drift = np.linspace(0, 1, frames)[:, None, None] * rng.normal(0, 0.2, (1, 1, 3))
    x = (base[None] + drift + rng.normal(0, 0.01, (frames, V, 3))).astype(np.float32)
    if people is None:
        return x
    return np.stack([x + k for k in range(people)], axis=1)  # (T, M, V, 3)


def _dataset(root: Path, rows: list[tuple[str, np.ndarray | None, str]],
             header: str = "name,file,label,subject,split_xsub") -> Path:
    """Writes samples and a manifest; a row is (name, array or None for no file, rest of row)."""
    lines = [header]
    for name, array, rest in rows:
        if array is not None:
            np.save(root / f"{name}.npy", array, allow_pickle=False)
        lines.append(f"{name},{name}.npy,{rest}")
    manifest = root / "samples.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def _build(raw: Path, out: Path, manifest: Path, normalise: str = "layout",
           layout: str = "kinect20", frames: int = 50) -> dict:
    return build_store(BuildOptions(dataset="generic", raw=raw, out=out, frames=frames,
                                    workers=1, progress=False, manifest=manifest,
                                    layout=layout, normalise=normalise))


def test_build_keeps_labels_ids_splits_and_layout(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    manifest = _dataset(raw, [
        ("a", _walker(30, 0), "3,1,train"),
        ("b", _walker(41, 1, people=2), "0,2,test"),
        ("c", _walker(12, 2, people=3), "5,,train"),
    ])
    report = _build(raw, tmp_path / "s.zarr", manifest)
    assert report["samples_written"] == 3
    store = open_store(tmp_path / "s.zarr")
    assert store.dataset == "generic" and store.layout.name == "kinect20"
    assert store.protocols == ("xsub",)
    assert list(store.samples["name"]) == ["a", "b", "c"]
    assert list(store.samples["label"]) == [3, 0, 5]
    assert list(store.samples["subject"]) == [1, 2, -1]
    assert list(store.samples["num_frames"]) == [30, 41, 12]
    assert list(store.samples["num_bodies"]) == [1, 2, 2]
    assert list(store.split("xsub")) == [0, 1, 0]
    assert store.fixed("joint").shape == (3, 3, 50, V, 2)
    assert "kinect20" in store.group.attrs["normalisation"]["raw"]


def test_center_and_none_normalisations_match_numpy(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    x = _walker(50, 3)  # T == frames: the linear resize is the identity
    x[7, 5] = 0.0  # an untracked joint stays zero when centred
    manifest = _dataset(raw, [("a", x, "0,1,train")])
    _build(raw, tmp_path / "none.zarr", manifest, normalise="none")
    _build(raw, tmp_path / "ctr.zarr", manifest, normalise="center:head")
    none, ctr = open_store(tmp_path / "none.zarr"), open_store(tmp_path / "ctr.zarr")
    raw_none = np.asarray(none.group["raw/joint"][:])  # (T, 3, V, M)
    np.testing.assert_array_equal(raw_none[..., 0].transpose(0, 2, 1), x)
    assert not raw_none[..., 1].any()
    expected = np.where(np.any(x != 0, axis=-1, keepdims=True), x - x[:, 0:1], 0)
    raw_ctr = np.asarray(ctr.group["raw/joint"][:])[..., 0].transpose(0, 2, 1)
    np.testing.assert_allclose(raw_ctr, expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ctr.fixed("joint")[0])[..., 0].transpose(1, 2, 0),
                               expected, atol=1e-6)
    # Bones follow the kinect20 tree: bone v = joint v - joint parent(v), root replaced.
    bone = np.asarray(none.fixed("bone")[0])[..., 0].transpose(1, 2, 0)  # (F, V, 3)
    parents = np.array(KINECT20.parents)
    for v in range(V):
        if v != KINECT20.torso_normal.joint:
            np.testing.assert_allclose(bone[:, v], x[:, v] - x[:, parents[v]], atol=1e-5)
    assert "none" in none.group.attrs["normalisation"]["raw"]


def test_resize_of_a_short_sample_is_linear(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    t = np.arange(10, dtype=np.float32)
    x = np.ones((10, V, 3), np.float32) + t[:, None, None]  # every coordinate = 1 + frame
    _build(raw, tmp_path / "s.zarr", _dataset(raw, [("a", x, "0,1,train")]), normalise="none",
           frames=20)
    fixed = np.asarray(open_store(tmp_path / "s.zarr").fixed("joint")[0])[0, :, 3, 0]
    centres = np.clip((np.arange(20) + 0.5) * 0.5 - 0.5, 0, 9)  # half-frame centres
    np.testing.assert_allclose(fixed, 1 + centres, atol=1e-6)


def test_bad_rows_are_skips_naming_manifest_and_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    nan = _walker(20, 4)
    nan[3, 2, 1] = np.nan
    manifest = _dataset(raw, [
        ("good", _walker(20, 5), "1,1,train"),           # line 2
        ("nofile", None, "1,1,train"),                    # line 3
        ("badlabel", _walker(20, 6), "one,1,train"),      # line 4
        ("badshape", np.zeros((20, 25, 3)), "1,1,test"),  # line 5
        ("badsplit", _walker(20, 7), "1,1,val"),          # line 6
        ("good", _walker(20, 8), "1,1,test"),             # line 7: duplicate name
        ("short", _walker(20, 9), "1"),                   # line 8: too few fields
        ("nan", nan, "2,3,test"),                         # line 9: fails in the worker
        ("good2", _walker(20, 10), "2,3,test"),           # line 10
    ])
    disc = read_manifest(manifest, raw, KINECT20)
    assert [t.samples[0].name for t in disc.tasks] == ["good", "nan", "good2"]
    skips = {s.line: s for s in disc.skipped}
    assert sorted(skips) == [3, 4, 5, 6, 7, 8]
    assert all(s.file == str(manifest) for s in disc.skipped)
    assert skips[3].kind == "missing_file" and "does not exist" in skips[3].reason
    assert skips[4].kind == "bad_label" and "'one' is not an integer" in skips[4].reason
    assert skips[5].kind == "bad_shape" and "(20, 25, 3)" in skips[5].reason
    assert skips[6].kind == "bad_split"
    assert skips[7].kind == "duplicate_name" and "line 2" in skips[7].reason
    assert skips[8].kind == "bad_row"

    report = _build(raw, tmp_path / "s.zarr", manifest)
    assert report["samples_written"] == 2
    nan_skip = [s for s in report["skipped"] if s["name"] == "nan"]
    assert len(nan_skip) == 1 and nan_skip[0]["kind"] == "non_finite"
    assert nan_skip[0]["file"] == str(manifest) and nan_skip[0]["line"] == 9
    assert "frame 3" in nan_skip[0]["reason"]
    assert report["samples_skipped"] == 7
    store = open_store(tmp_path / "s.zarr")
    assert list(store.samples["name"]) == ["good", "good2"]
    assert list(store.split("xsub")) == [0, 1]


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    obj = np.empty(2, dtype=object)
    obj[:] = [1, 2]
    np.save(raw / "obj.npy", obj, allow_pickle=True)
    (raw / "text.npy").write_text("not numpy")
    np.save(raw / "ok.npy", _walker(5, 11))
    manifest = raw / "manifest.csv"
    manifest.write_text("name,file,label\nobj,obj.npy,0\ntext,text.npy,0\nok,ok.npy,0\n")
    disc = read_manifest(manifest, raw, KINECT20)
    assert [s.kind for s in disc.skipped] == ["bad_file", "bad_file"]
    assert [t.samples[0].name for t in disc.tasks] == ["ok"]
    assert disc.split_lists == {}


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("", "empty manifest"),
    ("name,file,labl\n", "unknown column 'labl'"),
    ("name,file\n", "missing column 'label'"),
    ("name,file,label,label\n", "duplicated column 'label'"),
    ("name,file,label,split_\n", "bad split column"),
    ("name,file,label\n", "no sample rows"),
    ("name,file,label\na,absent.npy,0\n", "no usable row"),
])
def test_unusable_manifest_is_one_line_exit_2(tmp_path: Path, content: str | None,
                                              message: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    manifest = raw / "m.csv"
    if content is not None:
        manifest.write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(manifest, raw, KINECT20)
    result = CliRunner().invoke(main, ["build", "--dataset", "generic", "--raw", str(raw),
                                       "--manifest", str(manifest), "--layout", "kinect20",
                                       "--out", str(tmp_path / "s.zarr")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(manifest) in lines[0]
    assert not (tmp_path / "s.zarr").exists()


def test_generic_needs_a_known_layout(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    manifest = _dataset(raw, [("a", _walker(5, 0), "0,1,train")])
    for extra, message in ((["--layout", "kinect21"], "unknown layout"), ([], "needs --layout")):
        result = CliRunner().invoke(main, ["build", "--dataset", "generic", "--raw", str(raw),
                                           "--manifest", str(manifest), "--out",
                                           str(tmp_path / "s.zarr"), *extra])
        assert result.exit_code == 2 and message in result.output
    result = CliRunner().invoke(main, ["build", "--dataset", "ntu60", "--raw", str(raw),
                                       "--layout", "kinect20", "--out", str(tmp_path / "n.zarr")])
    assert result.exit_code == 2 and "generic only" in result.output


def test_layout_from_a_json_file_reaches_the_store(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    attrs = NTU25.to_attrs() | {"name": "my25"}
    (tmp_path / "my25.json").write_text(json.dumps(attrs))
    x = np.random.default_rng(0).normal(0, 1, (9, 2, 25, 3)).astype(np.float32)
    manifest = _dataset(raw, [("a", x, "0,1,test")])
    _build(raw, tmp_path / "s.zarr", manifest, layout=str(tmp_path / "my25.json"))
    store = open_store(tmp_path / "s.zarr")
    assert store.layout.name == "my25" and store.layout.num_joints == 25
    assert store.fixed("joint").shape == (1, 3, 50, 25, 2)


def test_parse_normalisation() -> None:
    assert parse_normalisation("layout", KINECT20) == Normalisation("layout")
    assert parse_normalisation("none", KINECT20) == Normalisation("none")
    assert parse_normalisation("center", KINECT20) == Normalisation("center", 2)
    assert parse_normalisation("center:r_hip", KINECT20) == Normalisation("center", 16)
    assert parse_normalisation("center:3", KINECT20) == Normalisation("center", 3)
    for bad in ("centre", "center:20", "center:nose", "none:1"):
        with pytest.raises(DatasetError):
            parse_normalisation(bad, KINECT20)
