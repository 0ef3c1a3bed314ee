"""``skeleval report --layout paper``: the papers' tables from recorded runs (issue 13 item 4)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from skelkit.eval.baselines import ensure_baseline_dir
from skelkit.eval.cli import main
from skelkit.eval.published import PUBLISHED, published_for


def _run(root: Path, name: str, *, seed: int, protocol: str, epochs: int,
         records: list[dict], method: str = "cmd") -> Path:
    run = root / name
    run.mkdir(parents=True)
    config = {"method": method, "data": {"store": "/elsewhere/ntu60.zarr", "protocol": protocol},
              "engine": {"epochs": epochs, "seed": seed}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    lines = [json.dumps({"modality": "joint", "dataset": "ntu60", "protocol": protocol, **r})
             for r in records]
    (run / "eval.jsonl").write_text("\n".join(lines) + "\n")
    return run


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    ft = {"kind": "finetune", "scratch": False, "transfer": False}
    xsub_a = _run(tmp_path, "cmd-xsub-s0", seed=0, protocol="xsub", epochs=450, records=[
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.70},
        {"kind": "knn", "k": 20, "weighted": True, "top1": 0.99},  # not the paper's KNN
        {"kind": "linear", "recipe": "cmd", "top1": 0.60, "best_top1": 0.62},
        {**ft, "label_fraction": 1.0, "top1": 0.85},
        {**ft, "label_fraction": 0.01, "top1": 0.50},
        {**ft, "label_fraction": 0.1, "top1": 0.70},
        {**ft, "label_fraction": 1.0, "top1": 0.55, "transfer": True, "dataset": "pku2",
         "pretrain_dataset": "ntu60"},
        {**ft, "label_fraction": 1.0, "top1": 0.78, "scratch": True},
    ])
    xsub_b = _run(tmp_path, "cmd-xsub-s1", seed=1, protocol="xsub", epochs=450, records=[
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.72},
        {"kind": "linear", "recipe": "cmd", "top1": 0.50, "best_top1": 0.58},  # older
        {"kind": "linear", "recipe": "cmd", "top1": 0.64, "best_top1": 0.66},  # latest wins
    ])
    xview = _run(tmp_path, "cmd-xview", seed=0, protocol="xview", epochs=450, records=[
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.80}])
    random_init = _run(tmp_path, "cmd-random", seed=0, protocol="xsub", epochs=0, records=[
        {"kind": "knn", "k": 1, "weighted": False, "top1": 0.30},
        {"kind": "linear", "top1": 0.20}])
    raw = ensure_baseline_dir(tmp_path / "raw", {
        "method": "raw-joints", "store": "/elsewhere/ntu60.zarr", "dataset": "ntu60",
        "protocol": "xsub", "modality": "joint"})
    (raw / "eval.jsonl").write_text(
        json.dumps({"kind": "knn", "k": 1, "top1": 0.40, "modality": "joint",
                    "dataset": "ntu60", "protocol": "xsub"}) + "\n")
    return [xsub_a, xsub_b, xview, random_init, raw]


def _table(markdown: str, title: str) -> list[list[str]]:
    block = markdown.split(f"**{title}")[1].split("\n\n**")[0]
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in block.splitlines() if line.startswith("| ")]


def test_paper_layout_rows_columns_and_cells(runs):
    outcome = CliRunner().invoke(main, ["report", "--layout", "paper", *map(str, runs)])
    assert outcome.exit_code == 0, outcome.output
    text = outcome.stdout
    knn = _table(text, "KNN")
    assert knn[0] == ["method", "pre-training epochs", "NTU-60 xsub", "NTU-60 xview"]
    assert knn[1:] == [["raw joints", "-", "40.0", "-"],
                       ["cmd (random init)", "0", "30.0", "-"],
                       ["cmd", "450", "71.0 ± 1.4 (n=2)", "80.0"]]
    linear = _table(text, "Linear")
    assert linear[0] == ["method", "pre-training epochs", "probe", "NTU-60 xsub"]
    assert linear[1] == ["cmd (random init)", "0", "default", "20.0"]
    assert linear[2] == ["cmd", "450", "cmd", "62.0 ± 2.8 (n=2) [best 64.0 ± 2.8 (n=2)†]"]
    assert "best over evaluations (selected on the test split)" in text
    assert _table(text, "Semi-supervised, 1 %")[1] == ["cmd", "450", "50.0"]
    assert _table(text, "Semi-supervised, 10 %")[1] == ["cmd", "450", "70.0"]
    finetune = _table(text, "Fine-tuned")
    assert finetune[1:] == [["cmd w/o pre-training", "-", "78.0"], ["cmd", "450", "85.0"]]
    transfer = _table(text, "Transfer")
    assert transfer[0][2:] == ["NTU-60 → PKU-II xsub"] and transfer[1] == ["cmd", "450", "55.0"]


def test_paper_layout_with_published_numbers(runs):
    outcome = CliRunner().invoke(main, ["report", "--layout", "paper", "--published",
                                        *map(str, runs)])
    assert outcome.exit_code == 0, outcome.output
    linear = _table(outcome.stdout, "Linear")
    header = linear[0]
    assert header[3:] == ["NTU-60 xsub", "NTU-60 xview", "NTU-120 xsub", "NTU-120 xset",
                          "PKU-II xsub"]
    published = linear[3]
    assert published[0].startswith("cmd, published (joint; I²MD Table 1")
    assert published[3:] == ["79.4", "86.9", "70.3", "71.5", "43.0"]
    knn = _table(outcome.stdout, "KNN")
    assert knn[4][2:] == ["70.6", "85.4", "58.3", "60.9"]
    transfer = _table(outcome.stdout, "Transfer")
    assert transfer[0][2:] == ["NTU-60 → PKU-II xsub", "NTU-120 → PKU-II xsub"]
    assert transfer[2][2:] == ["56.0", "57.0"]
    # No published row for a baseline, and none for an evaluation we have no result in.
    assert not any("raw joints, published" in row[0] for row in linear)


def test_paper_layout_csv(runs):
    outcome = CliRunner().invoke(main, ["report", "--layout", "paper", "--csv",
                                        *map(str, runs)])
    rows = list(csv.DictReader(io.StringIO(outcome.stdout)))
    cell = next(r for r in rows if r["evaluation"] == "knn" and r["row"] == "cmd"
                and r["protocol"] == "xsub")
    assert cell["top1_mean"] == "71.00" and cell["top1_std"] == "1.41" and cell["n_runs"] == "2"
    transfer = next(r for r in rows if r["evaluation"] == "transfer")
    assert (transfer["source_dataset"], transfer["dataset"], transfer["top1_mean"]) == (
        "ntu60", "pku2", "55.00")
    linear = next(r for r in rows if r["evaluation"] == "linear" and r["row"] == "cmd")
    assert linear["best_top1_mean"] == "64.00" and linear["probe"] == "cmd"
    assert {r["variant"] for r in rows} == {"raw", "random init", "pre-trained",
                                           "w/o pre-training"}


def test_published_needs_the_paper_layout(runs):
    outcome = CliRunner().invoke(main, ["report", "--published", str(runs[0])])
    assert outcome.exit_code == 2 and "--layout paper" in outcome.stderr


def test_published_numbers_match_the_design_targets():
    # docs/design.md §5.11, "Published targets (top-1 %, joint stream)".
    def value(method, evaluation, dataset, protocol):
        (entry,) = [p for p in published_for(method) if p.evaluation == evaluation
                    and p.dataset == dataset and p.protocol == protocol and p.streams == "joint"
                    and not p.source_dataset]
        return entry.top1

    cmd = [value("cmd", "linear", d, p) for d, p in
           (("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"), ("ntu120", "xset"),
            ("pku2", "xsub"))]
    assert cmd == [79.4, 86.9, 70.3, 71.5, 43.0]
    assert [value("cmd", "knn", "ntu60", p) for p in ("xsub", "xview")] == [70.6, 85.4]
    assert [value("i2md", "linear", "ntu120", p) for p in ("xsub", "xset")] == [73.1, 74.1]
    assert [value("i2md", "knn", "ntu120", p) for p in ("xsub", "xset")] == [62.0, 64.7]
    ikem = {(p.streams, p.protocol): p.top1 for p in PUBLISHED if p.method == "ikem"}
    assert ikem[("6-stream", "xsub")] == 81.2 and ikem[("6-stream", "xview")] == 86.9
    assert all(p.source for p in PUBLISHED)
