"""The packaged action-name table (skelkit/data/action_names.tsv) and the t-SNE legend that uses it."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.action_names import action_names, class_labels
from skelkit.eval import plots
from skelkit.eval.cli import main
from skelkit.prep.info import LABEL_SPACE
from skelkit.prep.kernels.parse_pku import parse_pku_labels

from .conftest import write_split_file

REPO = Path(__file__).resolve().parents[3]
GOLDEN_PKU = REPO / ".." / "shared" / "golden" / "pku"


def _rows() -> list[tuple[str, int, str]]:
    text = (resources.files("skelkit") / "data" / "action_names.tsv").read_text("utf-8")
    rows = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            dataset, action_id, name = line.split("\t")
            rows.append((dataset, int(action_id), name))
    return rows


def test_counts_ids_and_names_are_complete_and_unique() -> None:
    rows = _rows()
    for dataset, count in (("ntu120", 120), ("pku2", 51), ("utd-mhad", 27)):
        ids = [i for d, i, _ in rows if d == dataset]
        names = [n for d, _, n in rows if d == dataset]
        assert ids == list(range(1, count + 1)), dataset  # 1-based, no gap, no repeat
        assert len(set(names)) == count and all(n.strip() == n and n for n in names), dataset
    assert {d for d, _, _ in rows} == {"ntu120", "pku2", "utd-mhad"}
    for dataset, space in LABEL_SPACE.items():  # one label space, whoever counts it
        assert len(action_names(dataset)) == space, dataset
    assert action_names("ntu60") == action_names("ntu120")[:60]
    assert action_names("generic") is None


def test_spot_checks_against_the_publishers_lists() -> None:
    ntu = action_names("ntu120")
    assert ntu[0] == "drink water" and ntu[59] == "walking apart from each other"
    assert ntu[42] == "falling" and ntu[57] == "handshaking"
    assert ntu[60] == "put on headphone" and ntu[119].startswith("finger-guessing game")
    pku = action_names("pku2")
    assert pku[0] == "bow" and pku[7] == "drink water" and pku[50] == "writing"
    utd = action_names("utd-mhad")
    assert utd[0] == "right arm swipe to the left" and utd[26] == "squat (two arms stretch out)"
    header = (resources.files("skelkit") / "data" / "action_names.tsv").read_text("utf-8")
    for source in ("github.com/shahroudy/NTURGB-D", "utdallas.edu/~kehtar/UTD-MHAD",
                   "icst.pku.edu.cn/struct/Projects/PKUMMD"):
        assert source in header


def test_labels_are_zero_based_and_out_of_range_falls_back_to_numbers() -> None:
    assert class_labels("ntu60", [0, 59]) == ["A1 drink water", "A60 walking apart from each other"]
    assert class_labels("ntu60", [0, 60]) == ["0", "60"]  # an NTU-120 label in an ntu60 file
    assert class_labels(None, [0, 1]) == ["0", "1"]
    assert class_labels("generic", [3]) == ["3"]


@pytest.mark.skipif(not GOLDEN_PKU.is_dir(), reason="shared/golden absent")
def test_pku_label_files_are_one_based_and_store_labels_zero_based() -> None:
    first = (GOLDEN_PKU / "label" / "A01N01-L.txt").read_text().splitlines()[0]
    clip = parse_pku_labels(GOLDEN_PKU / "label" / "A01N01-L.txt")[0]
    file_id = int(first.split(",")[0])
    assert clip.label0 == file_id - 1
    assert class_labels("pku2", [clip.label0]) == [f"A{file_id} {action_names('pku2')[file_id - 1]}"]


def test_the_table_ships_in_the_package() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "**/*.tsv" in pyproject["tool"]["setuptools"]["package-data"]["skelkit"]


def _file(tmp_path: Path, rng: np.random.Generator, attrs: dict) -> Path:
    centres = rng.standard_normal((4, 8)) * 3.0

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 4
        return (centres[y] + 0.3 * rng.standard_normal((n, 8))).astype(np.float32), y
    return write_split_file(tmp_path / "e.h5", draw(40), draw(40), attrs)


def test_tsne_legend_names_actions_when_the_dataset_is_known(tmp_path, rng) -> None:
    x = rng.standard_normal((40, 8)).astype(np.float32)
    y = np.arange(40) % 4
    named = plots.plot_tsne(x, y, tmp_path / "a.png", n_iter=250, dataset="ntu60")
    assert named.legend == ("A1 drink water", "A2 eat meal/snack", "A3 brushing teeth",
                            "A4 brushing hair")
    plain = plots.plot_tsne(x, y, tmp_path / "b.png", n_iter=250)
    assert plain.legend == ("0", "1", "2", "3")


def test_tsne_command_reads_the_dataset_from_the_file(tmp_path, rng, monkeypatch) -> None:
    seen: list[str | None] = []
    real = plots.plot_tsne

    def spy(*args, **kwargs):
        seen.append(kwargs.get("dataset"))
        return real(*args, **kwargs)
    monkeypatch.setattr(plots, "plot_tsne", spy)
    for attrs in ({"method": "m", "dataset": "utd-mhad"},
                  {"method": "m", "store": str(tmp_path / "gone.zarr")}):  # store moved away
        emb = _file(tmp_path, rng, attrs)
        outcome = CliRunner().invoke(main, ["tsne", "--emb", str(emb), "--out",
                                            str(tmp_path / "t.png"), "--iterations", "250"])
        assert outcome.exit_code == 0, outcome.output
    assert seen == ["utd-mhad", None]
