"""Shared pieces of the tests that drive real `skelprep build` processes (locks, orphan workers):
a small synthetic raw folder and how far a running build has durably got."""

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
