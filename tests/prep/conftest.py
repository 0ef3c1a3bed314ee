"""Shared fixtures of the prep tests: where ../shared lives, the golden data, the NTU layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skelkit.store.layout import NTU25, Layout

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
GOLDEN = SHARED / "golden"
NTU_REAL = SHARED / "data" / "ntu-real"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared next to the repository; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared folder not found at {SHARED}")
    return SHARED


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


@pytest.fixture(scope="session")
def ntu_layout() -> Layout:
    return NTU25
