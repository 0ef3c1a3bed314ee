"""The probe works on any features: train-side standardisation and the near-constant warning
(issue 13 item 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skelkit.eval.cli import main
from skelkit.eval.features import NEAR_CONSTANT_RATIO, feature_stats
from skelkit.eval.linear import LinearProbe, LinearProbeConfig, train_linear_probe

CLASSES = 20


def collapsed_features(seed: int, *, n_train: int = 600, n_test: int = 600, dim: int = 256,
                       dead: int = 80, spread: float = 2e-4, signal: float = 0.22
                       ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The shape of the demo store's one-epoch embeddings (issue 13; skeletonclr.h5 measured:
    600 train / 596 test, 256 dims, 20 classes, |mean| about 0.09, per-dimension spread about
    2e-4, 89 dimensions always zero): a per-dimension offset of about 0.1, class structure of
    amplitude ``spread``, and ``dead`` dimensions at exactly zero."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLASSES, dim))
    offset = np.abs(rng.normal(0.1, 0.05, dim))
    label = rng.integers(0, CLASSES, n_train + n_test)
    x = offset + spread * (signal * centres[label] + rng.standard_normal((len(label), dim)))
    x[:, :dead] = 0.0
    x = x.astype(np.float32)
    return (x[:n_train], label[:n_train]), (x[n_train:], label[n_train:])


def sklearn_standardised_logistic(train, test) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(model.fit(*train).score(*test))


@pytest.mark.parametrize("seed", [0, 1])
def test_collapsed_features_no_longer_at_chance(seed):
    train, test = collapsed_features(seed)
    plain = train_linear_probe(*train, *test, LinearProbeConfig(standardize=False),
                               num_classes=CLASSES)
    # The failure of issue 13 is re-created: plain SGD on these features sits at chance (5 %).
    assert plain.top1 <= 0.10
    fixed = train_linear_probe(*train, *test, LinearProbeConfig(), num_classes=CLASSES)
    reference = sklearn_standardised_logistic(train, test)
    assert reference >= 0.35  # the features do separate the classes
    assert fixed.top1 >= reference - 0.05
    assert fixed.top1 >= 7 / CLASSES
    assert fixed.feature_check["near_constant"] is True
    assert fixed.feature_check["constant_dims"] == 80


def test_offset_and_scale_do_not_change_the_probe(tmp_path, rng, make_clustered, make_split_file):
    x, y = make_clustered(rng, 900, 24, 6, spread=4.0)
    offset = rng.uniform(0.5, 1.0, size=24).astype(np.float32)
    shifted = (offset + 1e-4 * x).astype(np.float32)
    plain = make_split_file(tmp_path / "x.h5", (x[:600], y[:600]), (x[600:], y[600:]))
    tiny = make_split_file(tmp_path / "c.h5", (shifted[:600], y[:600]),
                           (shifted[600:], y[600:]))
    runner = CliRunner()
    args = ["--epochs", "20", "--milestones", "15", "--batch-size", "64", "--json"]
    first = runner.invoke(main, ["linear", "--emb", str(plain), *args])
    second = runner.invoke(main, ["linear", "--emb", str(tiny), *args])
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["top1"] > 0.5  # not a trivially equal pair of chance scores
    # float32 keeps about 3 significant digits of the 1e-4 signal on an offset of ~0.75.
    assert b["top1"] == pytest.approx(a["top1"], abs=0.01)
    assert b["near_constant"] is True and a["near_constant"] is False
    assert "near-constant" in second.stderr and "near-constant" not in first.stderr
    # Unstandardised (the old probe) the shifted file falls to chance: 1/6.
    old = runner.invoke(main, ["linear", "--emb", str(tiny), "--no-standardize", *args])
    assert json.loads(old.stdout)["top1"] < 0.3
    assert "expect chance-level accuracy" in old.stderr


def test_standardisation_is_the_train_side_z_score(rng):
    x = (rng.standard_normal((50, 5)) * [1, 2, 3, 4, 5] + [10, -3, 0, 1e3, 7]).astype(np.float32)
    x[:, 2] = 0.0  # constant: mapped to 0, never divided by its zero spread
    stats = feature_stats(x)
    probe = LinearProbe(5, 3, torch.Generator().manual_seed(0), stats=stats)
    with torch.no_grad():
        probe.linear.weight.copy_(torch.eye(3, 5))
        probe.linear.bias.zero_()
        out = probe(torch.as_tensor(x)).numpy()
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(0)) / np.where(x64.std(0) > 0, x64.std(0), 1.0)
    expected[:, 2] = 0.0
    np.testing.assert_allclose(out, expected[:, :3], atol=1e-4)


def test_feature_stats_exact_under_a_large_offset(rng):
    x = (1e3 + 1e-2 * rng.standard_normal((3000, 4))).astype(np.float32)
    stats = feature_stats(x, chunk=256)  # several chunks
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats.mean, x64.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x64.std(0), rtol=1e-9)
    assert stats.spread_ratio == pytest.approx(1e-5, rel=0.1)
    assert stats.near_constant and stats.spread_ratio < NEAR_CONSTANT_RATIO


def test_healthy_features_raise_no_warning(rng, make_clustered):
    x, _ = make_clustered(rng, 300, 16, 4)
    stats = feature_stats(x)
    assert not stats.near_constant and stats.warning("x.h5") is None
    assert stats.summary()["constant_dims"] == 0
