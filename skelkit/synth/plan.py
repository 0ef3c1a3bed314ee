"""Which samples a synthetic dataset holds: actions, performers, setups, names and protocols.

The protocol facts are the ones the build cuts (skelkit/store/protocols.py), so a
generated set always has both sides of every split the build will cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from skelkit.store import protocols

NTU60_XSUB_TRAIN = tuple(sorted(protocols.NTU60_XSUB_TRAIN))
NTU120_XSUB_TRAIN = tuple(sorted(protocols.NTU120_XSUB_TRAIN))
NTU_XVIEW_TRAIN_CAMERAS = tuple(sorted(protocols.NTU_XVIEW_TRAIN_CAMERAS))
PKU_VIEWS = {1: "L", 2: "M", 3: "R"}
PKU_XVIEW_TRAIN = ("L", "R")


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    num_actions: int
    num_performers: int
    xsub_train: tuple[int, ...]
    missing_list: str | None
    """Package resource with the official missing-skeleton names (never generated)."""


SPECS = {
    "ntu60": DatasetSpec("ntu60", 60, 40, NTU60_XSUB_TRAIN, "ntu60_missing.txt"),
    "ntu120": DatasetSpec("ntu120", 120, 106, NTU120_XSUB_TRAIN, "ntu120_missing.txt"),
    # PKU-MMD II lists videos per split; odd subjects train here.
    "pku2": DatasetSpec("pku2", 51, 99, tuple(range(1, 100, 2)), None),
}


def dataset_spec(dataset: str) -> DatasetSpec:
    if dataset not in SPECS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}")
    return SPECS[dataset]


def pick_actions(spec: DatasetSpec, classes: int) -> list[int]:
    """``classes`` action ids spread evenly over the dataset's range (so a small set still holds
    one- and two-person actions and, for NTU-120, actions of both halves)."""
    if not 1 <= classes <= spec.num_actions:
        raise ValueError(f"{spec.name}: classes must be in 1..{spec.num_actions}, got {classes}")
    ids = np.unique(np.round(np.linspace(1, spec.num_actions, classes)).astype(int))
    return [int(a) for a in ids]


def pick_performers(spec: DatasetSpec, performers: int) -> list[int]:
    """Performer ids alternating between the xsub train and test sides."""
    train = sorted(spec.xsub_train)
    test = sorted(set(range(1, spec.num_performers + 1)) - set(train))
    if not 1 <= performers <= len(train) + len(test):
        raise ValueError(f"{spec.name}: performers must be in 1..{len(train) + len(test)}")
    order = [p for pair in zip(train, test) for p in pair]
    order += train[len(test):] + test[len(train):]
    return sorted(order[:performers])


def ntu_setup(performer: int, action: int) -> int:
    """The setup of a take: NTU-60 actions were recorded in setups 1-17, NTU-120's new actions
    61-120 in setups 18-32; a performer moves through setups as the action list goes on.
    Depends on the ids only, so a take keeps its setup whatever else the set holds."""
    pool = list(range(1, 18)) if action <= 60 else list(range(18, 33))
    return pool[(performer * 5 + (action // 10) * 3) % len(pool)]


def ntu_name(setup: int, camera: int, performer: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"


def missing_names(spec: DatasetSpec) -> frozenset[str]:
    if spec.missing_list is None:
        return frozenset()
    text = resources.files("skelkit.prep").joinpath("data", spec.missing_list).read_text()
    return frozenset(line.strip() for line in text.splitlines() if line.strip())


def pku_video_name(subject: int, take: int, camera: int) -> str:
    return f"A{subject:02d}N{take:02d}-{PKU_VIEWS[camera]}"
