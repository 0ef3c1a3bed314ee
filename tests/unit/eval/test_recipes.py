"""The authors' probe protocols as named recipes: pinned settings and short end-to-end runs
(issue 13 item 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from skelkit.eval.cli import main
from skelkit.eval.linear import (
    BEST_LABEL,
    Evaluation,
    LinearProbe,
    LinearProbeConfig,
    LinearProbeResult,
    fit_linear_classifier,
    memory_batches,
)
from skelkit.eval.recipes import RECIPES, resolve_recipe, with_overrides
from skelkit.eval.run_features import cropped_train_batches, open_frozen_encoder, probe_run


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "eval.jsonl").read_text().splitlines()]


# --- pinned settings ------------------------------------------------------------------------


def test_cmd_recipe_is_cmds_classification_script():
    recipe = RECIPES["cmd"]
    probe = recipe.probe
    # action_classification_cmd.py + script_action_classification_cmd.sh
    assert (probe.epochs, probe.lr, probe.milestones, probe.gamma) == (80, 0.1, (50, 70), 0.1)
    assert (probe.batch_size, probe.momentum, probe.nesterov, probe.weight_decay) == (
        64, 0.9, False, 0.0)
    assert probe.init_std == 0.01 and not probe.drop_last and not probe.standardize
    assert probe.eval_every == 5 and recipe.reports_best
    # options_classification.py: l_ratio [0.5, 1.0] for train, [0.95] for test
    assert recipe.train_crop == (0.5, 1.0) and recipe.test_centre_crop == 0.95
    assert recipe.needs_run and recipe.knn_k == 1 and recipe.min_crop_frames is None
    assert "action_classification_cmd.py" in recipe.source


def test_i2md_recipe_is_cmds_protocol():
    assert RECIPES["i2md"].probe == RECIPES["cmd"].probe
    assert RECIPES["i2md"].train_crop == (0.5, 1.0)
    assert "I²MD §4.3.1" in RECIPES["i2md"].source


@pytest.mark.parametrize("name", ["crossclr", "ikem"])
def test_crossclr_and_ikem_recipes_are_the_published_linear_eval_configs(name):
    recipe = RECIPES[name]
    probe = recipe.probe
    # linear_eval_*.yaml: base_lr 3., step [80], num_epoch 100, batch_size 128, nesterov False,
    # weight_decay 0.0, eval_interval 5; weights_init: Linear N(0, 0.02), zero bias;
    # DataLoader(train) drop_last=True; no augmentation.
    assert (probe.epochs, probe.lr, probe.milestones, probe.batch_size) == (100, 3.0, (80,), 128)
    assert (probe.momentum, probe.nesterov, probe.weight_decay) == (0.9, False, 0.0)
    assert probe.init_std == 0.02 and probe.drop_last and probe.eval_every == 5
    assert not probe.standardize and recipe.train_crop is None and not recipe.needs_run


def test_default_recipe_standardises_and_reports_no_best():
    probe = RECIPES["default"].probe
    assert (probe.epochs, probe.lr, probe.milestones, probe.batch_size) == (80, 0.1, (50, 70), 256)
    assert probe.standardize and probe.eval_every == 0 and probe.init_std is None


@pytest.mark.parametrize(("method", "expected"), [
    ("cmd", "cmd"), ("i2md", "i2md"), ("crossclr", "crossclr"), ("skeletonclr", "crossclr"),
    ("ikem", "ikem"), ("ikem-student", "ikem"), ("raw-joints", "default"), ("", "default")])
def test_auto_picks_the_authors_recipe(method, expected):
    assert resolve_recipe("auto", method).name == expected
    with pytest.raises(ValueError, match="unknown recipe"):
        resolve_recipe("moco", method)


def test_overrides_are_listed_as_deviations():
    recipe, changed = with_overrides(RECIPES["cmd"], epochs=80, lr=0.5, batch_size=None)
    assert changed == {"lr": 0.5} and recipe.probe.lr == 0.5 and recipe.probe.epochs == 80
    assert RECIPES["cmd"].probe.lr == 0.1  # the registered recipe is untouched


def test_crossclr_schedule_drops_after_epoch_80_and_evaluates_every_5(sgd_learning_rates, rng):
    seen = sgd_learning_rates
    x = rng.standard_normal((128, 4)).astype(np.float32)
    y = rng.integers(0, 3, 128)
    calls: list[int] = []

    def evaluate(_probe):
        calls.append(len(seen))
        return 0.0, 0.0

    config = RECIPES["crossclr"].probe
    fit_linear_classifier(x, y, 3, config, evaluate=evaluate)
    # One batch of 128 per epoch: epochs 1-80 at 3.0, 81-100 at 0.3 (processor: epoch > 80).
    assert seen == pytest.approx([3.0] * 80 + [0.3] * 20)
    assert calls == list(range(5, 101, 5))
    assert [e for e in range(1, 81) if RECIPES["cmd"].probe.evaluates_after(e)] == list(
        range(5, 81, 5))


def test_normal_init_and_zero_bias():
    probe = LinearProbe(4096, 60, torch.Generator().manual_seed(0), init_std=0.01)
    weight = probe.linear.weight.detach()
    assert float(weight.std()) == pytest.approx(0.01, rel=0.02)
    assert abs(float(weight.mean())) < 1e-4
    assert torch.count_nonzero(probe.linear.bias) == 0


def test_drop_last_drops_the_incomplete_batch(rng):
    x = rng.standard_normal((300, 3)).astype(np.float32)
    y = np.zeros(300, np.int64)
    for drop, sizes in ((True, [128, 128]), (False, [128, 128, 44])):
        config = LinearProbeConfig(batch_size=128, drop_last=drop)
        batches = memory_batches(x, y, config, torch.Generator().manual_seed(0),
                                 torch.device("cpu"))
        assert [len(b) for b, _ in batches(0)] == sizes


def test_best_over_evaluations_is_labelled_as_selected_on_test():
    evaluations = (Evaluation(5, 0.40, 0.9), Evaluation(10, 0.55, 0.9), Evaluation(15, 0.50, 0.9))
    result = LinearProbeResult(top1=0.50, top5=0.9, train_top1=0.9, n_train=10, n_test=10,
                               config=LinearProbeConfig(epochs=15, eval_every=5),
                               final_loss=0.1, evaluations=evaluations)
    out = result.as_dict()
    assert out["top1"] == 0.50 and out["best_top1"] == 0.55 and out["best_epoch"] == 10
    assert out["best_note"] == BEST_LABEL == "best over evaluations (selected on the test split)"
    plain = LinearProbeResult(top1=0.5, top5=0.9, train_top1=0.9, n_train=10, n_test=10,
                              config=LinearProbeConfig(epochs=15), final_loss=0.1,
                              evaluations=evaluations[-1:])
    assert "best_top1" not in plain.as_dict()


# --- end to end -------------------------------------------------------------------------------


def test_cmd_recipe_end_to_end_from_run_and_store(tiny_run, random_walk_store, tmp_path):
    import shutil

    run = Path(shutil.copytree(tiny_run("cmd", 1), tmp_path / "cmd"))
    outcome = CliRunner().invoke(main, [
        "linear", "--run", str(run), "--store", str(random_walk_store), "--protocol", "xsub",
        "--recipe", "cmd", "--epochs", "10", "--milestones", "5", "--device", "cpu", "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["recipe"] == "cmd" and summary["source"] == "run"
    assert summary["evaluated_epochs"] == [5, 10] and summary["best_note"] == BEST_LABEL
    assert summary["best_top1"] >= summary["top1"]  # the final epoch is one of the evaluations
    assert summary["standardized"] is False and summary["init_std"] == 0.01
    assert summary["batch_size"] == 64 and summary["n_train"] == 16 and summary["n_test"] == 16
    assert summary["deviations"] == {"epochs": 10, "milestones": [5]}
    (record,) = _records(run)
    assert record["kind"] == "linear" and record["recipe"] == "cmd"
    assert record["method"] == "cmd" and record["dataset"] == "randomwalk"


def test_cmd_recipe_redraws_crops_each_epoch_and_leaves_the_encoder_untouched(tiny_run):
    encoder = open_frozen_encoder(tiny_run("cmd", 1), None, None, device=torch.device("cpu"))
    before = {k: v.clone() for k, v in encoder.method.state_dict().items()}
    recipe = RECIPES["cmd"]
    config = LinearProbeConfig(**{**recipe.probe.__dict__, "batch_size": 16})
    batches = cropped_train_batches(encoder, recipe, config, seed=0)
    epoch0 = [(x.clone(), y.clone()) for x, y in batches(0)]
    again = [(x.clone(), y.clone()) for x, y in batches(0)]
    epoch1 = [(x.clone(), y.clone()) for x, y in batches(1)]
    torch.testing.assert_close(epoch0[0][0], again[0][0])  # seeded by (seed, epoch, sample)
    assert not torch.allclose(epoch0[0][0], epoch1[0][0])  # redrawn every epoch
    assert sorted(epoch0[0][1].tolist()) == sorted(epoch1[0][1].tolist())  # same samples
    short = LinearProbeConfig(**{**recipe.probe.__dict__, "epochs": 2, "milestones": ()})
    result, _ = probe_run(encoder, recipe, short)
    assert result.recipe == "cmd"
    # The authors' sanity_check: linear evaluation changes no weight and no BatchNorm statistic.
    for key, value in encoder.method.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)


def test_i2md_recipe_end_to_end_on_a_random_init_run(tiny_run):
    outcome = CliRunner().invoke(main, [
        "linear", "--run", str(tiny_run("i2md", 0)), "--recipe", "auto", "--epochs", "5",
        "--device", "cpu", "--json", "--no-record"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["recipe"] == "i2md" and summary["evaluated_epochs"] == [5]


def test_crossclr_recipe_end_to_end_from_a_run(tiny_run):
    outcome = CliRunner().invoke(main, [
        "linear", "--run", str(tiny_run("skeletonclr", 0)), "--recipe", "auto", "--epochs", "2",
        "--batch-size", "8", "--device", "cpu", "--json", "--no-record"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["recipe"] == "crossclr" and summary["lr"] == 3.0
    assert summary["init_std"] == 0.02 and summary["evaluated_epochs"] == [2]


def test_ikem_recipe_end_to_end_from_an_embedding_file(tmp_path, rng, make_clustered,
                                                       make_split_file):
    x, y = make_clustered(rng, 400, 16, 4, spread=1.0)
    emb = make_split_file(tmp_path / "ikem.h5", (x[:300], y[:300]), (x[300:], y[300:]),
                          {"method": "ikem-student", "modality": "joint"})
    outcome = CliRunner().invoke(main, ["linear", "--emb", str(emb), "--recipe", "auto",
                                        "--epochs", "10", "--json"])
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    assert summary["recipe"] == "ikem" and summary["batch_size"] == 128
    assert summary["evaluated_epochs"] == [5, 10] and summary["top1"] > 0.9


@pytest.mark.parametrize("recipe", ["cmd", "i2md"])
def test_crop_recipes_refuse_frozen_features(recipe, separable_file):
    outcome = CliRunner().invoke(main, ["linear", "--emb", str(separable_file), "--recipe",
                                        recipe])
    assert outcome.exit_code == 2
    assert "needs --run" in outcome.stderr and outcome.stderr.count("\n") == 1


def test_crop_recipe_refuses_a_fixed_input_method(tiny_run):
    outcome = CliRunner().invoke(main, ["linear", "--run", str(tiny_run("skeletonclr", 0)),
                                        "--recipe", "cmd", "--device", "cpu"])
    assert outcome.exit_code == 2 and "fixed-length inputs" in outcome.stderr
