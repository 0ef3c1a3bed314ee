"""Results recorded into run directories and the aggregated report table."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from skelkit.eval.cli import main
from skelkit.eval.report import find_run_dir, format_score, mean_std
from skelkit.store.rundir import file_sha256


def _embed_for_run(tmp_path, run, rng, make_clustered, make_split_file, name, spread,
                   relative: bool = False):
    x, y = make_clustered(rng, 360, 16, 4, spread=spread)
    checkpoint = run / "checkpoints" / "last.pt"
    attrs = {"method": "cmd", "modality": "joint", "protocol": "xsub", "store": "ntu60.zarr",
             "epoch": 10, "checkpoint": str(checkpoint if not relative else
                                            checkpoint.relative_to(tmp_path)),
             "checkpoint_sha256": file_sha256(checkpoint)}  # as skeltrain embed records it
    return make_split_file(tmp_path / name, (x[:240], y[:240]), (x[240:], y[240:]), attrs)


def _records(run):
    lines = (run / "eval.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_knn_and_linear_append_to_run_eval_jsonl(tmp_path, rng, make_clustered, make_split_file,
                                                 make_run):
    run = make_run(tmp_path / "runs", "cmd-a", seed=0)
    emb = _embed_for_run(tmp_path, run, rng, make_clustered, make_split_file, "a.h5", 1.0)
    runner = CliRunner()
    assert runner.invoke(main, ["knn", "--emb", str(emb), "--json"]).exit_code == 0
    assert runner.invoke(main, ["linear", "--emb", str(emb), "--epochs", "3", "--milestones",
                                "2", "--json"]).exit_code == 0
    knn, linear = _records(run)
    assert knn["kind"] == "knn" and knn["k"] == 1 and knn["modality"] == "joint"
    assert linear["kind"] == "linear" and linear["epochs"] == 3
    assert knn["embedding"] == str(emb.resolve()) and "time" in knn
    outcome = runner.invoke(main, ["knn", "--emb", str(emb), "--no-record"])
    assert outcome.exit_code == 0 and len(_records(run)) == 2


def test_no_record_without_a_run_dir(tmp_path, separable_file):
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(separable_file)])
    assert outcome.exit_code == 0
    assert not list(tmp_path.rglob("eval.jsonl"))


def test_find_run_dir_resolves_relative_to_the_embedding_file(tmp_path, make_run):
    run = make_run(tmp_path / "runs", "r", seed=1)
    emb = tmp_path / "x.h5"
    assert find_run_dir("runs/r/checkpoints/last.pt", emb) == run.resolve()
    assert find_run_dir(str(run / "checkpoints" / "epoch_0005.pt"), emb) == run.resolve()
    assert find_run_dir("elsewhere/last.pt", emb) is None
    assert find_run_dir("", emb) is None


def test_report_aggregates_seeds_and_separates_configs(tmp_path, rng, make_clustered,
                                                       make_split_file, make_run):
    runner = CliRunner()
    runs = []
    for seed, spread in ((0, 1.0), (1, 6.0), (2, 3.0)):
        run = make_run(tmp_path / "runs", f"cmd-s{seed}", seed=seed)
        emb = _embed_for_run(tmp_path, run, rng, make_clustered, make_split_file,
                             f"s{seed}.h5", spread, relative=True)
        outcome = runner.invoke(main, ["knn", "--emb", str(emb), "--json"])
        assert outcome.exit_code == 0, outcome.output
        runs.append(run)
    other = make_run(tmp_path / "runs", "cmd-long", seed=0, epochs=20)
    emb = _embed_for_run(tmp_path, other, rng, make_clustered, make_split_file, "long.h5", 1.0)
    assert runner.invoke(main, ["linear", "--emb", str(emb), "--epochs", "2", "--milestones",
                                "1"]).exit_code == 0
    knn_scores = [_records(run)[0]["top1"] for run in runs]
    mean, std = np.mean(knn_scores), np.std(knn_scores, ddof=1)
    assert std > 0.001  # the spreads differ, so the seeds' scores differ

    outcome = runner.invoke(main, ["report", *(str(r) for r in [*runs, other])])
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.strip().splitlines()
    assert lines[0] == ("| method | dataset | protocol | epochs | seed | KNN | linear | "
                        "fine-tune |")
    assert len(lines) == 4  # header, rule, 10-epoch group (3 seeds), 20-epoch run
    grouped = next(line for line in lines if "| 10 |" in line)
    assert "| 0, 1, 2 |" in grouped and "cmd (joint)" in grouped and "| ntu60 | xsub |" in grouped
    assert f"{100 * mean:.1f} ± {100 * std:.1f} (n=3)" in grouped
    single = next(line for line in lines if "| 20 |" in line)
    assert single.split("|")[6].strip() == "-"  # no KNN for that run

    outcome = runner.invoke(main, ["report", "--csv", *(str(r) for r in runs)])
    table = list(csv.DictReader(io.StringIO(outcome.stdout)))
    assert len(table) == 1 and table[0]["n_runs"] == "3" and table[0]["knn_n"] == "3"
    assert float(table[0]["knn_top1_mean"]) == pytest.approx(100 * mean, abs=0.01)
    assert float(table[0]["knn_top1_std"]) == pytest.approx(100 * std, abs=0.01)
    assert table[0]["linear_top1_mean"] == ""


def test_report_prefers_plain_k1_knn_and_latest_record(tmp_path, make_run):
    run = make_run(tmp_path, "r", seed=0)
    records = [
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.5, "modality": "joint"},
        {"kind": "knn", "k": 20, "weighted": True, "top1": 0.9, "modality": "joint"},
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.6, "modality": "joint"},
        {"kind": "linear", "top1": 0.7, "modality": "joint"},
    ]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    outcome = CliRunner().invoke(main, ["report", str(run)])
    row = outcome.stdout.strip().splitlines()[2].split("|")
    assert [cell.strip() for cell in row[6:9]] == ["60.0", "70.0", "-"]


def test_report_finetune_column_ignores_scratch_and_transfer_records(tmp_path, make_run):
    run = make_run(tmp_path, "r", seed=0)
    records = [
        {"kind": "finetune", "top1": 0.4, "modality": "joint", "label_fraction": 1.0},
        {"kind": "finetune", "top1": 0.9, "modality": "joint", "label_fraction": 1.0, "scratch": True},
        {"kind": "finetune", "top1": 0.8, "modality": "joint", "label_fraction": 1.0, "transfer": True},
    ]
    (run / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    outcome = CliRunner().invoke(main, ["report", str(run)])
    row = outcome.stdout.strip().splitlines()[2].split("|")
    assert row[8].strip() == "40.0"


def test_mean_std_and_format():
    assert mean_std([0.5]) == (0.5, 0.0)
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, 0.1414213562))
    assert format_score([]) == "-"
    assert format_score([0.7061]) == "70.6"


def test_report_bad_inputs_exit_2(tmp_path, make_run):
    runner = CliRunner()
    outcome = runner.invoke(main, ["report", str(tmp_path / "missing")])
    assert outcome.exit_code == 2 and "no such run directory" in outcome.stderr
    (tmp_path / "empty").mkdir()
    outcome = runner.invoke(main, ["report", str(tmp_path / "empty")])
    assert outcome.exit_code == 2 and "no config.yaml" in outcome.stderr
    run = make_run(tmp_path, "r", seed=0)
    (run / "eval.jsonl").write_text('{"kind": "knn", "top1": 0.5}\nnot json\n')
    outcome = runner.invoke(main, ["report", str(run)])
    assert outcome.exit_code == 2 and "eval.jsonl:2: invalid JSON" in outcome.stderr
    assert outcome.stderr.count("\n") == 1 and "Traceback" not in outcome.output
