"""Train-side feature statistics: the probe's standardisation and the near-constant check (issue 13).

Frozen features of a briefly trained encoder can sit on a large common offset with a tiny spread
(measured on the demo store after one epoch: spreads about 1e-4 of the offset). A linear layer
trained by plain SGD on such inputs barely moves its logits apart and stays at chance, although
the features separate the classes well (a standardised logistic regression reaches 50-65 % on the
same files). Standardising every dimension with the train side's mean and standard deviation
removes the offset and the scale; nothing of the test side is looked at.

Statistics are accumulated in float64 over row chunks, two passes (mean, then squared deviations),
so they stay exact for offsets far larger than the spread and memory stays O(chunk x D).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Below this ratio of spread to magnitude the features are "near-constant" and a warning is due.
NEAR_CONSTANT_RATIO = 1e-2
# A dimension whose spread is below this fraction of its magnitude carries only float32 rounding
# noise (float32 resolves about 1.2e-7 of a value): it is treated as constant and zeroed rather
# than blown up to unit variance.
CONSTANT_DIM_RATIO = 1e-6


@dataclass(frozen=True)
class FeatureStats:
    """Per-dimension mean and standard deviation (ddof = 0) of the train features."""

    mean: np.ndarray
    std: np.ndarray
    n: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def constant(self) -> np.ndarray:
        """(D,) bool: dimensions with no spread above float32 rounding of their value."""
        return self.std <= CONSTANT_DIM_RATIO * np.maximum(np.abs(self.mean), 1e-30)

    @property
    def spread_ratio(self) -> float:
        """RMS standard deviation over RMS magnitude (sqrt(mean^2 + var)), in [0, 1]."""
        power = float(np.sum(self.mean**2 + self.std**2))
        if power == 0.0:
            return 0.0
        return float(np.sqrt(np.sum(self.std**2) / power))

    @property
    def near_constant(self) -> bool:
        return self.spread_ratio < NEAR_CONSTANT_RATIO or bool(self.constant.all())

    def shift_and_inverse_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """(shift, inv_scale) float32 with z = (x - shift) * inv_scale; constant dims map to 0."""
        inv = np.zeros_like(self.std)
        live = ~self.constant
        inv[live] = 1.0 / self.std[live]
        return self.mean.astype(np.float32), inv.astype(np.float32)

    def summary(self) -> dict[str, float | int | bool]:
        return {
            "feature_spread_ratio": self.spread_ratio,
            "constant_dims": int(self.constant.sum()),
            "dims": self.dim,
            "near_constant": self.near_constant,
        }

    def warning(self, what: str) -> str | None:
        """One line for stderr when the features are near-constant, else None."""
        if not self.near_constant:
            return None
        constant = int(self.constant.sum())
        extra = f"; {constant} of {self.dim} dimensions constant" if constant else ""
        return (f"{what}: train features are near-constant (spread {self.spread_ratio:.1e} of "
                f"their magnitude{extra}); only standardised probes separate them, and the "
                f"encoder may be close to collapse")


def feature_stats(features: np.ndarray, chunk: int = 4096) -> FeatureStats:
    """Mean and standard deviation of (N, D) features, in float64, over row chunks."""
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {x.shape}")
    n = x.shape[0]
    total = np.zeros(x.shape[1], np.float64)
    for start in range(0, n, chunk):
        total += x[start:start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(x.shape[1], np.float64)
    for start in range(0, n, chunk):
        deviation = x[start:start + chunk].astype(np.float64) - mean
        squares += np.einsum("nd,nd->d", deviation, deviation)
    return FeatureStats(mean=mean, std=np.sqrt(squares / n), n=n)
