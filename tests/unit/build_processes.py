"""Shared pieces of the tests (and bench/fault_trials.py) that drive real `skelprep build` processes
(locks, orphan workers): a small synthetic raw folder, how far a running build has durably got, and
a process's parent and children as /proc reports them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def synth_raw(tmp_path_factory: pytest.TempPathFactory, classes: int = 3) -> Path:
    """A small NTU-60 raw folder (2 performers, the mild generator) written by `skelprep synth`."""
    folder = tmp_path_factory.mktemp("raw") / "ntu"
    done = subprocess.run([sys.executable, "-m", "skelkit.prep.cli", "synth", "--dataset", "ntu60",
                           "--out", str(folder), "--classes", str(classes), "--performers", "2",
                           "--nuisance", "none"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return folder


def batches_done(store: Path) -> int:
    """The build's recorded progress (0 while the store's metadata is not there yet)."""
    try:
        attrs = json.loads((store / "zarr.json").read_text())["attributes"]
        return int(attrs.get("progress", {}).get("batches_done", 0))
    except (OSError, ValueError, KeyError):
        return 0


def parent_of(pid: int) -> int | None:
    """The parent PID of a live process, None for one that is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] in ("Z", "X") else int(fields[1])


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    return [int(entry.name) for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and parent_of(int(entry.name)) == pid]
