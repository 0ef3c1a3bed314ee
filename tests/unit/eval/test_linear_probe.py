"""Linear probe: learns separable data, is deterministic per seed, fits on the train group only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from skelkit.eval.cli import main
from skelkit.eval.linear import (
    LinearProbeConfig,
    fit_linear_classifier,
    parse_milestones,
    predict_ranking,
    train_linear_probe,
)

FAST = LinearProbeConfig(epochs=15, lr=0.1, milestones=(10,), batch_size=64, seed=3)


def test_reaches_high_accuracy_on_linearly_separable_data(rng):
    # Labels from a random linear map: separable by construction, but not by a trivial margin.
    weights = rng.standard_normal((24, 8))
    x = rng.standard_normal((1400, 24)).astype(np.float32)
    y = np.argmax(x @ weights, axis=1)
    result = train_linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], FAST, num_classes=8)
    assert result.top1 >= 0.9
    assert result.top5 >= result.top1
    assert result.train_top1 >= 0.9
    # Chance is 1/8: a broken optimiser could not get close.
    assert result.final_loss < 0.5


def test_same_seed_same_result_other_seed_other_weights(rng, make_clustered):
    x, y = make_clustered(rng, 600, 16, 5, spread=2.5)
    first, _ = fit_linear_classifier(x, y, 5, FAST)
    torch.manual_seed(999)  # the global RNG must not matter
    second, _ = fit_linear_classifier(x, y, 5, FAST)
    torch.testing.assert_close(first.linear.weight, second.linear.weight, rtol=0, atol=0)
    torch.testing.assert_close(first.linear.bias, second.linear.bias, rtol=0, atol=0)
    other, _ = fit_linear_classifier(x, y, 5, LinearProbeConfig(**{**FAST.__dict__, "seed": 4}))
    assert not torch.equal(first.linear.weight, other.linear.weight)


def test_fits_on_train_group_only(rng, make_clustered):
    x, y = make_clustered(rng, 900, 16, 6, spread=3.0)
    train_x, train_y, test_x, test_y = x[:600], y[:600], x[600:], y[600:]
    reference = train_linear_probe(train_x, train_y, test_x, test_y, FAST, num_classes=6)
    # Scrambled test labels and extra test rows change the scores, never the fitted classifier.
    scrambled = train_linear_probe(train_x, train_y, test_x, (test_y + 1) % 6, FAST,
                                   num_classes=6)
    np.testing.assert_array_equal(scrambled.predictions, reference.predictions)
    assert scrambled.top1 < reference.top1
    extra = np.concatenate([test_x, rng.standard_normal((200, 16)).astype(np.float32) * 50])
    extended = train_linear_probe(train_x, train_y, extra, np.zeros(len(extra), dtype=np.int64),
                                  FAST, num_classes=6)
    np.testing.assert_array_equal(extended.predictions[: len(test_x)], reference.predictions)
    # And the probe itself equals one fitted without ever seeing a test array.
    alone, _ = fit_linear_classifier(train_x, train_y, 6, FAST)
    np.testing.assert_array_equal(
        predict_ranking(alone, test_x, top=1)[:, 0].numpy(), reference.predictions
    )


def test_step_schedule_drops_learning_rate_at_milestones(rng, sgd_learning_rates,
                                                       make_clustered):
    x, y = make_clustered(rng, 64, 4, 3)
    config = LinearProbeConfig(epochs=6, lr=0.5, milestones=(2, 4), batch_size=64)
    fit_linear_classifier(x, y, 3, config)
    assert sgd_learning_rates == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005, 0.005])


def test_parse_milestones():
    assert parse_milestones("50,70") == (50, 70)
    assert parse_milestones(" 80 ") == (80,)
    assert parse_milestones("") == ()
    with pytest.raises(ValueError):
        parse_milestones("50,x")
    with pytest.raises(ValueError):
        LinearProbeConfig(milestones=(70, 50))


def test_cli_json_deterministic(separable_file):
    args = ["linear", "--emb", str(separable_file), "--epochs", "8", "--milestones", "5",
            "--batch-size", "32", "--seed", "7", "--json"]
    first = CliRunner().invoke(main, args)
    second = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == json.loads(second.stdout)
    summary = json.loads(first.stdout)
    assert summary["top1"] >= 0.95 and summary["n_train"] == 300 and summary["n_test"] == 120


def test_cli_rejects_bad_milestones(separable_file):
    outcome = CliRunner().invoke(main, ["linear", "--emb", str(separable_file),
                                        "--milestones", "70,50"])
    assert outcome.exit_code == 2
    assert "milestones" in outcome.stderr and "Traceback" not in outcome.output
