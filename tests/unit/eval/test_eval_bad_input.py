"""Bad input: one clear line on stderr and exit code 2, never a traceback (issue 4 item 7)."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.eval.cli import main

COMMANDS = [
    ["knn"],
    ["linear", "--epochs", "1", "--milestones", ""],
    ["tsne", "--out", "never.png"],
]


def _h5(path, groups: dict[str, dict[str, np.ndarray]]):
    with h5py.File(path, "w") as f:
        for group, datasets in groups.items():
            g = f.create_group(group)
            for key, value in datasets.items():
                if value.dtype.kind == "U":
                    g.create_dataset(key, data=value.astype(object),
                                     dtype=h5py.string_dtype("utf-8"))
                else:
                    g.create_dataset(key, data=value)
    return path


def _group(n: int, dim: int = 4, nan_row: int | None = None, labels: int | None = None):
    embedding = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    if nan_row is not None:
        embedding[nan_row, 1] = np.nan
    return {
        "embedding": embedding,
        "label": np.arange(labels if labels is not None else n, dtype=np.int64) % 3,
        "name": np.array([f"s{i}" for i in range(n)]),
    }


def _assert_one_line_exit_2(outcome, *fragments: str) -> None:
    assert outcome.exit_code == 2, outcome.output
    assert "Traceback" not in outcome.output
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert re.match(r"skeleval [a-z]+: error: ", outcome.stderr), outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.stderr, outcome.stderr
    assert outcome.exception is None or isinstance(outcome.exception, SystemExit)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_missing_file(tmp_path, command):
    missing = tmp_path / "nothere.h5"
    outcome = CliRunner().invoke(main, [*command, "--emb", str(missing)])
    _assert_one_line_exit_2(outcome, "nothere.h5", "no such file")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_hdf5_without_expected_groups(tmp_path, command):
    path = _h5(tmp_path / "only_train.h5", {"train": _group(10)})
    outcome = CliRunner().invoke(main, [*command, "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "only_train.h5", "test")


def test_hdf5_group_without_dataset(tmp_path):
    groups = {"train": _group(10), "test": _group(6)}
    del groups["test"]["label"]
    path = _h5(tmp_path / "nolabel.h5", groups)
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "nolabel.h5", "label")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_mismatched_lengths(tmp_path, command):
    path = _h5(tmp_path / "mismatch.h5", {"train": _group(10), "test": _group(6, labels=5)})
    outcome = CliRunner().invoke(main, [*command, "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "mismatch.h5", "test", "mismatched lengths")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_nan_rows(tmp_path, command):
    path = _h5(tmp_path / "nan.h5", {"train": _group(10, nan_row=7), "test": _group(6)})
    outcome = CliRunner().invoke(main, [*command, "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "nan.h5", "train", "row 7")


def test_mismatched_widths(tmp_path):
    path = _h5(tmp_path / "widths.h5", {"train": _group(10, dim=4), "test": _group(6, dim=5)})
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "widths.h5")


def test_not_an_hdf5_file(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("hello\n")
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path)])
    _assert_one_line_exit_2(outcome, "text.h5", "HDF5")


def test_directory_instead_of_file(tmp_path):
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(tmp_path)])
    # click's own usage error for a directory path: exit 2 as well, no traceback.
    assert outcome.exit_code == 2 and "Traceback" not in outcome.output


def test_tsne_bad_group(separable_file, tmp_path):
    outcome = CliRunner().invoke(main, ["tsne", "--emb", str(separable_file), "--out",
                                        str(tmp_path / "t.png"), "--group", "val"])
    _assert_one_line_exit_2(outcome, "--group")
