"""Loading the training goldens (``../shared/golden/train``, produced by the authors' own code; its
README says what each array is) and comparing at the README's tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN_TRAIN = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "train"

FORWARD_RTOL = 1e-5
"""README "Reproducibility and tolerances": 1e-5 x max(1, |expected|) for forward values."""
GRAD_RTOL = 1e-4
"""1e-4 relative (to the array's largest |value|) for gradients."""


def load_golden(name: str) -> dict[str, np.ndarray]:
    """All arrays of ``<name>.npz``; skips the test (saying where it looked) when absent."""
    path = GOLDEN_TRAIN / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"training golden {path} not found: it lives in ../shared beside the "
                    "repository (absent in this checkout)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def section(golden: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under ``prefix/`` with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in golden.items() if k.startswith(prefix + "/")}


def as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def max_diff(actual: torch.Tensor | np.ndarray, expected: np.ndarray) -> float:
    a, e = as_numpy(actual).astype(np.float64), np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != golden {e.shape}"
    return float(np.abs(a - e).max()) if a.size else 0.0


def assert_forward(actual: torch.Tensor | np.ndarray, expected: np.ndarray, what: str) -> float:
    """|actual - expected| <= 1e-5 x max(1, |expected|) elementwise; returns max |diff|."""
    diff = max_diff(actual, expected)
    a, e = as_numpy(actual).astype(np.float64), np.asarray(expected, np.float64)
    bound = FORWARD_RTOL * np.maximum(1.0, np.abs(e))
    worst = np.abs(a - e) - bound
    assert (worst <= 0).all(), f"{what}: max |diff| {diff:.3g} beyond 1e-5 x max(1, |expected|)"
    return diff


def assert_grad(actual: torch.Tensor | None, expected: np.ndarray, what: str) -> float:
    """max |diff| <= 1e-4 x max |expected| (at least 1e-6: a gradient that is zero in exact
    arithmetic holds rounding residue)."""
    assert actual is not None, f"{what}: no gradient (the reference has one)"
    diff = max_diff(actual, expected)
    scale = max(float(np.abs(expected).max()), 1e-2)
    assert diff <= GRAD_RTOL * scale, f"{what}: max |diff| {diff:.3g} > 1e-4 x {scale:.3g}"
    return diff


def assert_exact(actual: torch.Tensor | np.ndarray, expected: np.ndarray, what: str) -> None:
    a = as_numpy(actual)
    assert a.shape == expected.shape and (a == expected).all(), f"{what}: {a} != golden {expected}"
