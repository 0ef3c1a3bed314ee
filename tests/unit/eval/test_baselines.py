"""Baselines in every report: raw fixed joints and the random-init encoder (issue 13 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.eval.baselines import RAW_METHOD, raw_joint_split
from skelkit.eval.cli import main
from skelkit.knn import knn_evaluate
from skelkit.store.reader import open_store


def test_raw_split_is_the_flattened_fixed_joints(random_walk_store):
    split = raw_joint_split(random_walk_store, "xsub")
    store = open_store(random_walk_store)
    fixed = np.asarray(store.fixed("joint")[:], np.float32)
    labels = store.samples["label"].to_numpy()
    for side, features, label in (("train", split.train_embedding, split.train_label),
                                  ("test", split.test_embedding, split.test_label)):
        rows = np.sort(store.indices("xsub", side))
        np.testing.assert_array_equal(features, fixed[rows].reshape(len(rows), -1))
        np.testing.assert_array_equal(label, labels[rows])
    assert split.train_embedding.shape[1] == 3 * 50 * 25 * 2
    assert split.attrs["method"] == RAW_METHOD and split.attrs["dataset"] == "randomwalk"


def test_raw_knn_matches_a_hand_computed_nearest_neighbour(random_walk_store):
    split = raw_joint_split(random_walk_store, "xsub")
    outcome = CliRunner().invoke(main, ["knn", "--store", str(random_walk_store), "--protocol",
                                        "xsub", "--raw", "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    a = split.train_embedding / np.linalg.norm(split.train_embedding, axis=1, keepdims=True)
    b = split.test_embedding / np.linalg.norm(split.test_embedding, axis=1, keepdims=True)
    nearest = split.train_label[np.argmax(b @ a.T, axis=1)]
    assert summary["top1"] == pytest.approx(np.mean(nearest == split.test_label))
    assert summary["source"] == "raw" and summary["n_train"] == len(split.train_label)
    direct = knn_evaluate(split.train_embedding, split.train_label, split.test_embedding,
                          split.test_label)
    assert direct.top1 == pytest.approx(summary["top1"])


def test_raw_and_random_init_rows_in_the_report(tiny_run, random_walk_store, tmp_path):
    import shutil

    runner = CliRunner()
    random_init = Path(shutil.copytree(tiny_run("cmd", 0), tmp_path / "cmd-random"))
    trained = Path(shutil.copytree(tiny_run("cmd", 1), tmp_path / "cmd-tiny"))
    baseline = tmp_path / "raw-xsub"
    for args in (["knn", "--run", str(random_init)], ["knn", "--run", str(trained)],
                 ["knn", "--raw", "--store", str(random_walk_store), "--protocol", "xsub",
                  "--record-dir", str(baseline)],
                 ["linear", "--raw", "--store", str(random_walk_store), "--protocol", "xsub",
                  "--record-dir", str(baseline), "--epochs", "5"]):
        outcome = runner.invoke(main, [*args, "--device", "cpu", "--json"])
        assert outcome.exit_code == 0, outcome.output
        assert "recorded in" in outcome.stderr
    record = json.loads((random_init / "eval.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 0 and record["source"] == "run"
    outcome = runner.invoke(main, ["report", "--layout", "paper", str(trained),
                                   str(random_init), str(baseline)])
    assert outcome.exit_code == 0, outcome.output
    knn_table = outcome.stdout.split("**KNN")[1]
    labels = [line.split("|")[1].strip() for line in knn_table.splitlines()
              if line.startswith("| ") and "---" not in line][1:]
    assert labels == ["raw joints", "cmd (random init)", "cmd"]
    runs_layout = runner.invoke(main, ["report", str(random_init), str(baseline)]).stdout
    assert "cmd (random init) (joint)" in runs_layout and "raw joints (joint)" in runs_layout


def test_baseline_dir_refuses_another_store(random_walk_store, tmp_path):
    runner = CliRunner()
    baseline = tmp_path / "raw"
    base = ["knn", "--raw", "--store", str(random_walk_store), "--record-dir", str(baseline)]
    assert runner.invoke(main, [*base, "--protocol", "xsub"]).exit_code == 0
    (baseline / "config.yaml").write_text(
        (baseline / "config.yaml").read_text().replace("xsub", "xview"))
    outcome = runner.invoke(main, [*base, "--protocol", "xsub"])
    assert outcome.exit_code == 2 and "holds another run" in outcome.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--raw"], "--raw needs --store and --protocol"),
    ([], "exactly one feature source"),
    (["--emb", "x.h5", "--raw", "--store", "s", "--protocol", "xsub"], "got both --emb and --raw"),
    (["--run", "r", "--record-dir", "d"], "--record-dir is for --emb and --raw"),
    (["--raw", "--store", "missing.zarr", "--protocol", "xsub"], "missing.zarr: no such store"),
])
def test_source_usage_errors_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in ("knn", "linear"):
        outcome = CliRunner().invoke(main, [command, *args])
        assert outcome.exit_code == 2, outcome.output
        assert message in outcome.stderr and outcome.stderr.count("\n") == 1


def test_raw_with_an_unknown_protocol_exit_2(random_walk_store):
    outcome = CliRunner().invoke(main, ["knn", "--raw", "--store", str(random_walk_store),
                                        "--protocol", "xview"])
    assert outcome.exit_code == 2 and "xview" in outcome.stderr
    assert "Traceback" not in outcome.output
