"""Fast checks of the learning harness's own measures."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.learning.harness import effective_rank, leading_direction


def test_effective_rank_counts_the_directions_the_samples_vary_along():
    rng = np.random.default_rng(0)
    along_one = rng.normal(size=(500, 1)) * rng.normal(size=(1, 32)) + 5.0  # offset: centred away
    assert effective_rank(along_one) == pytest.approx(1.0, abs=1e-6)
    rows = np.arange(400)  # +-e_0 .. +-e_3 in turn: mean 0, four equal orthogonal directions
    even_in_four = np.zeros((400, 32))
    even_in_four[rows, rows % 4] = np.where((rows // 4) % 2 == 0, 1.0, -1.0)
    assert effective_rank(even_in_four) == pytest.approx(4.0, rel=1e-6)
    # Two directions with variances 9:1: exp(entropy of (0.9, 0.1)) = 1.384...
    two = np.concatenate([rng.choice([-3.0, 3.0], size=(1000, 1)),
                          rng.choice([-1.0, 1.0], size=(1000, 1))], axis=1)
    two -= two.mean(axis=0)
    share = (two**2).sum(axis=0) / (two**2).sum()
    assert effective_rank(two) == pytest.approx(float(np.exp(-(share * np.log(share)).sum())),
                                                rel=1e-2)
    assert 1.3 < effective_rank(two) < 1.45


def test_leading_direction_finds_the_dominant_axis_and_its_covariate():
    rng = np.random.default_rng(0)
    flag = (rng.random(400) < 0.2).astype(float)  # e.g. "a second body is present"
    spread = np.column_stack([10.0 * flag, rng.normal(size=(400, 3))])
    share, correlation = leading_direction(spread @ np.linalg.qr(rng.normal(size=(4, 4)))[0],
                                           flag)
    assert share > 0.75 and correlation > 0.99
    share, correlation = leading_direction(rng.normal(size=(400, 4)), flag)
    assert share < 0.4 and correlation < 0.2
