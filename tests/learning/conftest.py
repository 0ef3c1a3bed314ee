"""Fixtures shared by the learning checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.harness import build_synth_store


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default ntu60 synth set (20 classes, 600 xsub-train samples) as a store, built once
    for every learning check of the session. The checks' thresholds were measured on the
    generator's ``none`` nuisance level, so it is asked for explicitly."""
    return build_synth_store(tmp_path_factory.mktemp("synth-store"), nuisance="none")
