"""What every loss shares: full precision under autocast, and the shape check of embeddings.

Embeddings are L2-normalised rows (N, D); a memory bank is (K, D) with one key per row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import torch
from torch import Tensor

_F = TypeVar("_F", bound=Callable[..., Any])


def full_precision(fn: _F) -> _F:
    """Run ``fn`` in float32 with autocast off: fp16 similarities would blur the top-K anchors
    and the 1/tau-scaled logits."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)
    return cast(_F, wrapper)


def check_pair(a: Tensor, b: Tensor, bank: Tensor) -> None:
    """Two equal (N, D) embeddings and a (K, D) bank, or a one-line ValueError."""
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"embeddings must be two equal (N, D) tensors, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    if bank.ndim != 2 or bank.shape[1] != a.shape[1]:
        raise ValueError(f"bank must be (K, {a.shape[1]}), got {tuple(bank.shape)}")
