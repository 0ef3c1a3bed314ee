"""Per-sample random draws as counter-based uniform streams.

A training sample's augmentation draws come from its own stream of uniforms in [0, 1), a pure
function of (seed, epoch, store row, position in the stream): SplitMix64 (Steele, Lea and Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014) of the chained key, 53 bits per
uniform. A sample's views therefore depend on nothing but that key (not on the worker, the batch
or the number of ranks: ``--resume`` is exact), and a whole batch's streams are computed at
once with a few vectorised integer operations, where seeding one ``numpy.random.Generator`` per
sample and calling it once per scalar draw cost more than the augmentation's arithmetic.

:class:`UniformStream` reads one sample's stream through the subset of the
``numpy.random.Generator`` interface that the augmentations call, so an augmentation's ``draw``
consumes it exactly as it consumes a generator (or the golden replay's recorded draws).
"""

from __future__ import annotations

import numpy as np

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_UNIT = 2.0 ** -53


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function of state z (uint64 arrays wrap modulo 2^64)."""
    z = z + _GAMMA
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _u64(value: int | np.ndarray) -> np.ndarray:
    # At least 1-d: numpy wraps uint64 arrays silently but warns on overflowing scalars.
    return np.atleast_1d(np.asarray(value, np.int64).astype(np.uint64))


def sample_keys(seed: int, epochs: int | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One 64-bit key per sample, chained from (seed, epoch, store row); ``epochs`` is one
    epoch for all rows or one per row."""
    key = _splitmix64(_splitmix64(_u64(seed)) ^ _u64(epochs))
    return _splitmix64(key ^ _u64(np.asarray(rows, np.int64)))


def uniforms(seed: int, epochs: int | np.ndarray, rows: np.ndarray | list[int],
             count: int) -> np.ndarray:
    """(len(rows), count) float64 uniforms in [0, 1): row i is the stream of store row rows[i]
    in its epoch (``epochs``: one for all, or one per row)."""
    keys = sample_keys(seed, epochs, np.asarray(rows, np.int64).reshape(-1))
    counters = np.arange(1, count + 1, dtype=np.uint64) * _GAMMA
    bits = _splitmix64(keys[:, None] ^ counters[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * _UNIT


class StreamExhausted(RuntimeError):
    """An augmentation drew more values than the width it declares."""


class UniformStream:
    """One sample's uniforms, read in order through a ``numpy.random.Generator``-like interface.

    ``random()`` is the next uniform u; ``uniform(a, b)`` is a + (b - a) u; ``integers(lo, hi)`` is
    lo + floor(u (hi - lo)) (capped at hi - 1); ``choice(n, k, replace=False)`` takes the next n
    uniforms and returns the indices of the k smallest (a uniform random k-subset in random
    order). ``block(n)`` hands the next n values to a sub-stream (an augmentation's own block,
    so that its branches may draw different counts without moving the next one's draws)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = np.asarray(values, np.float64)
        self.at = 0

    def _take(self, n: int) -> np.ndarray:
        if self.at + n > len(self.values):
            raise StreamExhausted(f"drew {self.at + n} values from a stream of "
                                  f"{len(self.values)}")
        out = self.values[self.at:self.at + n]
        self.at += n
        return out

    def random(self) -> float:
        return float(self._take(1)[0])

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        return low + (high - low) * self.random()

    def integers(self, low: int, high: int) -> int:
        span = int(high) - int(low)
        if span <= 0:
            raise ValueError(f"integers({low}, {high}): empty range")
        return int(low) + min(int(self.random() * span), span - 1)

    def choice(self, n: int, size: int, replace: bool = True) -> np.ndarray:
        if replace or size > n:
            raise ValueError("a uniform stream draws only subsets (replace=False, size <= n)")
        return np.argsort(self._take(int(n)), kind="stable")[:size]

    def block(self, n: int) -> UniformStream:
        return UniformStream(self._take(int(n)))


def uniform_between(low: float, high: float, u: np.ndarray) -> np.ndarray:
    """``UniformStream.uniform`` of every element of ``u``."""
    return low + (high - low) * u


def integers_below(low: np.ndarray, high: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``UniformStream.integers`` of every element of ``u`` (int64)."""
    span = np.asarray(high, np.int64) - np.asarray(low, np.int64)
    if np.any(span <= 0):
        raise ValueError("integers: empty range")
    return np.asarray(low, np.int64) + np.minimum((u * span).astype(np.int64), span - 1)


def subsets(u: np.ndarray, size: int) -> np.ndarray:
    """``UniformStream.choice(n, size, replace=False)`` of every row of ``u`` (rows, n)."""
    return np.argsort(u, axis=1, kind="stable")[:, :size]
