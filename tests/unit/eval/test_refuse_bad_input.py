"""skeleval refuses what would give a silently wrong number: fractional labels, complex
embeddings; it remaps labels to their distinct values, warns about test classes absent from
train, and records a result only in a run whose checkpoint provably produced the file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.eval.cli import main
from skelkit.knn import knn_evaluate
from skelkit.store.rundir import file_sha256
from tests.unit.eval.conftest import clustered, make_run_dir

COMMANDS = [["knn"], ["linear", "--epochs", "30", "--milestones", ""]]


def h5(path: Path, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
       attrs: dict[str, str] | None = None) -> Path:
    """An embedding file written with h5py directly (any dtype, as a foreign tool might)."""
    with h5py.File(path, "w") as f:
        for key, value in (attrs or {"method": "test"}).items():
            f.attrs[key] = value
        for side, (x, y) in (("train", train), ("test", test)):
            group = f.create_group(side)
            group.create_dataset("embedding", data=x)
            group.create_dataset("label", data=y)
            group.create_dataset("name", data=np.array([f"{side}{i}" for i in range(len(y))],
                                                       dtype=object),
                                 dtype=h5py.string_dtype("utf-8"))
    return path


@pytest.fixture
def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    x, y = clustered(np.random.default_rng(7), 200, 8, 4, spread=1.0)
    return (x[:140], y[:140]), (x[140:], y[140:])


def one_line_exit_2(outcome, *fragments: str) -> None:
    assert outcome.exit_code == 2, outcome.output
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert re.match(r"skeleval [a-z]+: error: ", outcome.stderr), outcome.stderr
    for fragment in fragments:
        assert fragment in outcome.stderr, outcome.stderr


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_fractional_labels_are_refused(tmp_path: Path, data, command: list[str]) -> None:
    (xtr, ytr), (xte, yte) = data
    # 0.7 .. 3.7: truncation would have made them 0..3 and scored them as if nothing were wrong.
    path = h5(tmp_path / "f.h5", (xtr, ytr + 0.7), (xte, yte + 0.7))
    outcome = CliRunner().invoke(main, [*command, "--emb", str(path)])
    one_line_exit_2(outcome, "f.h5", "group 'train'", "labels must be integers", "0.7")


def test_whole_float_labels_are_read_as_the_integers_they_are(tmp_path: Path, data) -> None:
    (xtr, ytr), (xte, yte) = data
    ints = h5(tmp_path / "i.h5", (xtr, ytr), (xte, yte))
    floats = h5(tmp_path / "f.h5", (xtr, ytr.astype(np.float64)), (xte, yte.astype(np.float64)))
    runner = CliRunner()
    a = runner.invoke(main, ["knn", "--emb", str(ints), "--json"])
    b = runner.invoke(main, ["knn", "--emb", str(floats), "--json"])
    assert a.exit_code == b.exit_code == 0, a.output + b.output
    assert json.loads(a.stdout)["top1"] == json.loads(b.stdout)["top1"]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_complex_embeddings_are_refused(tmp_path: Path, data, command: list[str]) -> None:
    (xtr, ytr), (xte, yte) = data
    path = h5(tmp_path / "c.h5", (xtr + 1j, ytr), (xte + 1j, yte))
    outcome = CliRunner().invoke(main, [*command, "--emb", str(path)])
    one_line_exit_2(outcome, "c.h5", "embedding must be real", "complex")


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_huge_labels_are_remapped_not_allocated(tmp_path: Path, data, command: list[str]) -> None:
    """Labels {0, 1, 2, 2**40}: four classes, scored exactly as labels {0, 1, 2, 3}."""
    (xtr, ytr), (xte, yte) = data
    big = np.array([0, 1, 2, 2 ** 40], dtype=np.int64)
    dense = h5(tmp_path / "d.h5", (xtr, ytr), (xte, yte))
    sparse = h5(tmp_path / "s.h5", (xtr, big[ytr]), (xte, big[yte]))
    runner = CliRunner()
    a = runner.invoke(main, [*command, "--emb", str(dense), "--json", "--device", "cpu"])
    b = runner.invoke(main, [*command, "--emb", str(sparse), "--json", "--device", "cpu"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["top1"] == rb["top1"] and ra["top5"] == rb["top5"]
    assert ra["top1"] > 0.9  # clusters this clear are found: not a chance-level pass


def test_test_classes_absent_from_train_are_warned_about(tmp_path: Path, data) -> None:
    (xtr, ytr), (xte, yte) = data
    keep = ytr != 3  # class 3 only on the test side
    path = h5(tmp_path / "a.h5", (xtr[keep], ytr[keep]), (xte, yte))
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path), "--json", "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    absent = int((yte == 3).sum())
    assert absent > 0
    assert (f"1 test class(es) never occur in train (labels 3): {absent} of {len(yte)} test "
            "samples cannot be classified correctly") in outcome.stderr
    # The number itself, a second way: the same 1-NN computed directly.
    direct = knn_evaluate(xtr[keep], ytr[keep], xte, yte, k=1, num_classes=4).top1
    assert json.loads(outcome.stdout)["top1"] == pytest.approx(direct)
    assert direct <= 1 - absent / len(yte)


# --- where results are recorded ---------------------------------------------------------------------

def records(run: Path) -> list[dict]:
    path = run / "eval.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def claimed(tmp_path: Path, data, run: Path, digest: str | None) -> Path:
    attrs = {"method": "cmd", "modality": "joint", "protocol": "xsub",
             "checkpoint": str(run / "checkpoints" / "last.pt")}
    if digest is not None:
        attrs["checkpoint_sha256"] = digest
    return h5(tmp_path / "e.h5", *data, attrs=attrs)


def test_a_file_merely_naming_a_run_is_not_recorded_there(tmp_path: Path, data) -> None:
    run = make_run_dir(tmp_path / "runs", "victim", seed=0)
    path = claimed(tmp_path, data, run, digest=None)
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path)])
    assert outcome.exit_code == 0, outcome.output
    assert records(run) == []
    assert f"not recorded in {run.resolve()}" in outcome.stderr
    assert "no checkpoint digest" in outcome.stderr


def test_a_digest_that_does_not_match_the_run_checkpoint_is_not_recorded(tmp_path: Path,
                                                                          data) -> None:
    run = make_run_dir(tmp_path / "runs", "victim", seed=0)
    path = claimed(tmp_path, data, run, digest="0" * 64)
    outcome = CliRunner().invoke(main, ["linear", "--emb", str(path), "--epochs", "1",
                                        "--milestones", ""])
    assert outcome.exit_code == 0, outcome.output
    assert records(run) == []
    assert "is not the one" in outcome.stderr


def test_a_matching_digest_or_an_explicit_record_dir_records(tmp_path: Path, data) -> None:
    run = make_run_dir(tmp_path / "runs", "mine", seed=0)
    path = claimed(tmp_path, data, run, digest=file_sha256(run / "checkpoints" / "last.pt"))
    assert CliRunner().invoke(main, ["knn", "--emb", str(path)]).exit_code == 0
    assert [r["kind"] for r in records(run)] == ["knn"]
    # The checkpoint moves on (training continued): the file no longer proves anything ...
    (run / "checkpoints" / "last.pt").write_bytes(b"later weights")
    assert CliRunner().invoke(main, ["knn", "--emb", str(path)]).exit_code == 0
    assert len(records(run)) == 1
    # ... unless the user says where it belongs.
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path), "--record-dir", str(run)])
    assert outcome.exit_code == 0, outcome.output
    assert len(records(run)) == 2
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(path), "--record-dir",
                                        str(tmp_path / "not-a-run")])
    one_line_exit_2(outcome, "not-a-run")


def test_skeltrain_embed_records_the_checkpoint_digest(tiny_run, tmp_path: Path) -> None:
    from skelkit.train.embed import export_embeddings

    run = tiny_run("skeletonclr", 1)
    out = tmp_path / "run.h5"
    export_embeddings(run, out, device="cpu", num_workers=0, progress=False)
    with h5py.File(out, "r") as f:
        digest = f.attrs["checkpoint_sha256"]
    assert digest == file_sha256(run / "checkpoints" / "last.pt")
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(out), "--device", "cpu"])
    assert outcome.exit_code == 0, outcome.output
    assert f"recorded in {run.resolve() / 'eval.jsonl'}" in outcome.stderr
