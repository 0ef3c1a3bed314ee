"""Evaluation records in run directories and the results table of ``skeleval report``.

``knn``, ``linear`` (and later ``finetune``) append one JSON object per line to
``<run_dir>/eval.jsonl`` when the embedding file's ``checkpoint`` attribute points inside a run
directory (a directory holding ``config.yaml``). ``report`` reads each run's resolved
``config.yaml`` and its ``eval.jsonl``, groups runs whose configs are equal apart from the seed
(and where they ran: device, threads, workers), and prints mean +- sample std (ddof = 1) of the
top-1 accuracies over the runs of each group, per evaluated modality.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skelkit.eval.baselines import RAW_METHOD
from skelkit.store.reader import open_store
from skelkit.store.rundir import RunDir, enclosing_run

# Config keys that say where or how reproducibly a run executed, not what it is; runs that differ
# only in these belong to the same row.
NON_IDENTITY_KEYS = frozenset(
    {"seed", "device", "threads", "num_workers", "prefetch_factor", "start_method"}
)
KINDS = ("knn", "linear", "finetune")
RAW_LABEL = "raw joints"


def method_label(method: str, epochs: str) -> str:
    """How a row names a run: the raw-joint baseline, a random-init run (0 epochs), a method."""
    if method == RAW_METHOD:
        return RAW_LABEL
    if epochs == "0":
        return f"{method} (random init)"
    return method


# --- writing records ------------------------------------------------------------------------


def find_run_dir(checkpoint: str | None, embedding_path: Path, max_up: int = 3) -> Path | None:
    """The run directory holding ``checkpoint`` (as given, or relative to the embedding file)."""
    if not checkpoint:
        return None
    given = Path(checkpoint)
    candidates = [given] if given.is_absolute() else [given, embedding_path.parent / given]
    for candidate in candidates:
        found = enclosing_run(candidate, max_up)
        if found is not None:
            return found.path
    return None


def append_eval_record(run_dir: Path, record: dict[str, Any]) -> Path:
    """Append one result line to the run's ``eval.jsonl`` (a time stamp is added)."""
    return RunDir(run_dir).append_eval(record)


def embedding_provenance(attrs: dict[str, Any], embedding_path: Path) -> dict[str, Any]:
    """The attributes of an embedding file that identify what was evaluated."""
    keys = ("method", "encoder", "modality", "store", "protocol", "checkpoint", "epoch")
    out: dict[str, Any] = {"embedding": str(embedding_path.resolve())}
    for key in keys:
        if key in attrs:
            value = attrs[key]
            out[key] = value.item() if hasattr(value, "item") else value
    return out


# --- reading runs ---------------------------------------------------------------------------


@dataclass
class RunResults:
    run_dir: Path
    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return str(_first(self.config, ("method",), default="?"))

    @property
    def protocol(self) -> str:
        value = _first(self.config, ("data.protocol", "protocol"))
        return str(value) if value is not None else self._from_records("protocol", "?")

    @property
    def epochs(self) -> str:
        value = _first(self.config, ("engine.epochs", "epochs"))
        return str(value) if value is not None else "?"

    @property
    def seed(self) -> str:
        value = _first(self.config, ("engine.seed", "seed"))
        return str(value) if value is not None else "?"

    @property
    def dataset(self) -> str:
        value = _first(self.config, ("data.dataset", "dataset"))
        if value is not None:
            return str(value)
        store = _first(self.config, ("data.store", "store")) or self._from_records("store", None)
        return dataset_of_store(store) if store else "?"

    def identity(self) -> str:
        """Canonical text of the config without its seed and execution details."""
        return json.dumps(_strip_keys(self.config, NON_IDENTITY_KEYS), sort_keys=True, default=str)

    def latest(self, kind: str, modality: str) -> dict[str, Any] | None:
        """The most recent record of ``kind`` for ``modality`` (KNN: k = 1 unweighted preferred)."""
        matching = [
            r for r in self.records if r.get("kind") == kind and _modality(r) == modality
        ]
        if kind == "knn":
            plain = [r for r in matching if r.get("k") == 1 and not r.get("weighted")]
            matching = plain or matching
        if kind == "finetune":
            # The run's own fine-tune: a --scratch baseline or a transfer to another store,
            # recorded in the same run dir, is not this run's score.
            matching = [r for r in matching if not r.get("scratch") and not r.get("transfer")]
            full = [r for r in matching if float(r.get("label_fraction", 1.0)) == 1.0]
            matching = full or matching
        return matching[-1] if matching else None

    def modalities(self) -> list[str]:
        found = sorted({_modality(r) for r in self.records if r.get("kind") in KINDS})
        return found or [""]

    def _from_records(self, key: str, default: Any) -> Any:
        for record in reversed(self.records):
            if record.get(key):
                return record[key]
        return default


def dataset_of_store(store: str) -> str:
    """The dataset name a store declares, or its file stem when it cannot be opened here."""
    try:
        return open_store(store, require_complete=False).dataset
    except Exception:
        # The store may live on another machine; the stem (ntu60.zarr -> ntu60) is what users name.
        return Path(str(store).rstrip("/")).name.removesuffix(".zarr")


def load_run(run_dir: str | Path) -> RunResults:
    rundir = RunDir(run_dir)
    return RunResults(run_dir=rundir.path, config=rundir.read_config(),
                      records=rundir.eval_records())


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    method: str
    modality: str
    dataset: str
    protocol: str
    epochs: str
    seeds: tuple[str, ...]
    scores: dict[str, list[float]]
    """kind -> top-1 fractions, one per run that has the result."""


def build_rows(runs: Sequence[RunResults]) -> list[ReportRow]:
    groups: dict[tuple[str, str], list[RunResults]] = {}
    for run in runs:
        for modality in run.modalities():
            groups.setdefault((run.identity(), modality), []).append(run)
    rows = []
    for (_, modality), members in groups.items():
        first = members[0]
        scores = {kind: [] for kind in KINDS}
        for run in members:
            for kind in KINDS:
                record = run.latest(kind, modality)
                if record is not None:
                    scores[kind].append(float(record["top1"]))
        rows.append(
            ReportRow(
                method=first.method,
                modality=modality,
                dataset=first.dataset,
                protocol=first.protocol,
                epochs=first.epochs,
                seeds=tuple(sorted((run.seed for run in members), key=_seed_order)),
                scores=scores,
            )
        )
    rows.sort(key=lambda r: (r.dataset, r.protocol, r.method, r.modality, r.epochs))
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for none."""
    if not values:
        return math.nan, math.nan
    if len(values) == 1:
        return values[0], 0.0
    return statistics.fmean(values), statistics.stdev(values)


def format_score(values: Sequence[float]) -> str:
    """Percent with one decimal; 'mean ± std' when several runs contributed."""
    if not values:
        return "-"
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f} (n={len(values)})"


def markdown_table(rows: Iterable[ReportRow]) -> str:
    header = ["method", "dataset", "protocol", "epochs", "seed", "KNN", "linear", "fine-tune"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        label = method_label(row.method, row.epochs)
        method = f"{label} ({row.modality})" if row.modality else label
        cells = [
            method,
            row.dataset,
            row.protocol,
            row.epochs,
            ", ".join(row.seeds),
            *(format_score(row.scores[kind]) for kind in KINDS),
        ]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def csv_table(rows: Iterable[ReportRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["method", "modality", "dataset", "protocol", "epochs", "seeds", "n_runs"]
    for kind in KINDS:
        header += [f"{kind}_top1_mean", f"{kind}_top1_std", f"{kind}_n"]
    writer.writerow(header)
    for row in rows:
        cells: list[Any] = [
            row.method,
            row.modality,
            row.dataset,
            row.protocol,
            row.epochs,
            " ".join(row.seeds),
            len(row.seeds),
        ]
        for kind in KINDS:
            values = row.scores[kind]
            mean, std = mean_std(values)
            # One repeat has no spread to report: an empty cell, not a measured 0.00.
            cells += [_percent(mean), _percent(std) if len(values) > 1 else "", len(values)]
        writer.writerow(cells)
    return buffer.getvalue()


def _percent(value: float) -> str:
    return "" if math.isnan(value) else f"{100 * value:.2f}"


def _modality(record: dict[str, Any]) -> str:
    return str(record.get("modality") or "")


def _seed_order(seed: str) -> tuple[int, int | str]:
    return (0, int(seed)) if seed.lstrip("-").isdigit() else (1, seed)


def _first(tree: dict[str, Any], dotted_keys: Sequence[str], default: Any = None) -> Any:
    for dotted in dotted_keys:
        node: Any = tree
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                node = None
                break
            node = node[part]
        if node is not None:
            return node
    return default


def _strip_keys(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_strip_keys(v, keys) for v in value]
    return value
