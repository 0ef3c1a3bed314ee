"""Exact t-SNE in numpy (van der Maaten and Hinton, 2008), for a few thousand points.

O(N^2) memory and time per iteration, which is why ``skeleval tsne`` subsamples to
``max_points``. Rows are L2-normalised first, matching the cosine geometry every other protocol
here uses. The optimiser follows the paper's recipe: perplexity-calibrated Gaussian affinities
(Eq. 1, symmetrised), Student-t similarities in 2-D (Eq. 4), the KL gradient (Eq. 5), early
exaggeration, momentum and per-parameter gains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_EPS = 1e-12


@dataclass(frozen=True)
class TsneResult:
    embedding: np.ndarray
    """(N, 2) float64 map coordinates."""
    kl_divergence: float


def joint_probabilities(x: np.ndarray, perplexity: float, tol: float = 1e-5) -> np.ndarray:
    """Symmetric P (N, N), sum 1: conditional Gaussians calibrated per row to ``perplexity``."""
    n = x.shape[0]
    if n < 2:
        raise ValueError("t-SNE needs at least 2 points")
    perplexity = min(perplexity, (n - 1) / 3.0)
    distances = _squared_distances(x)
    conditional = _calibrated_conditionals(distances, perplexity, tol)
    joint = (conditional + conditional.T) / (2.0 * n)
    return np.maximum(joint, _EPS)


def row_perplexities(conditional: np.ndarray) -> np.ndarray:
    """2 ** entropy (bits) of each row of a conditional distribution (diagnostic, for tests)."""
    p = np.clip(conditional, _EPS, None)
    return 2.0 ** (-(conditional * np.log2(p)).sum(axis=1))


def tsne(
    x: np.ndarray,
    *,
    perplexity: float = 30.0,
    n_iter: int = 1000,
    early_exaggeration: float = 12.0,
    exaggeration_iters: int = 250,
    learning_rate: float | None = None,
    seed: int = 0,
) -> TsneResult:
    """Embed the rows of ``x`` (N, D) in 2-D."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
    n = x.shape[0]
    p = joint_probabilities(x, perplexity)
    if learning_rate is None:
        # The "auto" rate of Belkina et al. (2019): N / exaggeration / 4, at least 50.
        learning_rate = max(n / early_exaggeration / 4.0, 50.0)
    # float32 in the loop halves the time of the N x N passes; P's smallest entries (1e-12)
    # are still far above float32's range limit.
    p = p.astype(np.float32)
    y = _pca_init(x, seed).astype(np.float32)
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    for iteration in range(n_iter):
        exaggerating = iteration < exaggeration_iters
        momentum = 0.5 if exaggerating else 0.8
        scale = early_exaggeration if exaggerating else 1.0
        grad, _ = _kl_gradient(scale * p, y)
        same_sign = np.sign(grad) == np.sign(update)
        gains = np.where(same_sign, gains * 0.8, gains + 0.2)
        np.clip(gains, 0.01, None, out=gains)
        update = momentum * update - learning_rate * gains * grad
        y = y + update
        y -= y.mean(axis=0)
    y = y.astype(np.float64)
    _, kl = _kl_gradient(p.astype(np.float64), y, with_kl=True)
    return TsneResult(embedding=y, kl_divergence=kl)


def _squared_distances(x: np.ndarray) -> np.ndarray:
    sq = (x * x).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def _calibrated_conditionals(distances: np.ndarray, perplexity: float, tol: float) -> np.ndarray:
    """Bisection on each row's precision beta so that H(P_i) = log(perplexity), all rows at once."""
    n = distances.shape[0]
    target = np.log(perplexity)
    beta = np.ones(n)
    low = np.full(n, -np.inf)
    high = np.full(n, np.inf)
    off_diagonal = ~np.eye(n, dtype=bool)
    # Subtracting each row's smallest off-diagonal distance keeps exp() from underflowing to 0.
    shifted = distances - np.where(off_diagonal, distances, np.inf).min(axis=1, keepdims=True)
    p = np.zeros_like(distances)
    for _ in range(200):
        p = np.exp(-shifted * beta[:, None]) * off_diagonal
        total = np.maximum(p.sum(axis=1), _EPS)
        entropy = np.log(total) + beta * (shifted * p).sum(axis=1) / total
        p /= total[:, None]
        error = entropy - target
        if np.all(np.abs(error) < tol):
            break
        too_flat = error > 0  # entropy too high: raise beta
        low = np.where(too_flat, beta, low)
        high = np.where(too_flat, high, beta)
        beta = np.where(
            too_flat,
            np.where(np.isinf(high), beta * 2.0, (beta + high) / 2.0),
            np.where(np.isinf(low), beta / 2.0, (beta + low) / 2.0),
        )
    return p


def _kl_gradient(p: np.ndarray, y: np.ndarray, with_kl: bool = False) -> tuple[np.ndarray, float]:
    """Gradient of KL(P || Q) w.r.t. the map points (Eq. 5) and the divergence itself."""
    # In place on one N x N buffer: this loop is the whole cost of t-SNE.
    numerator = _squared_distances(y)
    numerator += 1.0
    np.reciprocal(numerator, out=numerator)
    np.fill_diagonal(numerator, 0.0)
    total = numerator.sum()
    weighted = p - numerator / total
    weighted *= numerator
    grad = 4.0 * (weighted.sum(axis=1, keepdims=True) * y - weighted @ y)
    if not with_kl:
        return grad, math.nan
    q = np.maximum(numerator / total, _EPS)
    return grad, float((p * np.log(p / q)).sum())

def _pca_init(x: np.ndarray, seed: int) -> np.ndarray:
    """First two principal components, scaled to std 1e-4 (a deterministic, structure-aware start)."""
    centred = x - x.mean(axis=0)
    if centred.shape[1] >= 2 and np.any(centred):
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        y = centred @ vt[:2].T
    else:
        y = np.random.default_rng(seed).standard_normal((x.shape[0], 2))
    if y.shape[1] < 2:
        y = np.hstack([y, np.zeros((y.shape[0], 2 - y.shape[1]))])
    std = y[:, 0].std()
    return y / (std if std > 0 else 1.0) * 1e-4
