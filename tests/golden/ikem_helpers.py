"""Shared machinery of the IKEM/CrosSCLR/ST-GCN golden tests (``../shared/golden/train``).

The goldens were produced by the authors' own code (desehuileng0o0/IKEM); their README gives
the tolerances used here: forward values within 1e-5 x max(1, |expected|), gradients within 1e-4
of the array's largest |value|, and the biases that feed a train-mode BatchNorm (exactly zero
gradient in exact arithmetic, rounding residue in the file) are compared with an absolute
tolerance: the README finds 1e-5 ample between two runs of the reference, but our residue and the
file's are independent roundings of a zero (measured here up to 2.5e-5 apart in ikem_step), so
``BN_FED_ABS`` allows 5e-5: still far below any real gradient of those layers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

GOLDEN_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "golden" / "train"

REFERENCE_NAME = {"joint": "joint", "motion": "motion", "bone": "bone",
                  "acceleration": "acceleration", "axis": "rotation_axis",
                  "angular_velocity": "omega"}
"""Our modality name -> the name the goldens use in their keys."""
SIX = tuple(REFERENCE_NAME)
BN_FED_BIASES = ("tcn.2.bias", "residual.0.bias")
BN_FED_ABS = 5e-5

MAX_DIFF: dict[str, float] = {}
"""Group name (e.g. ``ikem_step stage2 grad``) -> largest |ours - expected| seen."""


def load_golden(name: str) -> dict[str, np.ndarray]:
    """Every array of ``<name>.npz``; skips (with the reason) when the golden folder is absent."""
    path = GOLDEN_DIR / f"{name}.npz"
    if not path.is_file():
        pytest.skip(f"golden training data not found: {path} (../shared/golden/train is "
                    "absent next to the repository)")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def group(golden: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries under ``prefix`` (e.g. ``weights/``) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in golden.items() if k.startswith(prefix)}


def tensors(arrays: dict[str, np.ndarray]) -> dict[str, Tensor]:
    return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}


def _record(where: str, diff: float) -> None:
    MAX_DIFF[where] = max(MAX_DIFF.get(where, 0.0), diff)


def assert_forward(where: str, got: Tensor | np.ndarray, want: np.ndarray) -> None:
    """Forward values: |ours - expected| <= 1e-5 x max(1, |expected|), element by element."""
    got = _numpy(got)
    assert got.shape == want.shape, f"{where}: shape {got.shape}, expected {want.shape}"
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    _record(where.split(":")[0], float(diff.max(initial=0.0)))
    bound = 1e-5 * np.maximum(1.0, np.abs(want.astype(np.float64)))
    worst = float((diff - bound).max(initial=-1.0))
    assert worst <= 0, f"{where}: max |diff| {diff.max():.3g} beyond 1e-5 x max(1, |expected|)"


def assert_exact(where: str, got: Tensor | np.ndarray, want: np.ndarray) -> None:
    got = _numpy(got)
    assert got.shape == want.shape and np.array_equal(got, want), f"{where}: differs"
    _record(where.split(":")[0], 0.0)


def assert_grad(where: str, name: str, got: Tensor | None, want: np.ndarray) -> None:
    """Gradients: within 1e-4 of the array's largest |value|; BN-fed biases ``BN_FED_ABS``."""
    assert got is not None, f"{where}: {name} got no gradient, the reference's has one"
    got_np = _numpy(got).astype(np.float64)
    want64 = want.astype(np.float64)
    diff = float(np.abs(got_np - want64).max(initial=0.0))
    if name.endswith(BN_FED_BIASES):
        _record(f"{where} (BN-fed biases, absolute)", diff)
        assert diff <= BN_FED_ABS, f"{where}: {name} max |diff| {diff:.3g} > {BN_FED_ABS}"
        return
    scale = float(np.abs(want64).max(initial=0.0))
    _record(f"{where} (relative to max |g|)", diff / scale if scale else diff)
    assert diff <= 1e-4 * scale + 1e-8, (
        f"{where}: {name} max |diff| {diff:.3g} beyond 1e-4 x {scale:.3g}")


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReplayDropout(nn.Module):
    """Dropout(0.5) with the reference's keep mask: x * mask * 2 (golden README, stgcn.npz)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask * 2.0


def replay_dropout(root: nn.Module, masks: dict[str, Tensor]) -> None:
    """Replace the dropout module at each path (ours) under ``root`` by its replayed mask."""
    for path, mask in masks.items():
        parent_path, _, index = path.rpartition(".")
        parent = root.get_submodule(parent_path)
        assert isinstance(parent[int(index)], nn.Dropout), f"{path} is not a dropout layer"
        parent[int(index)] = ReplayDropout(mask)


def no_grad_names(params: Iterable[tuple[str, nn.Parameter]]) -> set[str]:
    """Trainable parameters that got no gradient."""
    return {n for n, p in params if p.requires_grad and p.grad is None}


def print_max_diffs(title: str, prefix: str | tuple[str, ...]) -> None:
    """The per-group max |diff| of the groups named ``prefix ...`` (``pytest -s`` shows them)."""
    print(f"\n{title}: max |ours - reference| per group")
    for where, diff in sorted(MAX_DIFF.items()):
        if where.startswith(prefix):
            print(f"  {where}: {diff:.3g}")
