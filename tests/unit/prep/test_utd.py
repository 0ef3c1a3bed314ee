"""`--dataset utd-mhad`: .mat reading, names, the xsub protocol, kinect20 stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import zarr
from click.testing import CliRunner

from skelkit.prep.builder.batch import BATCH_SIZE_ENV
from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.prep.cli import main
from skelkit.prep.errors import BuildError, DatasetError
from skelkit.prep.formats import get_dataset
from skelkit.prep.formats.utd import parse_utd_name, read_utd_skeleton
from skelkit.store import KINECT20
from skelkit.store.reader import open_store

UTD_REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "utd-mhad"


def _person(frames: int, seed: int) -> np.ndarray:
    """(20, 3, T) like d_skel: a Kinect v1 skeleton standing 3 m away, swaying, y up."""
    rng = np.random.default_rng(seed)
    pose = np.array([
        [0, 0.5, 0], [0, 0.3, 0], [0, 0, 0], [0, -0.1, 0],             # head .. hip_center
        [-0.2, 0.25, 0], [-0.3, 0, 0], [-0.3, -0.25, 0], [-0.3, -0.3, 0],
        [0.2, 0.25, 0], [0.3, 0, 0], [0.3, -0.25, 0], [0.3, -0.3, 0],
        [-0.1, -0.15, 0], [-0.1, -0.6, 0], [-0.1, -1.0, 0], [-0.1, -1.05, 0.1],
        [0.1, -0.15, 0], [0.1, -0.6, 0], [0.1, -1.0, 0], [0.1, -1.05, 0.1],
    ]) + np.array([0.1, 0.0, 3.0])
    sway = 0.05 * np.sin(np.linspace(0, 3, frames))[:, None, None] * np.array([1.0, 0, 0.5])
    x = pose[None] + sway + rng.normal(0, 0.005, (frames, 20, 3))  # (T, 20, 3)
    return np.ascontiguousarray(x.transpose(1, 2, 0))


def _write(folder: Path, name: str, d_skel: np.ndarray) -> None:
    scipy.io.savemat(folder / name, {"d_skel": d_skel})


def _build(raw: Path, out: Path) -> dict:
    return build_store(BuildOptions(dataset="utd-mhad", raw=raw, out=out, workers=1,
                                    progress=False))


def test_read_utd_skeleton_is_frames_joints_xyz(tmp_path: Path) -> None:
    d = _person(7, 0)
    _write(tmp_path, "a1_s1_t1_skeleton.mat", d)
    x = read_utd_skeleton(tmp_path / "a1_s1_t1_skeleton.mat")
    assert x.shape == (7, 20, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[4, 9], d[9, :, 4], rtol=1e-6)


def test_parse_utd_name() -> None:
    assert parse_utd_name("a27_s8_t4_skeleton.mat") == (27, 8, 4)
    for bad in ("a28_s1_t1_skeleton.mat", "a1_s9_t1_skeleton.mat", "a1_s1_skeleton.mat"):
        with pytest.raises(ValueError):
            parse_utd_name(bad)


def test_build_tiny_utd_store(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    lengths = {"a1_s1_t1": 41, "a1_s2_t1": 50, "a5_s3_t2": 60, "a27_s8_t1": 45}
    for k, (stem, frames) in enumerate(lengths.items()):
        _write(raw, f"{stem}_skeleton.mat", _person(frames, k))
    _write(raw, "a2_s1_t1_skeleton.mat", np.zeros((25, 3, 10)))  # wrong joint count
    _write(raw, "a40_s1_t1_skeleton.mat", _person(10, 9))        # no such action
    scipy.io.savemat(raw / "a3_s1_t1_skeleton.mat", {"other": np.zeros(3)})
    report = _build(raw, tmp_path / "utd.zarr")
    assert report["samples_written"] == 4
    assert report["skipped_by_reason"] == {"bad_name": 1, "joint_count": 1, "raw_format": 1}

    store = open_store(tmp_path / "utd.zarr")
    assert store.dataset == "utd-mhad" and store.layout.name == "kinect20"
    assert store.group.attrs["layout"]["joints"] == list(KINECT20.joint_names)
    assert store.protocols == ("xsub",)
    # Clean names: the file stem without "_skeleton" (issue 17, item 10).
    assert list(store.samples["name"]) == sorted(lengths)
    by_name = store.samples.set_index("name")
    assert by_name.loc["a27_s8_t1", "label"] == 26
    assert by_name.loc["a5_s3_t2", "replication"] == 2
    assert list(store.samples["num_bodies"]) == [1, 1, 1, 1]
    np.testing.assert_array_equal(store.samples["num_frames"],
                                  [lengths[s] for s in sorted(lengths)])
    # xsub: odd subjects train (0), even subjects test (1).
    np.testing.assert_array_equal(store.split("xsub"), store.samples["subject"] % 2 == 0)
    assert store.fixed("joint").shape == (4, 3, 50, 20, 2)
    assert not np.asarray(store.fixed("joint")[:, ..., 1]).any()  # body 1 is zeros

    # The layout's CMD normalisation: spine at the origin in every frame; in the first frame
    # the shoulders (l_shoulder -> r_shoulder) point along +x.
    joints = np.asarray(store.group["raw/joint"][:])[..., 0]  # (frames, 3, 20)
    offsets = np.asarray(store.group["raw/offsets"][:])
    np.testing.assert_allclose(joints[:, :, 2], 0, atol=1e-6)
    for start in offsets[:-1]:
        shoulders = joints[start, :, 8] - joints[start, :, 4]
        assert shoulders[0] > 0.3 and np.abs(shoulders[1:]).max() < 1e-5


def _raw_folder(tmp_path: Path, stems: list[str]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for k, stem in enumerate(stems):
        _write(raw, f"{stem}_skeleton.mat", _person(30 + k, k))
    return raw


def test_utd_build_then_info_end_to_end(tmp_path: Path) -> None:
    raw = _raw_folder(tmp_path, ["a1_s1_t1", "a1_s2_t1", "a2_s3_t1", "a2_s4_t2", "a3_s5_t1"])
    missing = tmp_path / "missing.txt"
    missing.write_text("a3_s5_t1_skeleton\n")  # a list naming the file stem still applies
    out = tmp_path / "utd.zarr"
    built = CliRunner().invoke(main, ["build", "--dataset", "utd-mhad", "--raw", str(raw),
                                      "--out", str(out), "--workers", "1",
                                      "--missing", str(missing)])
    assert built.exit_code == 0, built.output
    info = CliRunner().invoke(main, ["info", "--json", str(out)])
    assert info.exit_code == 0, info.output
    store = open_store(out)
    assert list(store.samples["name"]) == ["a1_s1_t1", "a1_s2_t1", "a2_s3_t1", "a2_s4_t2"]
    assert store.report["skipped"][0]["name"] == "a3_s5_t1"
    assert list(store.split("xsub")) == [0, 1, 0, 1]  # odd subjects train
    assert json.loads(info.stdout)["dataset"] == "utd-mhad"
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def test_resume_refuses_a_store_started_with_the_old_utd_names(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """A store begun by a skelkit that named samples a1_s1_t1_skeleton must not be finished
    with a1_s1_t1 names: the resume stops with one line; --overwrite rebuilds it."""
    raw = _raw_folder(tmp_path, ["a1_s1_t1", "a1_s2_t1", "a2_s3_t1", "a2_s4_t2"])
    monkeypatch.setenv(BATCH_SIZE_ENV, "1")
    out = tmp_path / "utd.zarr"

    def interrupt(files: int, total: int) -> None:
        if files == 2:
            raise KeyboardInterrupt
    with pytest.raises((BuildError, KeyboardInterrupt)):
        build_store(BuildOptions(dataset="utd-mhad", raw=raw, out=out, workers=1,
                                 progress=False, on_files=interrupt))
    group = zarr.open_group(str(out), mode="r+")
    progress = dict(group.attrs["progress"])
    assert progress["sample_names"] == "a<action>_s<subject>_t<trial>"
    del progress["sample_names"]  # what an older skelkit recorded
    group.attrs["progress"] = progress
    resumed = CliRunner().invoke(main, ["build", "--dataset", "utd-mhad", "--raw", str(raw),
                                        "--out", str(out), "--workers", "1", "--resume"])
    assert resumed.exit_code == 2 and "sample-name scheme" in resumed.stderr, resumed.output
    assert len(resumed.stderr.strip().splitlines()) == 1
    rebuilt = CliRunner().invoke(main, ["build", "--dataset", "utd-mhad", "--raw", str(raw),
                                        "--out", str(out), "--workers", "1", "--overwrite"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert list(open_store(out).samples["name"]) == ["a1_s1_t1", "a1_s2_t1", "a2_s3_t1",
                                                     "a2_s4_t2"]


def test_utd_folder_without_mat_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="no UTD-MHAD"):
        get_dataset("utd-mhad").discover(tmp_path)


@pytest.mark.realdata
def test_real_utd_mhad_files(tmp_path: Path) -> None:
    if not UTD_REAL.is_dir():
        pytest.skip(f"UTD-MHAD not found at {UTD_REAL}")
    disc = get_dataset("utd-mhad").discover(UTD_REAL)
    assert disc.num_samples == 861 and not disc.skipped
    subjects = {t.samples[0].subject for t in disc.tasks}
    labels = {t.samples[0].label for t in disc.tasks}
    assert subjects == set(range(1, 9)) and labels == set(range(27))
    # Build a few real files (linked, never copied) and compare with the .mat contents.
    raw = tmp_path / "raw"
    raw.mkdir()
    picks = ["a1_s1_t1", "a1_s2_t1", "a10_s1_t2", "a27_s8_t3"]
    for stem in picks:
        (raw / f"{stem}_skeleton.mat").symlink_to(UTD_REAL / f"{stem}_skeleton.mat")
    _build(raw, tmp_path / "utd.zarr")
    store = open_store(tmp_path / "utd.zarr")
    frames = [scipy.io.loadmat(UTD_REAL / f"{s}_skeleton.mat")["d_skel"].shape[2]
              for s in sorted(picks)]
    np.testing.assert_array_equal(store.samples["num_frames"], frames)
    assert store.layout.name == "kinect20"
    np.testing.assert_array_equal(store.split("xsub"), [0, 0, 1, 1])  # a10_s1, a1_s1, a1_s2, a27_s8
    joint = np.asarray(store.fixed("joint")[:])
    assert np.isfinite(joint).all() and np.abs(joint[..., 0]).max() > 0.1


@pytest.mark.slow
@pytest.mark.realdata
def test_utd_experiment_script_reduced(tmp_path: Path) -> None:
    """scripts/utd_experiment.sh end to end on 18 real files, 1 epoch each (SKELKIT_REDUCED=1)."""
    if not UTD_REAL.is_dir():
        pytest.skip(f"UTD-MHAD not found at {UTD_REAL}")
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in sorted(UTD_REAL.glob("a[1-9]_s[12]_t1_skeleton.mat")):
        (raw / f.name).symlink_to(f)
    env = os.environ | {"SKELKIT_REDUCED": "1", "PARALLEL": "0", "PYTHON": sys.executable,
                        "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(repo / "scripts" / "utd_experiment.sh"), str(raw),
                             str(tmp_path / "out")], cwd=repo, env=env, capture_output=True,
                            text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    measured = [r for r in rows if r["linear_b32_top1"] is not None]
    assert [r["run"] for r in measured] == ["skeletonclr-init", "skeletonclr", "cmd-init", "cmd"]
    for r in measured:
        assert r["n_train"] == 9 and r["n_test"] == 9  # subject 1 trains, subject 2 tests
        assert 0.0 <= r["knn_top1"] <= 1.0 and 0.0 <= r["linear_top1"] <= 1.0
    raw, plain = rows[0], rows[1]
    assert raw["encoder"].startswith("raw fixed joints") and 0.0 <= raw["knn_top1"] <= 1.0
    assert plain["encoder"].startswith("plain supervised") and plain["classifier_top1"] is not None
    classified = [r for r in rows if r["run"] and r["run"].endswith(("scratch", "finetune"))]
    assert [(r["run"], r["recipe"]) for r in classified] == [
        ("skeletonclr.scratch", "supervised"), ("skeletonclr.finetune", "i2md"),
        ("cmd.scratch", "supervised"), ("cmd.finetune", "i2md")]
    assert all(0.0 <= r["classifier_top1"] <= 1.0 and r["epochs"] == 2 for r in classified)
    assert open_store(tmp_path / "out" / "utd.zarr").layout.name == "kinect20"
    assert "| cmd | pre-trained |" in (tmp_path / "out" / "results.md").read_text()
