"""Checkpoints of plain tensors and types only, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from skelkit.errors import InputError
from skelkit.store.durable import write_atomically

CHECKPOINT_FORMAT = "skelkit-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint is missing or unreadable; the message is one line."""


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states (torch, CUDA, numpy, python) as tensors and ints."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, _ = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_pos": int(pos),
        "numpy_has_gauss": int(has_gauss),
        "numpy_cached_gaussian": float(cached),
        "python_version": int(py_version),
        "python_state": torch.tensor(py_state, dtype=torch.int64),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    del kind
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state((
        "MT19937", state["numpy_keys"].numpy().astype(np.uint32), int(state["numpy_pos"]),
        int(state["numpy_has_gauss"]), float(state["numpy_cached_gaussian"]),
    ))
    py_state = tuple(int(v) for v in state["python_state"].tolist())
    random.setstate((int(state["python_version"]), py_state, None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def save_checkpoint(path: str | Path, *, method: str, epoch: int, model: dict[str, Any],
                    optimizer: dict[str, Any] | None, scheduler: dict[str, Any] | None,
                    scaler: dict[str, Any] | None, config_text: str,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename): a crash never leaves a half-written checkpoint,
    and a full disk is one :class:`~skelkit.store.durable.DiskFullError` line.

    ``epoch`` counts completed epochs (0 for the random initialisation).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "method": method,
        "epoch": int(epoch),
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "rng": capture_rng_state(),
        "config": config_text,
        "extra": extra or {},
    }
    # Serialised in memory, then written by Python: a full disk is an OSError with its errno
    # (torch's own file writer reports only "file write failed"), turned into one line with
    # the temporary file removed.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomically(path, buffer.getbuffer(), then=f"--resume {path.parent.parent}",
                            point="write-checkpoint")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a skelkit checkpoint")
    return payload
