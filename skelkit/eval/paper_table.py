"""``skeleval report --layout paper``: runs laid out as the papers' tables (issue 13 item 4).

One table per evaluation (linear, KNN, semi-supervised 1 % and 10 %, fine-tune, transfer), as in
I²MD Tables 1-5: rows are methods, columns are dataset x protocol (NTU-60 xsub / xview, NTU-120
xsub / xset, PKU-II xsub first, then any other store's); transfer columns are source -> target.

Rows: a pre-trained run is its method (and its modality when not joint); a run trained for zero
epochs (``skeltrain run --epochs 0``) is "<method> (random init)"; a raw-joint baseline directory
(``skeleval knn|linear --raw --record-dir``) is "raw joints"; ``skeleval finetune --scratch``
records give "<method> w/o pre-training". A cell is the mean over the runs of that row with a
result in that column (each run's latest record there; KNN prefers k = 1 unweighted), with
"± std (n=...)" when several runs contributed. With ``--published`` each method's published
numbers (``skelkit.eval.published``) follow its row, labelled with their streams and source.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from skelkit.eval.linear import BEST_LABEL
from skelkit.eval.published import Published, published_for
from skelkit.eval.report import (
    RAW_LABEL,
    RunResults,
    dataset_of_store,
    format_score,
    mean_std,
    method_label,
)

EVALUATIONS = ("linear", "knn", "semi1", "semi10", "finetune", "transfer")
EVALUATION_TITLES = {
    "linear": "Linear evaluation (top-1 %)",
    "knn": "KNN evaluation, k = 1 (top-1 %)",
    "semi1": "Semi-supervised, 1 % labels (top-1 %)",
    "semi10": "Semi-supervised, 10 % labels (top-1 %)",
    "finetune": "Fine-tuned (top-1 %)",
    "transfer": "Transfer, fine-tuned on the target (top-1 %)",
}
DATASET_NAMES = {"ntu60": "NTU-60", "ntu120": "NTU-120", "pku2": "PKU-II", "utd-mhad": "UTD-MHAD"}
CANONICAL = (("ntu60", "xsub"), ("ntu60", "xview"), ("ntu120", "xsub"), ("ntu120", "xset"),
             ("pku2", "xsub"))
SCRATCH = "w/o pre-training"
FRACTIONS = {0.01: "semi1", 0.1: "semi10", 1.0: "finetune"}


@dataclass(frozen=True, order=True)
class Column:
    dataset: str
    protocol: str
    source_dataset: str = ""
    """Pre-training dataset of a transfer column; "" otherwise."""

    def title(self) -> str:
        target = f"{DATASET_NAMES.get(self.dataset, self.dataset)} {self.protocol}"
        if self.source_dataset:
            return f"{DATASET_NAMES.get(self.source_dataset, self.source_dataset)} → {target}"
        return target

    def order(self) -> tuple[int, int, str, str, str]:
        key = (self.dataset, self.protocol)
        rank = CANONICAL.index(key) if key in CANONICAL else len(CANONICAL)
        sources = [dataset for dataset, _ in CANONICAL]
        source_rank = sources.index(self.source_dataset) if self.source_dataset in sources \
            else len(sources)
        return (rank, source_rank, self.source_dataset, self.dataset, self.protocol)


@dataclass
class PaperRow:
    label: str
    method: str
    variant: str
    modality: str = "joint"
    epochs: set[str] = field(default_factory=set)
    cells: dict[tuple[str, Column], list[float]] = field(default_factory=dict)
    best: dict[tuple[str, Column], list[float]] = field(default_factory=dict)
    """Best test top-1 over periodic evaluations, where the recipe reports one."""
    recipes: set[str] = field(default_factory=set)
    published: Published | None = None


@dataclass
class PaperTable:
    rows: list[PaperRow]
    columns: dict[str, list[Column]]
    """evaluation -> its columns, in display order."""


def row_identity(run: RunResults, modality: str, scratch: bool = False) -> tuple[str, str, str]:
    """(label, method, variant) of a run's row; variant: "", raw, random init, w/o pre-training."""
    if scratch:
        label, variant = f"{run.method} {SCRATCH}", SCRATCH
    else:
        label = method_label(run.method, run.epochs)
        if label == RAW_LABEL:
            variant = "raw"
        elif label == run.method:
            variant = ""
        else:
            variant = "random init"
    if modality and modality != "joint":
        label = f"{label} [{modality}]"
    return label, run.method, variant


def record_cell(run: RunResults, record: dict[str, Any]) -> tuple[str, Column, bool] | None:
    """(evaluation, column, scratch) of one eval.jsonl record; None for ones the layout omits."""
    kind = record.get("kind")
    if kind in ("knn", "linear"):
        dataset = record.get("dataset") or (dataset_of_store(str(record["store"]))
                                            if record.get("store") else run.dataset)
        protocol = str(record.get("protocol") or run.protocol)
        return str(kind), Column(str(dataset), protocol), False
    if kind != "finetune":
        return None
    dataset = str(record.get("dataset") or run.dataset)
    protocol = str(record.get("protocol") or run.protocol)
    scratch = bool(record.get("scratch"))
    if record.get("transfer"):
        return "transfer", Column(dataset, protocol, str(record.get("pretrain_dataset", "?"))), \
            scratch
    evaluation = FRACTIONS.get(round(float(record.get("label_fraction", 1.0)), 4))
    if evaluation is None:
        return None
    return evaluation, Column(dataset, protocol), scratch


def _preferred(kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The record a cell shows: the latest; for KNN the latest plain k = 1 one if any."""
    if kind == "knn":
        plain = [r for r in records if r.get("k") == 1 and not r.get("weighted")]
        records = plain or records
    return records[-1]


def build_paper_table(runs: Sequence[RunResults], *, published: bool = False) -> PaperTable:
    rows: dict[str, PaperRow] = {}
    for run in runs:
        for modality in run.modalities():
            per_cell: dict[tuple[str, Column, bool], list[dict[str, Any]]] = {}
            for record in run.records:
                if str(record.get("modality") or "") != modality:
                    continue
                place = record_cell(run, record)
                if place is not None:
                    per_cell.setdefault(place, []).append(record)
            for (evaluation, column, scratch), records in per_cell.items():
                label, method, variant = row_identity(run, modality, scratch)
                row = rows.setdefault(label, PaperRow(label, method, variant, modality))
                row.epochs.add(run.epochs)
                record = _preferred(evaluation, records)
                row.cells.setdefault((evaluation, column), []).append(float(record["top1"]))
                if record.get("best_top1") is not None:
                    row.best.setdefault((evaluation, column), []).append(
                        float(record["best_top1"]))
                if evaluation == "linear":
                    row.recipes.add(str(record.get("recipe") or "default"))
    ordered = sorted(rows.values(), key=_row_order)
    if published:
        ordered = _with_published(ordered)
    columns: dict[str, set[Column]] = {evaluation: set() for evaluation in EVALUATIONS}
    for row in ordered:
        for evaluation, column in row.cells:
            columns[evaluation].add(column)
    return PaperTable(
        rows=ordered,
        columns={e: sorted(c, key=Column.order) for e, c in columns.items() if c})


def _row_order(row: PaperRow) -> tuple[int, str]:
    rank = {"raw": 0, "random init": 1, SCRATCH: 2}.get(row.variant, 3)
    return (rank, row.label)


def _with_published(rows: list[PaperRow]) -> list[PaperRow]:
    out = []
    for row in rows:
        out.append(row)
        if row.variant not in ("", SCRATCH) or row.modality not in ("", "joint"):
            continue
        ours = {evaluation for evaluation, _ in row.cells}
        by_streams: dict[tuple[str, str], PaperRow] = {}
        for entry in published_for(row.method, row.variant):
            if entry.evaluation not in ours:
                continue
            key = (entry.streams, entry.source)
            label = f"{row.label}, published ({entry.streams}; {entry.source})"
            target = by_streams.setdefault(key, PaperRow(label, row.method, "published",
                                                         published=entry))
            column = Column(entry.dataset, entry.protocol, entry.source_dataset)
            target.cells[(entry.evaluation, column)] = [entry.top1 / 100.0]
        out.extend(by_streams.values())
    return out


def markdown_paper(table: PaperTable) -> str:
    if not table.columns:
        return "(no evaluation records in these runs)"
    blocks = []
    for evaluation, columns in table.columns.items():
        linear = evaluation == "linear"
        header = ["method", "pre-training epochs", *(["probe"] if linear else []),
                  *(c.title() for c in columns)]
        lines = [f"**{EVALUATION_TITLES[evaluation]}**", "",
                 "| " + " | ".join(header) + " |",
                 "|---|---|" + ("---|" if linear else "") + "---:|" * len(columns)]
        rows = _rows_with(table.rows, evaluation)
        for row in rows:
            probe = [", ".join(sorted(row.recipes)) or "-"] if linear else []
            cells = [row.label, _epochs_text(row), *probe, *(
                _cell_text(row, evaluation, column) for column in columns)]
            lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
        if any(key[0] == evaluation for row in rows for key in row.best):
            lines += ["", f"Final-epoch top-1; [best ...†]: {BEST_LABEL}, as the authors' "
                          "scripts print it."]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def csv_paper(table: PaperTable) -> str:
    """Long form: one line per (evaluation, row, column) with a value."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["evaluation", "method", "variant", "row", "source_dataset", "dataset",
                     "protocol", "top1_mean", "top1_std", "n_runs", "best_top1_mean",
                     "pretrain_epochs", "probe", "published_source"])
    for evaluation, columns in table.columns.items():
        for row in _rows_with(table.rows, evaluation):
            for column in columns:
                values = row.cells.get((evaluation, column))
                if not values:
                    continue
                mean, std = mean_std(values)
                best = row.best.get((evaluation, column))
                writer.writerow([
                    evaluation, row.method, row.variant or "pre-trained", row.label,
                    column.source_dataset, column.dataset, column.protocol, _percent(mean),
                    _percent(std) if len(values) > 1 else "", len(values),
                    _percent(mean_std(best)[0]) if best else "", _epochs_text(row),
                    " ".join(sorted(row.recipes)) if evaluation == "linear" else "",
                    row.published.source if row.published else ""])
    return buffer.getvalue()


def _rows_with(rows: Iterable[PaperRow], evaluation: str) -> list[PaperRow]:
    return [row for row in rows if any(e == evaluation for e, _ in row.cells)]


def _cell_text(row: PaperRow, evaluation: str, column: Column) -> str:
    text = format_score(row.cells.get((evaluation, column), []))
    best = row.best.get((evaluation, column))
    return f"{text} [best {format_score(best)}†]" if best else text


def _epochs_text(row: PaperRow) -> str:
    if row.published is not None:
        return "paper"
    if row.variant in ("raw", SCRATCH):
        return "-"
    return ", ".join(sorted(row.epochs, key=lambda e: (len(e), e)))


def _percent(value: float) -> str:
    return "" if math.isnan(value) else f"{100 * value:.2f}"
