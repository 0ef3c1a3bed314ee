"""Fixtures of the golden tests: the preparation goldens under ../shared/golden (skipped with a
reason when the shared folder is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "ntu_reference.npz").is_file():
        pytest.skip(f"golden data not found under {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def ntu_golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "ntu_reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="session")
def pku_golden(golden_dir: Path) -> dict[str, np.ndarray]:
    with np.load(golden_dir / "pku_reference.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
