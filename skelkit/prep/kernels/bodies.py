"""Body selection: keep the most active bodies of a recording (docs/design.md §3.1)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _slot_energy(slot: np.ndarray) -> float:
    """Sum over x, y, z of the std of that coordinate over all joints of the non-zero frames.

    Two-pass float64 mean/variance like numpy's ``std``; an empty slot has energy 0.
    """
    frames, joints, _ = slot.shape
    present = np.zeros(frames, dtype=np.bool_)
    count = 0
    for t in range(frames):
        for v in range(joints):
            if slot[t, v, 0] != 0 or slot[t, v, 1] != 0 or slot[t, v, 2] != 0:
                present[t] = True
                break
        if present[t]:
            count += 1
    if count == 0:
        return 0.0
    energy = 0.0
    samples = count * joints
    for c in range(3):
        total = 0.0
        for t in range(frames):
            if present[t]:
                for v in range(joints):
                    total += slot[t, v, c]
        mean = total / samples
        squares = 0.0
        for t in range(frames):
            if present[t]:
                for v in range(joints):
                    d = slot[t, v, c] - mean
                    squares += d * d
        energy += np.sqrt(squares / samples)
    return energy


@numba.njit(cache=True, nogil=True)
def _select_kernel(slots: np.ndarray, keep: int) -> tuple[np.ndarray, int]:
    num_slots, frames, joints, _ = slots.shape
    energy = np.empty(num_slots, dtype=np.float64)
    for m in range(num_slots):
        energy[m] = _slot_energy(slots[m])
    # The reference takes argsort()[::-1] of the energies: descending, and among equal
    # energies the later slot first (numpy's sort is stable for so few elements).
    order = np.empty(num_slots, dtype=np.int64)
    taken = np.zeros(num_slots, dtype=np.bool_)
    for k in range(num_slots):
        best = -1
        for m in range(num_slots - 1, -1, -1):
            if not taken[m] and (best < 0 or energy[m] > energy[best]):
                best = m
        order[k] = best
        taken[best] = True
    out = np.zeros((keep, frames, joints, 3), dtype=np.float32)
    non_empty = 0
    for k in range(min(keep, num_slots)):
        src = slots[order[k]]
        any_value = False
        for t in range(frames):
            for v in range(joints):
                for c in range(3):
                    out[k, t, v, c] = src[t, v, c]
                    if src[t, v, c] != 0:
                        any_value = True
        if any_value:
            non_empty += 1
    return out, non_empty


def select_bodies(slots: np.ndarray, keep: int = 2) -> tuple[np.ndarray, int]:
    """(slots, T, V, 3) -> (keep, T, V, 3) float32 ordered by energy, and how many are non-empty.

    A slot that is never filled has energy 0; a missing second body stays zeros.
    """
    if slots.ndim != 4 or slots.shape[-1] != 3:
        raise ValueError(f"slots must be (S, T, V, 3), got {slots.shape}")
    out, non_empty = _select_kernel(np.ascontiguousarray(slots, dtype=np.float32), int(keep))
    return out, int(non_empty)
