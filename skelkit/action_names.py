"""Action names of the built-in datasets, for people reading a label (legends, tables).

The table is package data (``skelkit/data/action_names.tsv``; its header names the sources and
how each list was checked). Labels stay 0-based everywhere in skelkit; the published ids are
1-based, so store label ``L`` is action ``A{L + 1}``. NTU RGB+D 60 is NTU-120's A1-A60.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

TABLE = "action_names.tsv"
_TABLE_ROWS = {"ntu60": ("ntu120", 60), "ntu120": ("ntu120", None), "pku2": ("pku2", None),
               "utd-mhad": ("utd-mhad", None)}
"""Dataset -> (its table, how many of the table's first names it uses; None: all)."""


@cache
def _table() -> dict[str, tuple[str, ...]]:
    rows: dict[str, dict[int, str]] = {}
    text = (resources.files("skelkit") / "data" / TABLE).read_text("utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        dataset, action_id, name = line.split("\t")
        ids = rows.setdefault(dataset, {})
        if int(action_id) in ids:
            raise ValueError(f"{TABLE}:{number}: {dataset} id {action_id} appears twice")
        ids[int(action_id)] = name.strip()
    table = {}
    for dataset, ids in rows.items():
        if sorted(ids) != list(range(1, len(ids) + 1)):
            raise ValueError(f"{TABLE}: {dataset} ids are not 1..{len(ids)}")
        table[dataset] = tuple(ids[i] for i in range(1, len(ids) + 1))
    return table


def action_names(dataset: str | None) -> tuple[str, ...] | None:
    """Names indexed by 0-based store label, or None for a dataset without a table (generic)."""
    if str(dataset) not in _TABLE_ROWS:
        return None
    source, count = _TABLE_ROWS[str(dataset)]
    return _table()[source][:count]


def class_labels(dataset: str | None, labels: list[int]) -> list[str]:
    """``A1 drink water`` style text for 0-based ``labels`` of ``dataset``; the plain numbers
    when the dataset has no table or a label is outside its label space."""
    names = action_names(dataset)
    if names is None or any(not 0 <= int(label) < len(names) for label in labels):
        return [str(label) for label in labels]
    return [f"A{int(label) + 1} {names[int(label)]}" for label in labels]
