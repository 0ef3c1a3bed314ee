"""`skelprep` synth -> build -> info -> verify, one-line errors, and verify catching corruption."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from skelkit.prep.cli import main
from skelkit.store.reader import open_store

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
GOLDEN_NTU = SHARED / "golden" / "ntu"


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def built_store(tmp_path_factory) -> Path:
    """A tiny synthetic ntu60 set, built once for the module (tests copy it before corrupting)."""
    root = tmp_path_factory.mktemp("cli")
    raw, out = root / "raw", root / "ntu60.zarr"
    result = invoke("synth", "--dataset", "ntu60", "--out", raw, "--classes", "3",
                    "--performers", "2", "--seed", "1")
    assert result.exit_code == 0, result.output
    result = invoke("build", "--dataset", "ntu60", "--raw", raw, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "samples written" in result.stdout
    return out


def _copy(store: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy.zarr"
    shutil.copytree(store, dst)
    return dst


def test_info_json(built_store: Path) -> None:
    result = invoke("info", built_store, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    store = open_store(built_store)
    n = len(store)
    assert info["dataset"] == "ntu60" and info["num_samples"] == n and info["complete"] is True
    assert info["layout"]["name"] == "ntu25" and info["layout"]["num_joints"] == 25
    assert info["classes_present"] == 3
    for protocol in ("xsub", "xview"):
        sides = info["splits"][protocol]
        assert sides["train"] == int((store.split(protocol) == 0).sum())
        assert sides["train"] + sides["test"] == n
    assert info["splits"]["xsub"]["train"] > 0 and info["splits"]["xsub"]["test"] > 0
    assert set(info["modalities"]) == {"joint", "motion", "bone", "acceleration", "axis",
                                       "angular_velocity"}
    assert info["modalities"]["axis"] == [n, 3, 50, 25, 2]
    assert info["size_on_disk_bytes"] > 0
    report = info["report"]
    assert report["samples_written"] == n and report["files_found"] == n
    assert report["skipped"] == [] and report["seconds"] > 0
    text = invoke("info", built_store)
    assert text.exit_code == 0 and "xsub" in text.stdout and "angular_velocity" in text.stdout


def test_verify_ok(built_store: Path) -> None:
    result = invoke("verify", built_store)
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout


def _set(store: Path, key: str, index, value) -> None:
    arr = zarr.open_group(str(store), mode="r+")[key]
    data = np.asarray(arr[:])
    data[index] = value
    arr[:] = data


@pytest.mark.parametrize("corruption", [
    "nan_in_fixed", "modality_mismatch", "offsets", "split_flipped", "gamma", "incomplete",
    "missing_array",
])
def test_verify_catches_corruption(built_store: Path, tmp_path: Path, corruption: str) -> None:
    store = _copy(built_store, tmp_path)
    expect = {
        "nan_in_fixed": "non-finite", "modality_mismatch": "re-derivation", "offsets": "offsets",
        "split_flipped": "split xsub", "gamma": "gamma", "incomplete": "incomplete",
        "missing_array": "fixed/bone",
    }[corruption]
    if corruption == "nan_in_fixed":
        _set(store, "fixed/motion", (1, 0, 3, 4, 0), np.nan)
    elif corruption == "modality_mismatch":
        _set(store, "fixed/bone", (0, 1, 10, 5, 0), 0.5)
    elif corruption == "offsets":
        _set(store, "raw/offsets", 2, 1)
    elif corruption == "split_flipped":
        _set(store, "splits/xsub", 0, 1 - int(open_store(store).split("xsub")[0]))
    elif corruption == "gamma":
        _set(store, "samples/gamma", 0, 9.0)
    elif corruption == "incomplete":
        group = zarr.open_group(str(store), mode="r+")
        group.attrs["complete"] = False
    elif corruption == "missing_array":
        shutil.rmtree(store / "fixed" / "bone")
    result = invoke("verify", store)
    assert result.exit_code == 1, result.output
    assert expect in result.stderr, result.stderr


def test_unknown_dataset_is_one_line_exit_2(tmp_path: Path) -> None:
    result = invoke("build", "--dataset", "ntu90", "--raw", tmp_path, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0 and "ntu90" in result.stderr
    result = invoke("synth", "--dataset", "kinetics", "--out", tmp_path / "x")
    assert result.exit_code == 2 and result.stderr.strip().count("\n") == 0


@pytest.mark.parametrize("args", [
    ["build", "--dataset", "ntu60", "--raw", "R", "--out", "S", "--resume", "--overwrite"],
    ["build", "--dataset", "ntu60", "--out", "S"],
    ["build", "--dataset", "ntu60", "--raw", "R", "--out", "S", "--frames", "many"],
    ["info"],
    ["nonsense"],
])
def test_usage_errors_are_one_line_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output


def test_info_of_a_missing_store_exits_2(tmp_path: Path) -> None:
    result = invoke("info", tmp_path / "absent.zarr")
    assert result.exit_code == 2 and "no such store" in result.stderr


@pytest.mark.skipif(not GOLDEN_NTU.is_dir(), reason="shared/golden absent")
def test_pku_synth_build_verify(tmp_path: Path) -> None:
    raw, out = tmp_path / "pku", tmp_path / "pku.zarr"
    assert invoke("synth", "--dataset", "pku2", "--out", raw, "--classes", "3",
                  "--performers", "2").exit_code == 0
    result = invoke("build", "--dataset", "pku2", "--raw", raw, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    store = open_store(out)
    assert store.protocols == ("xsub", "xview") and len(store) > 0
    # PKU names stay <video>.txt_<clip index>: the golden pins the authors' pku_gendata names.
    assert all(re.fullmatch(r"A\d+N\d+-[LMR]\.txt_\d+", n) for n in store.samples["name"])
    for protocol in store.protocols:  # the split lists (video names) still reach both sides
        assert set(store.split(protocol)) == {0, 1}, protocol
    assert invoke("verify", out).exit_code == 0
    info = invoke("info", "--json", out)
    assert info.exit_code == 0 and json.loads(info.stdout)["dataset"] == "pku2"


def test_help_lists_the_commands_and_the_registered_datasets() -> None:
    from skelkit.prep.cli import DATASET_HELP
    from skelkit.prep.formats import DATASET_NAMES

    result = invoke("-h")
    assert result.exit_code == 0, result.output
    for command in ("synth", "build", "info", "verify"):
        assert command in result.stdout
    # The help text is typed out (importing the registry costs ~1.5 s): it must name exactly it.
    assert DATASET_HELP.split("|") == list(DATASET_NAMES)
    assert DATASET_HELP in invoke("build", "-h").stdout


@pytest.mark.parametrize("what", ["absent", "plain_folder", "other_zarr"])
def test_verify_of_a_non_store_is_one_line_exit_2(tmp_path: Path, what: str) -> None:
    path = tmp_path / "thing"
    if what == "plain_folder":
        path.mkdir()
        (path / "notes.txt").write_text("not a store\n")
    elif what == "other_zarr":
        zarr.open_group(str(path), mode="w").attrs["format"] = "something-else"
    result = invoke("verify", path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("skelprep verify: error: "), result.stderr
    assert str(path) in lines[0]
