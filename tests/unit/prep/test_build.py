"""The build pipeline: golden parity through the store, bad input, resume after kill -9, dask."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.prep.builder.batch import BATCH_SIZE_ENV
from skelkit.prep.builder.pipeline import BATCH_PAUSE_ENV
from skelkit.prep.cli import main
from skelkit.store.errors import StoreError
from skelkit.store.reader import open_store
from skelkit.store.schema import MODALITIES

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO / ".." / "shared"
GOLDEN = SHARED / "golden"
pytestmark = pytest.mark.skipif(not (GOLDEN / "ntu").is_dir(), reason="shared/golden absent")

GOOD = "S001C001P001R001A001"  # genuine recording, 103 frames, one body, CRLF


def copy_golden(raw: Path, names: dict[str, str] | list[str] | None = None) -> Path:
    """Golden NTU files into ``raw``, optionally renamed {new name: golden name}."""
    raw.mkdir(parents=True, exist_ok=True)
    if names is None:
        names = sorted(p.stem for p in (GOLDEN / "ntu").glob("*.skeleton"))
    if isinstance(names, list):
        names = {n: n for n in names}
    for new, old in names.items():
        shutil.copy(GOLDEN / "ntu" / f"{old}.skeleton", raw / f"{new}.skeleton")
    return raw


def cli(*args: str) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def build(raw: Path, out: Path, *extra: str, dataset: str = "ntu60") -> dict:
    result = cli("build", "--dataset", dataset, "--raw", raw, "--out", out, "--workers", "1",
                 *extra)
    assert result.exit_code == 0, result.output
    return open_store(out).report


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    s = open_store(path)
    out = {f"samples/{c}": s.samples[c].to_numpy() for c in s.samples.columns}
    out.update({f"splits/{p}": s.split(p) for p in s.protocols})
    out.update({f"fixed/{m}": np.asarray(s.fixed(m)[:]) for m in s.modalities})
    out["raw/joint"] = np.asarray(s.group["raw/joint"][:])
    out["raw/offsets"] = s.offsets
    return out


def test_golden_ntu_build_matches_reference_arrays(tmp_path: Path) -> None:
    out = tmp_path / "ntu60.zarr"
    report = build(copy_golden(tmp_path / "raw"), out)
    ref = np.load(GOLDEN / "ntu_reference.npz")
    s = open_store(out)
    assert list(s.samples["name"]) == [n.removesuffix(".skeleton") for n in ref["names"]]
    assert report["samples_written"] == 21 and report["skipped"] == []
    assert report["files_found"] == 21
    assert np.array_equal(s.samples["num_frames"], ref["num_frame"])
    assert np.allclose(s.samples["gamma"], ref["num_frame"] / 50)
    assert list(s.labels) == [int(n[17:20]) - 1 for n in s.samples["name"]]
    joint = np.asarray(s.fixed("joint")[:])
    assert np.abs(joint - ref["ikem_j50"]).max() < 1e-4
    for i in (0, 7, 20):  # raw sample i = the first T_orig frames of cmd_normalized
        t = int(ref["num_frame"][i])
        assert np.abs(s.raw(i) - ref["cmd_normalized"][i][:, :t].transpose(1, 0, 2, 3)).max() < 1e-4
    # splits: performers 1, 2, 8 train xsub; cameras 2, 3 train xview.
    assert not s.split("xsub").any()
    assert list(s.split("xview")) == [0 if n[5:8] in ("002", "003") else 1
                                      for n in s.samples["name"]]


def _bad_file(raw: Path, case: str) -> tuple[str, int | None]:
    """Writes one broken sample next to a good one; returns its name and the expected line."""
    copy_golden(raw, [GOOD])
    lines = (GOLDEN / "ntu" / f"{GOOD}.skeleton").read_bytes().split(b"\r\n")
    name, line = "S001C001P001R001A010", None
    if case == "truncated":
        lines, line = lines[:100], -1
    elif case == "wrong_joint_count":
        lines[3], line = b"24", 4
    elif case == "non_numeric":
        lines[5], line = b"0.2x3 " + lines[5].split(b" ", 1)[1], 6
    elif case == "zero_frames":
        lines, line = [b"0", b""], 1
    elif case in ("nan", "inf"):
        tokens = lines[6].split(b" ")
        tokens[1] = case.encode()
        lines[6], line = b" ".join(tokens), 7
    elif case == "bad_name":
        name = "S001C001P001R001A010_copy"
    elif case == "no_bodies":
        lines = [b"3", b"0", b"0", b"0", b""]
    (raw / f"{name}.skeleton").write_bytes(b"\r\n".join(lines))
    return name, line


@pytest.mark.parametrize(
    "case", ["truncated", "wrong_joint_count", "non_numeric", "zero_frames", "nan", "inf",
             "bad_name", "no_bodies"],
)
def test_bad_input_is_skipped_and_reported(tmp_path: Path, case: str) -> None:
    name, line = _bad_file(tmp_path / "raw", case)
    report = build(tmp_path / "raw", tmp_path / "s.zarr")
    assert report["samples_written"] == 1
    assert list(open_store(tmp_path / "s.zarr").samples["name"]) == [GOOD]
    [entry] = report["skipped"]
    assert entry["name"] == name and entry["reason"]
    assert entry["file"].endswith(f"{name}.skeleton")
    if line == -1:  # truncated: the error is at (or just past) the last line present
        assert 95 <= entry["line"] <= 101
    else:
        assert entry["line"] == line
    kind = {"wrong_joint_count": "joint_count", "nan": "non_finite", "inf": "non_finite"}.get(
        case, case)
    assert entry["kind"] == kind and report["skipped_by_reason"] == {kind: 1}


def test_pku_label_past_the_end_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "pku"
    shutil.copytree(GOLDEN / "pku", raw)
    label = raw / "label" / "A01N01-L.txt"
    text = label.read_text().rstrip("\n") + "\n3,400,999,1\n"  # the video has 429 frames
    label.write_text(text)
    report = build(raw, tmp_path / "p.zarr", dataset="pku2")
    assert report["samples_written"] == 24
    [entry] = report["skipped"]
    assert entry["name"] == "A01N01-L.txt_4"
    assert entry["file"] == str(label) and entry["line"] == 5
    assert "past the end" in entry["reason"]
    ref = np.load(GOLDEN / "pku_reference.npz")
    s = open_store(tmp_path / "p.zarr")
    assert list(s.samples["name"]) == list(ref["names"])
    assert np.array_equal(s.labels, ref["label"])
    for i in (0, 13, 23):
        t = int(ref["num_frame"][i])
        assert np.abs(s.raw(i) - ref["cmd_normalized"][i][:, :t].transpose(1, 0, 2, 3)).max() < 1e-4


@pytest.mark.parametrize("make", ["missing", "empty", "no_dataset_files"])
def test_unbuildable_raw_folder_exits_2_with_one_line(tmp_path: Path, make: str) -> None:
    raw = tmp_path / "raw"
    if make == "empty":
        raw.mkdir()
    elif make == "no_dataset_files":
        copy_golden(raw, {"S018C001P001R001A001": GOOD})  # an NTU-120 file only
    result = CliRunner().invoke(main, ["build", "--dataset", "ntu60", "--raw", str(raw),
                                       "--out", str(tmp_path / "s.zarr"), "--workers", "1"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert str(raw) in result.stderr
    assert not (tmp_path / "s.zarr").exists()


def test_existing_store_needs_resume_or_overwrite(tmp_path: Path) -> None:
    raw, out = copy_golden(tmp_path / "raw", [GOOD]), tmp_path / "s.zarr"
    build(raw, out)
    result = CliRunner().invoke(main, ["build", "--dataset", "ntu60", "--raw", str(raw),
                                       "--out", str(out), "--workers", "1"])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(open_store(out)) == 1  # untouched
    copy_golden(raw, ["S001C001P001R001A002"])
    assert build(raw, out, "--overwrite")["samples_written"] == 2
    assert cli("build", "--dataset", "ntu60", "--raw", raw, "--out", out, "--resume").exit_code == 0


def test_ntu60_from_a_mixed_folder_and_missing_lists(tmp_path: Path) -> None:
    raw = copy_golden(tmp_path / "raw", {
        GOOD: GOOD,
        "S018C001P001R001A001": GOOD,  # NTU-120 setup
        "S001C001P001R001A061": GOOD,  # NTU-120 action
        "S001C002P005R002A008": GOOD,  # in the official missing lists
    })
    report = build(raw, tmp_path / "a.zarr")
    assert list(open_store(tmp_path / "a.zarr").samples["name"]) == [GOOD]
    assert report["files_excluded_other_dataset"] == 2
    assert [(s["name"], s["kind"]) for s in report["skipped"]] == [
        ("S001C002P005R002A008", "missing_list")]
    report = build(raw, tmp_path / "b.zarr", dataset="ntu120")
    assert report["samples_written"] == 3 and report["samples_skipped"] == 1
    mine = tmp_path / "mine.txt"
    mine.write_text(f"{GOOD}\n")
    report = build(raw, tmp_path / "c.zarr", "--missing", mine)
    assert list(open_store(tmp_path / "c.zarr").samples["name"]) == ["S001C002P005R002A008"]
    assert [s["name"] for s in report["skipped"]] == [GOOD]


def test_splits_for_ntu120_protocols(tmp_path: Path) -> None:
    # performer 45 is xsub-train for NTU-120 only; setups 18 (even) and 19 (odd).
    raw = copy_golden(tmp_path / "raw", {
        "S018C001P045R001A061": GOOD, "S019C002P044R001A120": GOOD, "S001C003P001R001A001": GOOD,
    })
    build(raw, tmp_path / "s.zarr", dataset="ntu120")
    s = open_store(tmp_path / "s.zarr")
    assert list(s.samples["name"]) == ["S001C003P001R001A001", "S018C001P045R001A061",
                                       "S019C002P044R001A120"]
    assert list(s.split("xsub")) == [0, 0, 1]
    assert list(s.split("xset")) == [1, 0, 1]
    assert list(s.labels) == [0, 60, 119]


def test_local_process_workers_equal_one_worker(tmp_path: Path, monkeypatch) -> None:
    raw = copy_golden(tmp_path / "raw", [GOOD, "S001C003P008R002A058", "S001C002P001R001A003"])
    build(raw, tmp_path / "one.zarr")
    monkeypatch.setenv(BATCH_SIZE_ENV, "1")
    result = cli("build", "--dataset", "ntu60", "--raw", raw, "--out", tmp_path / "two.zarr",
                 "--workers", "2")
    assert result.exit_code == 0, result.output
    report = open_store(tmp_path / "two.zarr").report
    assert report["workers"] == 2 and report["batches"] == 3 and "processes" in report["scheduler"]
    a, b = store_arrays(tmp_path / "one.zarr"), store_arrays(tmp_path / "two.zarr")
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_distributed_scheduler_on_a_local_cluster(tmp_path: Path, monkeypatch) -> None:
    distributed = pytest.importorskip("distributed")
    raw = copy_golden(tmp_path / "raw", [GOOD, "S001C003P008R002A058"])
    build(raw, tmp_path / "one.zarr")
    monkeypatch.setenv(BATCH_SIZE_ENV, "1")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://")
        result = cli("build", "--dataset", "ntu60", "--raw", raw, "--out", tmp_path / "d.zarr",
                     "--scheduler", cluster.scheduler_address)
    assert result.exit_code == 0, result.output
    report = open_store(tmp_path / "d.zarr").report
    assert "distributed" in report["scheduler"] and report["batches"] == 2
    a, b = store_arrays(tmp_path / "one.zarr"), store_arrays(tmp_path / "d.zarr")
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_unreachable_scheduler_exits_2(tmp_path: Path) -> None:
    raw = copy_golden(tmp_path / "raw", [GOOD])
    result = CliRunner().invoke(main, ["build", "--dataset", "ntu60", "--raw", str(raw),
                                       "--out", str(tmp_path / "s.zarr"),
                                       "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert "scheduler" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def _progress(out: Path) -> dict:
    try:
        return json.loads((out / "zarr.json").read_text())["attributes"].get("progress", {})
    except (OSError, ValueError, KeyError):
        return {}


def test_kill_9_mid_build_then_resume_equals_a_clean_build(tmp_path: Path, monkeypatch) -> None:
    raw = copy_golden(tmp_path / "raw")  # 21 files -> 11 batches of 2
    clean = tmp_path / "clean.zarr"
    env = {**os.environ, "PYTHONPATH": str(REPO), BATCH_SIZE_ENV: "2", BATCH_PAUSE_ENV: "0.3"}
    out = tmp_path / "killed.zarr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "skelkit.prep.cli", "build", "--dataset", "ntu60", "--raw",
         str(raw), "--out", str(out), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _progress(out).get("batches_done", 0) < 3:
            assert proc.poll() is None, "build finished before it could be killed"
            assert time.monotonic() < deadline, "build made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(StoreError, match="incomplete"):
        open_store(out)
    assert open_store(out, require_complete=False).attrs["complete"] is False
    done = _progress(out)["batches_done"]
    assert 3 <= done < 11

    monkeypatch.setenv(BATCH_SIZE_ENV, "5")  # ignored: a resume keeps the stored batch size
    build(raw, out, "--resume")
    monkeypatch.delenv(BATCH_SIZE_ENV)
    build(raw, clean)
    a, b = store_arrays(clean), store_arrays(out)
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    report = open_store(out).report
    assert report["resumed"] is True and report["samples_written"] == 21
    assert report["batches"] == 11  # the resume kept the interrupted run's batch size


def test_report_in_store_has_counts_and_timing(tmp_path: Path) -> None:
    raw = copy_golden(tmp_path / "raw", [GOOD, "S001C001P001R001A002"])
    (raw / "S001C001P001R001A003.skeleton").write_bytes(b"0\r\n")
    report = build(raw, tmp_path / "s.zarr")
    for key in ("files_found", "samples_written", "samples_skipped", "skipped_by_reason",
                "seconds", "files_per_second", "megabytes_per_second", "workers", "scheduler",
                "skipped"):
        assert key in report, key
    assert report["files_found"] == 3 and report["samples_written"] == 2
    assert report["samples_skipped"] == 1 and report["seconds"] > 0
    assert set(report["skipped"][0]) >= {"name", "file", "line", "reason"}
    assert open_store(tmp_path / "s.zarr").modalities == MODALITIES


REAL = SHARED / "data" / "ntu-real"


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/ntu-real absent")
def test_genuine_recordings_build_and_verify(tmp_path: Path) -> None:
    names = sorted(p.stem for p in REAL.glob("*.skeleton"))
    report = build(REAL, tmp_path / "ntu120.zarr", dataset="ntu120")
    assert report["samples_written"] == len(names) and report["skipped"] == []
    assert cli("verify", tmp_path / "ntu120.zarr").exit_code == 0
    ntu60 = [n for n in names if int(n[1:4]) <= 17 and int(n[17:20]) <= 60]
    report = build(REAL, tmp_path / "ntu60.zarr")
    assert list(open_store(tmp_path / "ntu60.zarr").samples["name"]) == ntu60
    assert report["files_excluded_other_dataset"] == len(names) - len(ntu60)


def test_batches_bound_the_samples_in_flight() -> None:
    from skelkit.prep.builder.batch import (
        IN_FLIGHT_SAMPLES,
        MAX_BATCH,
        choose_batch_size,
        make_batches,
        max_in_flight,
    )
    from skelkit.prep.tasks import FileTask, SampleSpec

    for workers in (1, 2, 3, 8, 16, 64):
        for n in (10, 1000, 114_000):
            size = choose_batch_size(n, workers)
            assert 64 <= size <= MAX_BATCH
            in_flight = max_in_flight(workers, size)
            assert in_flight >= min(2 * workers, 2)
            assert in_flight * size <= max(IN_FLIGHT_SAMPLES, 2 * MAX_BATCH)
    spec = SampleSpec("x", 0, 1, 1, 1, 1)
    tasks = [FileTask(f"f{i}", (spec,) * (1 + i % 3), 10) for i in range(50)]
    batches = make_batches(tasks, 7)
    assert [t for b in batches for t in b] == tasks
    assert all(sum(len(t.samples) for t in b) >= 7 for b in batches[:-1])
    assert all(sum(len(t.samples) for t in b[:-1]) < 7 for b in batches)
