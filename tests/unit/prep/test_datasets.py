"""Dataset specs: NTU names, ntu60 filtering, missing lists, PKU clips and protocol splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from skelkit.prep.errors import DatasetError
from skelkit.prep.formats import get_dataset
from skelkit.prep.formats.ntu import parse_ntu_name
from skelkit.prep.tasks import load_missing

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared"
GOLDEN_NTU = SHARED / "golden" / "ntu"
GOLDEN_PKU = SHARED / "golden" / "pku"
needs_golden = pytest.mark.skipif(not GOLDEN_NTU.is_dir(), reason="shared/golden absent")

# docs/design.md §2.5, typed out again here as the independent reference.
XSUB60 = {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
XSUB120 = XSUB60 | {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82,
                    83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103}


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_text("1\r\n0\r\n")


def test_parse_ntu_name() -> None:
    n = parse_ntu_name("S018C003P042R002A120")
    assert (n.setup, n.camera, n.performer, n.replication, n.action) == (18, 3, 42, 2, 120)
    for bad in ("S001C001P001R001A1", "S001C001P001R001A000", "S033C001P001R001A001",
                "s001c001p001r001a001", "S001C004P001R001A001", "foo"):
        with pytest.raises(ValueError):
            parse_ntu_name(bad)


def test_packaged_missing_lists() -> None:
    ntu60 = load_missing(None, "ntu60_missing.txt")
    ntu120 = load_missing(None, "ntu120_missing.txt")
    assert len(ntu60) == 302 and len(ntu120) == 535
    assert ntu60 <= ntu120
    assert "S001C002P005R002A008" in ntu60


def test_ntu60_takes_only_its_setups_and_actions(tmp_path: Path) -> None:
    names = ["S001C001P001R001A001", "S017C002P003R002A060", "S018C001P001R001A001",
             "S001C001P001R001A061", "S032C003P106R002A120"]
    _touch(tmp_path, *(f"{n}.skeleton" for n in names), "README.txt")
    d60 = get_dataset("ntu60").discover(tmp_path)
    assert [t.samples[0].name for t in d60.tasks] == names[:2]
    assert d60.excluded == 3 and d60.files_found == 5 and not d60.skipped
    d120 = get_dataset("ntu120").discover(tmp_path)
    assert [t.samples[0].name for t in d120.tasks] == sorted(names)
    spec = d60.tasks[1].samples[0]
    assert (spec.label, spec.subject, spec.camera, spec.setup, spec.replication) == (59, 3, 2, 17, 2)


def test_ntu60_folder_with_only_ntu120_files_is_an_error(tmp_path: Path) -> None:
    _touch(tmp_path, "S018C001P001R001A001.skeleton", "S001C001P001R001A061.skeleton")
    with pytest.raises(DatasetError, match="no ntu60 file"):
        get_dataset("ntu60").discover(tmp_path)


@pytest.mark.parametrize("make", ["missing", "empty", "other_files"])
def test_unbuildable_folders(tmp_path: Path, make: str) -> None:
    raw = tmp_path / "raw"
    if make == "empty":
        raw.mkdir()
    elif make == "other_files":
        _touch(raw, "notes.txt")
    with pytest.raises(DatasetError):
        get_dataset("ntu120").discover(raw)
    with pytest.raises(DatasetError):
        get_dataset("pku2").discover(raw)


def test_missing_list_and_bad_names_are_reported(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _touch(raw, "S001C002P005R002A008.skeleton", "S001C001P001R001A001.skeleton",
           "S001C001P001R001A002_copy.skeleton")
    d = get_dataset("ntu60").discover(raw)
    assert [t.samples[0].name for t in d.tasks] == ["S001C001P001R001A001"]
    kinds = {s.name: s.kind for s in d.skipped}
    assert kinds == {"S001C002P005R002A008": "missing_list",
                     "S001C001P001R001A002_copy": "bad_name"}
    assert all(s.file.endswith(".skeleton") and s.reason for s in d.skipped)
    # --missing replaces the packaged list.
    own = tmp_path / "mine.txt"
    own.write_text("# my list\nS001C001P001R001A001.skeleton\n")
    d = get_dataset("ntu60").discover(raw, own)
    assert [t.samples[0].name for t in d.tasks] == ["S001C002P005R002A008"]
    with pytest.raises(DatasetError):
        get_dataset("ntu60").discover(raw, tmp_path / "absent.txt")
    _touch(raw / "again", "S001C001P001R001A001.skeleton")  # the same sample twice
    d = get_dataset("ntu60").discover(raw)
    assert [t.samples[0].name for t in d.tasks] == ["S001C001P001R001A001"]
    assert [s.kind for s in d.skipped if s.name == "S001C001P001R001A001"] == ["duplicate"]


def test_ntu_splits_follow_the_protocols() -> None:
    rng = np.random.default_rng(0)
    cols = {"subject": rng.integers(1, 107, 500), "camera": rng.integers(1, 4, 500),
            "setup": rng.integers(1, 33, 500)}
    s60 = get_dataset("ntu60").splits(cols, {})
    s120 = get_dataset("ntu120").splits(cols, {})
    assert set(s60) == {"xsub", "xview"} and set(s120) == {"xsub", "xset"}
    for i in range(500):
        assert s60["xsub"][i] == (0 if cols["subject"][i] in XSUB60 else 1)
        assert s60["xview"][i] == (0 if cols["camera"][i] in (2, 3) else 1)
        assert s120["xsub"][i] == (0 if cols["subject"][i] in XSUB120 else 1)
        assert s120["xset"][i] == (0 if cols["setup"][i] % 2 == 0 else 1)
    assert s60["xsub"].dtype == np.int8


@needs_golden
def test_pku_discovery_matches_golden_names(tmp_path: Path) -> None:
    ref = np.load(SHARED / "golden" / "pku_reference.npz")
    d = get_dataset("pku2").discover(GOLDEN_PKU)
    specs = [s for t in d.tasks for s in t.samples]
    assert [s.name for s in specs] == list(ref["names"])
    assert [s.label for s in specs] == list(ref["label"])
    assert [s.end - s.start for s in specs] == list(ref["num_frame"])
    first = specs[0]
    assert (first.subject, first.camera, first.replication, first.group) == (1, 1, 1, "A01N01-L")
    assert first.label_file.endswith("A01N01-L.txt") and first.label_line == 1
    cols = {"group": np.array([s.group for s in specs], dtype=object)}
    splits = get_dataset("pku2").splits(cols, d.split_lists)
    # golden: xsub trains on A02N02-*, xview on the L and R views.
    assert list(splits["xsub"]) == [0 if s.group.startswith("A02") else 1 for s in specs]
    assert list(splits["xview"]) == [1 if s.group.endswith("-M") else 0 for s in specs]


@needs_golden
def test_pku_video_without_labels_is_reported(tmp_path: Path) -> None:
    raw = tmp_path / "pku"
    shutil.copytree(GOLDEN_PKU, raw)
    (raw / "label" / "A01N01-M.txt").unlink()
    d = get_dataset("pku2").discover(raw)
    assert [s.name for s in d.skipped] == ["A01N01-M.txt"]
    assert d.skipped[0].kind == "no_label"
    assert d.num_samples == 20


@pytest.mark.realdata
@pytest.mark.parametrize("dataset", ["ntu60", "ntu120"])
def test_packaged_missing_lists_equal_the_official_ones(dataset: str) -> None:
    official = SHARED / "data" / f"{dataset}_samples_with_missing_skeletons.txt"
    if not official.is_file():
        pytest.skip("shared/data absent")
    names = {ln.strip() for ln in official.read_text().splitlines()
             if parse_ntu_name_ok(ln.strip())}
    assert load_missing(None, f"{dataset}_missing.txt") == names


def parse_ntu_name_ok(name: str) -> bool:
    try:
        parse_ntu_name(name)
    except ValueError:
        return False
    return True
