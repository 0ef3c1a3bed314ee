"""`skelprep info`: what a store holds, as a dict (``--json``) or a short text."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from skelkit.cli_options import plural
from skelkit.store.reader import open_store
from skelkit.store.schema import SPLIT_SIDES


def size_on_disk(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                continue
    return total


LABEL_SPACE = {"ntu60": 60, "ntu120": 120, "pku2": 51, "utd-mhad": 27}
"""Actions each dataset defines (its papers); a store may hold fewer (a subset, a synth set)."""


def label_space(dataset: str, labels: np.ndarray) -> tuple[int, str]:
    """The dataset's number of actions and where it comes from; for a dataset of unknown label
    space (generic), the largest 0-based label + 1."""
    if dataset in LABEL_SPACE:
        return LABEL_SPACE[dataset], "dataset"
    return (int(labels.max()) + 1 if len(labels) else 0), "largest label + 1"


def store_info(path: str | Path) -> dict[str, Any]:
    """Dataset, layout, samples per split and protocol, classes, modalities, size and report."""
    store = open_store(path, require_complete=False)
    n = len(store)
    labels = store.labels
    classes, per_class = np.unique(labels, return_counts=True)
    splits = {}
    for protocol in store.protocols:
        mask = store.split(protocol)
        splits[protocol] = {side: int((mask == code).sum()) for side, code in SPLIT_SIDES.items()}
    modalities = {m: list(store.fixed(m).shape) for m in store.modalities}
    raw = store.group["raw/joint"]
    layout = store.layout
    space, space_from = label_space(store.dataset, labels)
    return {
        "path": str(Path(path).resolve()),
        "complete": store.complete,
        "format": store.attrs.get("format"),
        "version": store.attrs.get("version"),
        "dataset": store.dataset,
        "layout": {"name": layout.name, "num_joints": layout.num_joints,
                   "joints": list(layout.joint_names)},
        "num_samples": n,
        "frames": store.frames,
        "max_bodies": store.max_bodies,
        "classes_present": len(classes),
        "classes_label_space": space,
        "classes_label_space_from": space_from,
        "samples_per_class": {"min": int(per_class.min()) if n else 0,
                              "max": int(per_class.max()) if n else 0},
        "splits": splits,
        "modalities": modalities,
        "raw": {"shape": list(raw.shape), "frames_total": int(raw.shape[0])},
        "size_on_disk_bytes": size_on_disk(Path(path)),
        "normalisation": store.attrs.get("normalisation"),
        "source": store.attrs.get("source"),
        "created_by": store.attrs.get("created_by"),
        "report": store.report,
    }


def format_info(info: dict[str, Any]) -> str:
    lines = [
        f"store      {info['path']}{'' if info['complete'] else '  (INCOMPLETE)'}",
        f"dataset    {info['dataset']}  ({info['format']} v{info['version']}, "
        f"{info['created_by']})",
        f"layout     {info['layout']['name']} ({info['layout']['num_joints']} joints), "
        f"{info['max_bodies']} bodies, {info['frames']} fixed frames",
        f"samples    {info['num_samples']} in {info['classes_present']} of "
        f"{plural(info['classes_label_space'], 'class')} ({_per_class(info)} per class)",
    ]
    for protocol, sides in info["splits"].items():
        lines.append(f"split      {protocol}: {sides['train']} train, {sides['test']} test")
    for name, shape in info["modalities"].items():
        lines.append(f"fixed      {name:<17} {tuple(shape)} float32")
    lines.append(f"raw        joint {tuple(info['raw']['shape'])} float32 (ragged, CMD-normalised)")
    lines.append(f"size       {info['size_on_disk_bytes'] / 1e6:.1f} MB on disk")
    report = info.get("report") or {}
    if report:
        reasons = report.get("skipped_by_reason") or {}
        skipped = f"{report.get('samples_skipped')} skipped"
        if reasons:
            skipped += " (" + ", ".join(f"{k} {v}" for k, v in reasons.items()) + ")"
        lines.append(f"build      {report.get('samples_written')} written, {skipped}, "
                     f"{report.get('seconds')} s, {report.get('scheduler')}")
    return "\n".join(lines)


def _per_class(info: dict[str, Any]) -> str:
    low, high = info["samples_per_class"]["min"], info["samples_per_class"]["max"]
    return f"{low}" if low == high else f"{low}-{high}"
