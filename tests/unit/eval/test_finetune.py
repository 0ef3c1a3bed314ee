"""skeleval finetune: stratified subsets, repeats, transfer, scratch, bad input (issue 4 item 3)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from click.testing import CliRunner

from skelkit.eval import finetune as ft
from skelkit.eval.cli import main
from skelkit.eval.errors import EvalInputError
from skelkit.store.layout import KINECT20
from skelkit.train.checkpoint import load_checkpoint, save_checkpoint
from skelkit.train.config import resolve_run_config
from skelkit.train.data import write_random_walk_store
from skelkit.train.engine import train
from skelkit.train.runs import method_class

# A CPU-small CMD: 1-layer BiGRU of hidden 16, a tiny queue; one pre-training epoch.
TINY = ["data.num_workers=0", "engine.batch_size=8", "engine.knn_every=0", "engine.threads=1",
        "model.queue_size=32", "model.topk=8", "model.encoder_args.hidden_size=16"]
FAST = ["--epochs", "2", "--milestones", "1", "--batch-size", "8", "--device", "cpu",
        "--no-progress"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("finetune")
    rw = write_random_walk_store(root / "rw.zarr", classes=4, per_class=8, frames=(20, 40),
                                 seed=1)
    other = write_random_walk_store(root / "pku.zarr", classes=6, per_class=4, frames=(20, 40),
                                    seed=2)
    # Another dataset with the same layout: what a transfer target looks like to the store.
    zarr.open_group(str(other), mode="r+").attrs["dataset"] = "pku2"
    kinect = write_random_walk_store(root / "k20.zarr", classes=4, per_class=4, frames=(20, 40),
                                     seed=3, layout=KINECT20)
    return {"rw": rw, "pku": other, "kinect": kinect}


@pytest.fixture(scope="module")
def pretrained(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    cfg = resolve_run_config("cmd", method_class("cmd"), "tiny", TINY,
                             {"data.store": str(stores["rw"]), "data.protocol": "xsub",
                              "engine.epochs": 1, "engine.device": "cpu"})
    run = tmp_path_factory.mktemp("runs") / "cmd"
    train(cfg, run, progress=False)
    return run


@pytest.fixture
def run_copy(pretrained: Path, tmp_path: Path) -> Path:
    """A private copy, so each test's eval.jsonl starts empty."""
    return Path(shutil.copytree(pretrained, tmp_path / "run"))


def invoke(*args: str):
    return CliRunner().invoke(main, ["finetune", *args])


# --- subsets ----------------------------------------------------------------------------------


def test_stratified_subset_sizes_and_class_coverage() -> None:
    labels = np.repeat([0, 1, 2, 3], [100, 10, 3, 1])
    np.random.default_rng(0).shuffle(labels)
    for fraction, expected in ((0.1, [10, 1, 1, 1]), (0.5, [50, 5, 2, 1]), (0.01, [1, 1, 1, 1])):
        chosen = ft.stratified_subset(labels, fraction, np.random.default_rng(5))
        assert np.all(np.diff(chosen) > 0)  # sorted, no duplicates
        counts = np.bincount(labels[chosen], minlength=4)
        assert counts.tolist() == expected
    full = ft.stratified_subset(labels, 1.0, np.random.default_rng(5))
    assert full.tolist() == list(range(len(labels)))


def test_repeats_draw_different_subsets_reproducibly() -> None:
    labels = np.repeat(np.arange(5), 40)
    draws = [ft.stratified_subset(labels, 0.1, ft.subset_rng(7, r)) for r in range(3)]
    assert all(len(d) == 20 for d in draws)
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])
    again = ft.stratified_subset(labels, 0.1, ft.subset_rng(7, 1))
    assert np.array_equal(again, draws[1])
    assert len({ft.repeat_seed(7, r) for r in range(3)}) == 3


def test_repeats_report_mean_and_sample_std(run_copy: Path, stores: dict[str, Path],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Aggregation over repeats, with training stubbed and known per-repeat scores."""
    scores = iter([(0.5, 0.75), (0.25, 1.0), (1.0, 1.0)])
    subsets: list[np.ndarray] = []
    monkeypatch.setattr(ft, "train_finetune_model",
                        lambda model, inputs, positions, *a, **k: subsets.append(positions))
    monkeypatch.setattr(ft, "evaluate_finetune_model",
                        lambda *a, **k: (*next(scores), 16))
    config = ft.FinetuneConfig(epochs=1, label_fraction=0.5, repeats=3)
    result = ft.run_finetune(run_copy, stores["rw"], "xsub", config=config)
    assert result.top1 == pytest.approx(1.75 / 3)
    assert result.top1_std == pytest.approx(np.std([0.5, 0.25, 1.0], ddof=1))
    assert result.top5 == pytest.approx(2.75 / 3)
    assert result.top5_std == pytest.approx(np.std([0.75, 1.0, 1.0], ddof=1))
    # 16 train samples, 4 per class: half of each class, and three different draws.
    assert result.n_train == 8 and result.n_train_available == 16
    assert len({tuple(s) for s in subsets}) == 3
    summary = result.as_dict()
    assert summary["repeats"] == 3 and summary["label_fraction"] == 0.5
    assert summary["top1_runs"] == [0.5, 0.25, 1.0]


# --- model: checkpoint, scratch, transfer ------------------------------------------------------


def _encoder_state(model: ft.FinetuneModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.encoder.state_dict().items()}


def test_encoder_loaded_from_checkpoint_and_changed_by_finetuning(pretrained: Path,
                                                                  stores: dict[str, Path]) -> None:
    torch.set_num_threads(1)
    inputs = ft.open_finetune_inputs(pretrained, stores["rw"], "xsub")
    saved = load_checkpoint(pretrained / "checkpoints" / "last.pt")["model"]
    prefix = "branches.joint.encoder_q."
    model = ft.build_finetune_model(inputs, seed=3)
    start = _encoder_state(model)
    assert all(torch.equal(start[k], saved[prefix + k]) for k in start)

    scratch = ft.build_finetune_model(
        ft.open_finetune_inputs(pretrained, stores["rw"], "xsub", scratch=True), seed=3)
    assert not all(torch.equal(start[k], v) for k, v in _encoder_state(scratch).items())

    config = ft.FinetuneConfig(epochs=2, milestones=(1,), batch_size=8, lr=0.05)
    positions = np.arange(16)
    ft.train_finetune_model(model, inputs, positions, config, seed=3, device=torch.device("cpu"))
    after = _encoder_state(model)
    moved = [k for k in after if after[k].is_floating_point() and not torch.equal(after[k],
                                                                                   start[k])]
    assert any("weight" in k for k in moved), moved
    # Deterministic on CPU: the same seed gives bit-identical weights.
    twin = ft.build_finetune_model(inputs, seed=3)
    ft.train_finetune_model(twin, inputs, positions, config, seed=3, device=torch.device("cpu"))
    assert all(torch.equal(after[k], v) for k, v in _encoder_state(twin).items())
    assert torch.equal(model.classifier.weight, twin.classifier.weight)


def test_transfer_sizes_the_classifier_to_the_new_store(pretrained: Path,
                                                        stores: dict[str, Path]) -> None:
    same = ft.open_finetune_inputs(pretrained, stores["rw"], "xsub")
    assert not same.transfer and same.num_classes == 4
    other = ft.open_finetune_inputs(pretrained, stores["pku"], "xsub")
    assert other.transfer and other.pretrain_dataset == "randomwalk"
    model = ft.build_finetune_model(other, seed=0)
    assert model.classifier.out_features == 6
    assert model.classifier.in_features == model.encoder.out_dim == 32  # BiGRU 2 x hidden 16
    saved = load_checkpoint(pretrained / "checkpoints" / "last.pt")["model"]
    encoder = _encoder_state(model)
    assert encoder and all(torch.equal(v, saved["branches.joint.encoder_q." + k])
                           for k, v in encoder.items())


# --- the command ------------------------------------------------------------------------------


def test_cli_json_record_and_report(run_copy: Path, stores: dict[str, Path]) -> None:
    outcome = invoke("--run", str(run_copy), "--store", str(stores["pku"]), "--protocol", "xsub",
                     "--label-fraction", "0.5", "--json", *FAST)
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    for key in ("top1", "top5", "epochs", "label_fraction", "repeats", "n_train", "n_test",
                "transfer", "scratch"):
        assert key in summary
    assert "top1_std" not in summary  # one repeat
    assert summary["transfer"] is True and summary["scratch"] is False
    assert summary["epochs"] == 2 and summary["n_train"] == 6 and summary["n_test"] == 12
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0

    scratch = invoke("--run", str(run_copy), "--store", str(stores["rw"]), "--protocol", "xsub",
                     "--scratch", *FAST)
    assert scratch.exit_code == 0, scratch.output
    assert "supervised from scratch" in scratch.stdout
    plain = invoke("--run", str(run_copy), "--store", str(stores["rw"]), "--protocol", "xsub",
                   *FAST)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.startswith("fine-tune cmd joint on randomwalk xsub: top-1 ")

    records = [json.loads(line) for line in (run_copy / "eval.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["finetune"] * 3
    assert records[0]["label_fraction"] == 0.5 and records[0]["repeats"] == 1
    assert records[0]["transfer"] is True and records[1]["scratch"] is True
    assert records[2]["checkpoint"].endswith("last.pt") and "checkpoint" not in records[1]
    assert records[2]["label_fraction"] == 1.0 and not records[2]["transfer"]

    # The report's fine-tune column shows the latest full-label record of the run.
    table = CliRunner().invoke(main, ["report", str(run_copy)])
    assert table.exit_code == 0, table.output
    row = [line for line in table.stdout.splitlines() if line.startswith("| cmd")]
    assert len(row) == 1
    assert row[0].rstrip(" |").endswith(f"{100 * records[2]['top1']:.1f}")


@pytest.mark.parametrize("case", ["layout", "protocol", "run", "yaml", "method", "modality",
                                  "fraction"])
def test_bad_input_is_one_line_and_exit_2(case: str, pretrained: Path, stores: dict[str, Path],
                                          tmp_path: Path) -> None:
    args = ["--run", str(pretrained), "--store", str(stores["rw"]), "--protocol", "xsub"]
    expected = {
        "layout": "store layout kinect20 does not match the run's ntu25",
        "protocol": "unknown protocol 'xview'",
        "run": "no such run directory",
        "yaml": "config.yaml:2: invalid YAML",
        "method": "checkpoint of method 'skeletonclr'",
        "modality": "modality 'angular_velocity' was not trained by cmd",
        "fraction": "--label-fraction",
    }[case]
    if case == "layout":
        args[3] = str(stores["kinect"])
    elif case == "protocol":
        args[5] = "xview"
    elif case == "run":
        args[1] = str(tmp_path / "missing")
    elif case == "yaml":
        (tmp_path / "config.yaml").write_text("method: [unclosed\n")
        args[1] = str(tmp_path)
    elif case == "method":
        payload = load_checkpoint(pretrained / "checkpoints" / "last.pt")
        foreign = save_checkpoint(
            tmp_path / "other.pt", method="skeletonclr", epoch=1, model=payload["model"],
            optimizer=None, scheduler=None, scaler=None, config_text="")
        args += ["--checkpoint", str(foreign)]
    elif case == "modality":
        args += ["--modality", "angular_velocity"]
    else:
        args += ["--label-fraction", "0"]
    outcome = invoke(*args, *FAST)
    assert outcome.exit_code == 2, outcome.output
    assert expected in outcome.stderr, outcome.stderr
    if case != "fraction":  # click's own usage errors take a few lines
        assert outcome.stderr.count("\n") == 1, outcome.stderr
        assert outcome.stderr.startswith("skeleval finetune: error: ")
    assert "Traceback" not in outcome.output
    assert not (pretrained / "eval.jsonl").exists()


def test_config_rejects_bad_values(pretrained: Path) -> None:
    with pytest.raises(ValueError, match="label fraction"):
        ft.FinetuneConfig(label_fraction=1.5)
    with pytest.raises(ValueError, match="milestones"):
        ft.FinetuneConfig(milestones=(70, 50))
    with pytest.raises(EvalInputError, match="no such store"):
        ft.open_finetune_inputs(pretrained, "/nonexistent/x.zarr", "xsub")


# --- recipes (issue 13 items 2 and 6) ----------------------------------------------------------

from skelkit.eval.finetune_recipes import FINETUNE_RECIPES, finetune_recipe  # noqa: E402

# What each source runs (skelkit/eval/finetune_recipes.py cites them): a moved number fails here.
PINNED = {
    "i2md": dict(epochs=80, lr=0.01, milestones=(50, 70), gamma=0.1, momentum=0.9,
                 nesterov=False, weight_decay=0.0, batch_size=None, label_fraction=1.0,
                 repeats=1, train_crop=None, test_centre_crop=None, classifier_init="uniform"),
    "cmd": dict(epochs=80, lr=0.01, milestones=(50, 70), gamma=0.1, momentum=0.9,
                nesterov=False, weight_decay=0.0, batch_size=64, label_fraction=1.0, repeats=1,
                train_crop=(0.5, 1.0), test_centre_crop=0.95, classifier_init="normal"),
    "crossclr": dict(epochs=100, lr=0.1, milestones=(80,), gamma=0.1, momentum=0.9,
                     nesterov=False, weight_decay=0.0, batch_size=None, label_fraction=1.0,
                     repeats=1, train_crop=None, test_centre_crop=None),
    "semi1": dict(epochs=80, lr=0.01, milestones=(50, 70), label_fraction=0.01, repeats=5,
                  subset="stratified"),
    "semi10": dict(epochs=80, lr=0.01, milestones=(50, 70), label_fraction=0.1, repeats=5,
                   subset="stratified"),
    "transfer": dict(epochs=80, lr=0.01, milestones=(50,), label_fraction=1.0, repeats=1),
    "supervised": dict(epochs=80, lr=0.1, milestones=(50, 70), gamma=0.1, momentum=0.9,
                       nesterov=True, weight_decay=1e-4, batch_size=None, label_fraction=1.0,
                       repeats=1, train_crop=None, test_centre_crop=None),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_recipe_settings_are_pinned(name: str) -> None:
    recipe = finetune_recipe(name)
    assert recipe.name == name and recipe.config.recipe == name and recipe.source
    for key, value in PINNED[name].items():
        assert getattr(recipe.config, key) == value, (name, key)
    assert recipe.transfer is (name == "transfer")


def test_every_recipe_is_pinned_and_unknown_names_are_refused() -> None:
    assert set(FINETUNE_RECIPES) == set(PINNED)
    with pytest.raises(ValueError, match="unknown fine-tune recipe 'bogus'"):
        finetune_recipe("bogus")


def test_the_optimiser_and_schedule_follow_the_config(pretrained: Path, stores: dict[str, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}
    real_sgd, real_steps = torch.optim.SGD, torch.optim.lr_scheduler.MultiStepLR

    def sgd(params, **kwargs):
        seen.update(kwargs)
        return real_sgd(params, **kwargs)

    def steps(optimizer, milestones, gamma):
        seen.update(milestones=list(milestones), gamma=gamma)
        return real_steps(optimizer, milestones, gamma=gamma)

    monkeypatch.setattr(torch.optim, "SGD", sgd)
    monkeypatch.setattr(torch.optim.lr_scheduler, "MultiStepLR", steps)
    config = dataclasses.replace(finetune_recipe("supervised").config, epochs=1, batch_size=8)
    inputs = ft.open_finetune_inputs(pretrained, stores["rw"], "xsub", scratch=True)
    model = ft.build_finetune_model(inputs, seed=0)
    ft.train_finetune_model(model, inputs, np.arange(16), config, seed=0,
                            device=torch.device("cpu"))
    assert seen == dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True,
                        milestones=[50, 70], gamma=0.1)


def test_cmd_views_crop_in_training_and_score_the_centre(pretrained: Path,
                                                         stores: dict[str, Path]) -> None:
    from skelkit.train.augment import TemporalCropResize, resize_linear

    config = finetune_recipe("cmd").config
    inputs = ft.open_finetune_inputs(pretrained, stores["rw"], "xsub")
    window = inputs.run_config.data.window
    crop = ft.view_augment(inputs, "train", config)
    assert isinstance(crop, TemporalCropResize)
    assert (crop.min_ratio, crop.max_ratio, crop.min_frames, crop.window) == (0.5, 1.0, window,
                                                                               window)
    assert ft.view_augment(inputs, "test", config) is None
    centre = ft.unaugmented_view(inputs, "test", config)
    x = np.random.default_rng(0).normal(size=(3, 100, 25, 2)).astype(np.float32)
    # CMD's l_ratio [0.95]: int(0.05 * 100 / 2) = 2 frames off each end, then resized.
    np.testing.assert_allclose(centre(x), resize_linear(x[:, 2:98], window), atol=1e-6)
    assert ft.view_augment(inputs, "test", finetune_recipe("i2md").config) is None
    own = inputs.run.evaluation_view()  # the train side keeps the run's own embedding view
    assert type(ft.unaugmented_view(inputs, "train", config)) is type(own)
    # Crops of a long sequence differ between draws (the store's 20-40-frame walks are shorter
    # than CMD's 64-frame floor, so they are used whole); the train side draws per epoch.
    long = np.random.default_rng(1).normal(size=(3, 200, 25, 2)).astype(np.float32)
    a, b = crop(long, np.random.default_rng(0)), crop(long, np.random.default_rng(1))
    assert a.shape == (3, window, 25, 2) and not np.array_equal(a, b)
    train = ft.side_dataset(inputs, "train", config=config, seed=0)
    assert train.mode == "train" and train.augment is not None
    assert train.__getitems__([(0, 0)])[0]["q"].shape[1] == window
    model = ft.build_finetune_model(inputs, seed=0, classifier_init="normal")
    with torch.no_grad():
        assert float(model.classifier.bias.abs().max()) == 0.0
        assert float(model.classifier.weight.std()) == pytest.approx(0.01, rel=0.3)


def test_uniform_subsets_ignore_class_as_cmd_draws_them() -> None:
    labels = np.repeat([0, 1, 2, 3], [100, 10, 3, 1])
    chosen = ft.label_subset(labels, 0.05, np.random.default_rng(0), "uniform")
    assert len(chosen) == int(0.05 * len(labels)) and np.all(np.diff(chosen) > 0)
    draws = {tuple(ft.label_subset(labels, 0.05, np.random.default_rng(s), "uniform"))
             for s in range(20)}
    classes_missed = [set(range(4)) - set(labels[list(d)]) for d in draws]
    assert any(classes_missed)  # unlike the stratified draw, classes may go without labels
    assert ft.label_subset(labels, 1.0, np.random.default_rng(0), "uniform").tolist() == \
        list(range(len(labels)))


@pytest.mark.parametrize("name", sorted(PINNED))
def test_each_recipe_runs_end_to_end(name: str, run_copy: Path, stores: dict[str, Path]) -> None:
    """One short run per recipe (2 epochs, batch 8): the recipe's other settings apply."""
    store = stores["pku"] if name == "transfer" else stores["rw"]
    args = ["--run", str(run_copy), "--store", str(store), "--protocol", "xsub", "--recipe", name,
            "--json", *FAST]
    if name == "supervised":
        args.append("--scratch")
    if name.startswith("semi"):
        args += ["--repeats", "2"]  # 16 train samples: 1 % and 10 % keep one per class
    outcome = invoke(*args)
    assert outcome.exit_code == 0, outcome.output
    summary = json.loads(outcome.stdout)
    pinned = PINNED[name]
    assert summary["recipe"] == name and summary["epochs"] == 2 and summary["batch_size"] == 8
    for key in ("lr", "weight_decay", "label_fraction"):
        if key in pinned:
            assert summary[key] == pytest.approx(pinned[key]), key
    if name.startswith("semi"):
        assert summary["repeats"] == 2 and summary["n_train"] == 4 and "top1_std" in summary
    assert summary["transfer"] is (name == "transfer")
    assert 0.0 <= summary["top1"] <= summary["top5"] <= 1.0


def test_recipe_refusals_are_one_line(pretrained: Path, stores: dict[str, Path],
                                      tmp_path: Path) -> None:
    base = ["--store", str(stores["rw"]), "--protocol", "xsub", *FAST]
    same = invoke("--run", str(pretrained), "--recipe", "transfer", *base)
    assert same.exit_code == 2 and "needs another dataset" in same.stderr, same.output
    unknown = invoke("--run", str(pretrained), "--recipe", "bogus", *base)
    assert unknown.exit_code == 2 and "unknown fine-tune recipe 'bogus'" in unknown.stderr
    # CMD's crops are cut from whole sequences; a fixed-length method never has one.
    cfg = resolve_run_config("skeletonclr", method_class("skeletonclr"), "skeletonclr/ntu60",
                             ["data.num_workers=0", "engine.batch_size=8", "model.queue_size=16",
                              "model.encoder_args.channel_multiplier=0.0625"],
                             {"data.store": str(stores["rw"]), "data.protocol": "xsub",
                              "engine.epochs": 0, "engine.device": "cpu"})
    train(cfg, tmp_path / "sclr", progress=False)
    fixed = invoke("--run", str(tmp_path / "sclr"), "--recipe", "cmd", *base)
    assert fixed.exit_code == 2 and "reads the store's fixed-length view" in fixed.stderr
    for outcome in (same, unknown, fixed):
        assert outcome.stderr.count("\n") == 1 and "Traceback" not in outcome.output
