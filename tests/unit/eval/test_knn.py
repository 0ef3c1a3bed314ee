"""KNN on cosine similarity: equal to scikit-learn at k = 1, weighted voting, chunk invariance."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.neighbors import KNeighborsClassifier

from skelkit.eval.cli import main
from skelkit.knn import knn_class_ranking, knn_evaluate


def _random_problem(rng: np.random.Generator, n_train: int = 400, n_test: int = 250,
                    dim: int = 12, classes: int = 9):
    train = rng.standard_normal((n_train, dim)).astype(np.float32)
    test = rng.standard_normal((n_test, dim)).astype(np.float32)
    return (train, rng.integers(0, classes, n_train), test, rng.integers(0, classes, n_test),
            classes)


@pytest.mark.parametrize("chunks", [(1024, 16384), (37, 53), (16, 7)])
def test_k1_matches_sklearn_predictions(rng, chunks):
    train, y_train, test, y_test, _ = _random_problem(rng)
    reference = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(train, y_train)
    expected = reference.predict(test)
    test_chunk, train_chunk = chunks
    result = knn_evaluate(train, y_train, test, y_test, k=1, test_chunk=test_chunk,
                          train_chunk=train_chunk)
    np.testing.assert_array_equal(result.predictions, expected)
    assert result.top1 == pytest.approx(float((expected == y_test).mean()))


def _direct_weighted_knn(train, y_train, test, k, temperature, classes):
    """The obvious implementation: full similarity matrix, argsort, weighted class votes."""
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    sim = b.astype(np.float64) @ a.T.astype(np.float64)
    predictions = []
    for row in sim:
        nearest = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(classes)
        for j in nearest:
            votes[y_train[j]] += np.exp(row[j] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


@pytest.mark.parametrize("k,temperature", [(20, 0.1), (5, 0.07), (200, 0.5)])
def test_weighted_vote_matches_direct_implementation(rng, k, temperature):
    train, y_train, test, y_test, classes = _random_problem(rng)
    expected = _direct_weighted_knn(train, y_train, test, k, temperature, classes)
    result = knn_evaluate(train, y_train, test, y_test, k=k, weighted=True,
                          temperature=temperature, num_classes=classes, train_chunk=64,
                          test_chunk=100)
    np.testing.assert_array_equal(result.predictions, expected)


def test_unweighted_majority_vote_and_ties(rng):
    # Train points on the unit circle; the query's 3 nearest are classes 2, 1, 1: majority 1.
    angles = np.array([0.0, 0.1, -0.15, 0.2, 3.0])
    train = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    y_train = np.array([2, 1, 1, 0, 3])
    test = np.array([[1.0, 0.0]], dtype=np.float32)
    ranking = knn_class_ranking(train, y_train, test, num_classes=4, k=3)
    assert ranking[0].tolist() == [1, 2, 0, 3]
    # k = 1: class of the nearest point, then the rest by their nearest member.
    ranking = knn_class_ranking(train, y_train, test, num_classes=4, k=1)
    assert ranking[0].tolist() == [2, 1, 0, 3]
    # A 1-1 tie between classes 2 and 1 (k = 2) goes to the class with the nearer member.
    ranking = knn_class_ranking(train, y_train, test, num_classes=4, k=2)
    assert ranking[0, 0].item() == 2


def test_top5_counts_true_class_among_five_best(rng):
    train, y_train, test, y_test, classes = _random_problem(rng, classes=30)
    result = knn_evaluate(train, y_train, test, y_test, k=1, num_classes=classes)
    # Direct: rank classes by the similarity of their nearest train sample.
    a = train / np.linalg.norm(train, axis=1, keepdims=True)
    b = test / np.linalg.norm(test, axis=1, keepdims=True)
    sim = b @ a.T
    best = np.full((len(test), classes), -2.0)
    for c in range(classes):
        best[:, c] = sim[:, y_train == c].max(axis=1)
    top5 = np.argsort(-best, axis=1)[:, :5]
    expected = float(np.mean([y in row for y, row in zip(y_test, top5)]))
    assert result.top5 == pytest.approx(expected)
    assert result.top1 <= result.top5


def test_cli_json_reports_fractions(separable_file):
    outcome = CliRunner().invoke(main, ["knn", "--emb", str(separable_file), "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert {"top1", "top5", "k", "n_train", "n_test"} <= set(summary)
    assert summary["k"] == 1 and summary["n_train"] == 300 and summary["n_test"] == 120
    assert 0.95 <= summary["top1"] <= summary["top5"] <= 1.0


def test_cli_weighted_text_output(separable_file):
    outcome = CliRunner().invoke(
        main, ["knn", "--emb", str(separable_file), "--k", "20", "--weighted",
               "--temperature", "0.1"])
    assert outcome.exit_code == 0, outcome.output
    assert "k=20" in outcome.stdout and "top-1" in outcome.stdout and "top-5" in outcome.stdout
