"""The t-SNE map (scikit-learn's, of the unit rows) and the two PNG commands."""

from __future__ import annotations

import numpy as np
import pandas as pd
from click.testing import CliRunner
from matplotlib.image import imread
from sklearn.manifold import trustworthiness

from skelkit.eval.cli import main
from skelkit.eval.plots import tsne_map


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_map_keeps_neighbourhoods_and_clusters(rng, make_clustered):
    """The map is scikit-learn's t-SNE of the unit rows: neighbourhoods of the cosine geometry
    survive (trustworthiness) and 1-NN in the map recovers the clusters."""
    x, labels = make_clustered(rng, 240, 24, 5, spread=1.5)
    result = tsne_map(x, n_iter=500)
    assert result.embedding.shape == (240, 2) and np.isfinite(result.kl_divergence)
    assert trustworthiness(_unit(x), result.embedding, n_neighbors=10) >= 0.93
    d = ((result.embedding[:, None] - result.embedding[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() >= 0.95
    # Scale-free: the rows are normalised first (cosine geometry), so scaling one changes nothing
    # (by a power of two, which the normalisation undoes exactly).
    scaled = x.copy()
    scaled[0] *= 8.0
    np.testing.assert_allclose(tsne_map(scaled, n_iter=500).embedding, result.embedding)


def test_small_samples_cap_the_perplexity(rng):
    assert tsne_map(rng.standard_normal((12, 4)), n_iter=250).embedding.shape == (12, 2)


def test_tsne_command_writes_png(tmp_path, separable_file):
    out = tmp_path / "figs" / "tsne.png"
    outcome = CliRunner().invoke(main, ["tsne", "--emb", str(separable_file), "--out", str(out),
                                        "--iterations", "250", "--max-points", "100"])
    assert outcome.exit_code == 0, outcome.output
    assert "100 test embeddings" in outcome.stdout
    image = imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # not a blank canvas


def _write_metrics(run_dir, with_knn: bool = True):
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = np.arange(1, 41)
    frame = pd.DataFrame({
        "epoch": (steps - 1) // 10,
        "step": steps,
        "loss": 5.0 * np.exp(-steps / 15.0),
        "loss_mutual": 1.0 * np.exp(-steps / 20.0),
        "lr": np.where(steps < 30, 0.01, 0.001),
    })
    if with_knn:
        knn = np.full(len(steps), np.nan)
        knn[9::10] = [0.2, 0.35, 0.41, 0.47]
        frame["knn_top1"] = knn
    frame.to_csv(run_dir / "metrics.csv", index=False)


def test_curves_command_writes_png_with_knn_panel(tmp_path):
    run = tmp_path / "runs" / "cmd-x"
    _write_metrics(run)
    out = tmp_path / "curves.png"
    outcome = CliRunner().invoke(main, ["curves", "--run", str(run), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert "loss" in outcome.stdout and "KNN" in outcome.stdout and "learning rate" in outcome.stdout
    assert imread(out)[..., :3].std() > 0.05


def test_curves_without_knn_columns(tmp_path):
    run = tmp_path / "run"
    _write_metrics(run, with_knn=False)
    outcome = CliRunner().invoke(main, ["curves", "--run", str(run), "--out",
                                        str(tmp_path / "c.png")])
    assert outcome.exit_code == 0, outcome.output
    assert "KNN" not in outcome.stdout


def test_curves_of_a_per_epoch_log_group_loss_terms(tmp_path):
    # As skeltrain writes it: one row per epoch, no step column, loss terms named prefix/part,
    # the KNN monitor's column only on some epochs.
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(
        "epoch,lr,loss,scl/joint,scl/motion,md/joint->motion,md/motion->joint,scl,md,"
        "samples_per_s,knn_top1\n"
        "1,0.05,24.2,5.1,4.5,2.0,0.9,14.8,9.3,28.5,\n"
        "2,0.05,20.2,4.1,4.0,1.5,0.8,12.1,8.1,40.2,0.15\n"
        "3,0.005,18.7,3.9,3.8,1.4,0.7,11.0,7.7,41.0,0.19\n"
    )
    out = tmp_path / "c.png"
    outcome = CliRunner().invoke(main, ["curves", "--run", str(run), "--out", str(out)])
    assert outcome.exit_code == 0, outcome.output
    panels = outcome.stdout.split("(", 1)[1].split(")", 1)[0].split(", ")
    assert panels == ["loss", "KNN", "learning rate", "scl", "md", "samples_per_s"]
    assert imread(out)[..., :3].std() > 0.05


def test_curves_bad_metrics_is_one_line_exit_2(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,lr\n0,1,0.1\n")
    outcome = CliRunner().invoke(main, ["curves", "--run", str(run), "--out",
                                        str(tmp_path / "c.png")])
    assert outcome.exit_code == 2
    assert outcome.stderr.count("\n") == 1 and "missing column(s) loss" in outcome.stderr
    outcome = CliRunner().invoke(main, ["curves", "--run", str(tmp_path / "nope"), "--out",
                                        str(tmp_path / "c.png")])
    assert outcome.exit_code == 2 and "no such run directory" in outcome.stderr
