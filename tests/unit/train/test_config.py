"""Configs as data: packaged settings, base chains, --set overrides, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from skelkit.train.config import (
    ConfigError,
    apply_overrides,
    packaged_configs,
    resolve_run_config,
)
from skelkit.train.runs import method_class


def resolve(method: str, config: str | None, overrides=(), cli=None):
    return resolve_run_config(method, method_class(method), config, list(overrides), cli)


@pytest.mark.parametrize("name", packaged_configs())
def test_every_packaged_config_validates(name: str) -> None:
    from skelkit.train.methods import METHODS

    method = name.split("/")[0]
    if method not in METHODS:
        pytest.skip(f"method {method} is not registered yet")
    # The student's packaged configs leave the teacher run to the command line (--teacher).
    overrides = ["model.teacher=runs/ikem-teacher"] if method == "ikem-student" else []
    cfg = resolve(method, name, overrides)
    assert cfg.method == method
    assert cfg.engine.epochs > 0 and cfg.engine.batch_size > 0


def test_each_method_has_dataset_and_tiny_configs() -> None:
    for method in ("cmd", "skeletonclr"):
        names = set(packaged_configs(method))
        assert {f"{method}/{d}" for d in ("ntu60", "ntu120", "pku2", "tiny")} <= names


def test_cmd_published_settings() -> None:
    cfg = resolve("cmd", "cmd/ntu60")
    assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (0.01, 0.9, 1e-4)
    assert (cfg.engine.batch_size, cfg.engine.epochs) == (64, 451)
    assert (cfg.schedule.kind, cfg.schedule.milestones, cfg.schedule.gamma) == ("step", [351], 0.1)
    m = cfg.model
    assert (m.topk, m.queue_size, m.feature_dim) == (8192, 16384, 128)
    assert (m.teacher_temperature, m.student_temperature, m.temperature) == (0.05, 0.1, 0.07)
    assert m.momentum == 0.999 and tuple(m.modalities) == ("joint", "motion", "bone")
    assert m.encoder == "bigru"
    assert (m.encoder_args["hidden_size"], m.encoder_args["num_layers"]) == (1024, 3)
    crop, shear = cfg.data.augment
    assert crop == {"name": "temporal_crop_resize", "window": 64, "min_ratio": 0.1,
                    "max_ratio": 1.0, "min_frames": 64, "max_frames": 300}
    assert shear == {"name": "shear_or_corrupt", "p": 0.5, "amplitude": 1.0, "num_joints": 15}
    assert (m.fidelity, cfg.engine.amp) == ("reference", False)  # the authors' code, in fp32
    pku = resolve("cmd", "cmd/pku2")
    assert (pku.engine.epochs, pku.schedule.milestones) == (1000, [800])
    assert resolve("cmd", "cmd/ntu120").to_dict() == cfg.to_dict()


def test_skeletonclr_published_settings() -> None:
    cfg = resolve("skeletonclr", "skeletonclr/ntu60")
    assert (cfg.optim.lr, cfg.engine.batch_size, cfg.engine.epochs) == (0.1, 128, 300)
    assert cfg.schedule.milestones == [250]
    assert (cfg.model.queue_size, cfg.model.temperature) == (32768, 0.07)
    assert cfg.model.encoder == "stgcn" and cfg.model.encoder_args["channel_multiplier"] == 0.25
    assert {"name": "shear", "amplitude": 0.5} in cfg.data.augment
    assert {"name": "temporal_pad_crop", "padding_ratio": 6, "window": 50} in cfg.data.augment


def test_bare_name_resolves_for_the_chosen_method() -> None:
    assert resolve("cmd", "tiny").model.encoder_args["hidden_size"] == 64
    assert resolve("skeletonclr", "tiny").model.encoder == "stgcn"


def test_overrides_are_yaml_typed_and_cli_flags_win() -> None:
    cfg = resolve("cmd", "tiny", ["optim.lr=1e-3", "schedule.milestones=[3, 7]",
                                  "engine.amp=false", "model.topk=128", "engine.epochs=9"],
                  {"engine.epochs": 4, "engine.seed": None})
    assert cfg.optim.lr == pytest.approx(0.001) and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.milestones == [3, 7]
    assert cfg.engine.amp is False and cfg.model.topk == 128
    assert cfg.engine.epochs == 4 and cfg.engine.seed == 0


def test_resolved_yaml_repeats_the_run(tmp_path: Path) -> None:
    cfg = resolve("cmd", "tiny", ["optim.lr=0.02", "data.store=/x.zarr"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    again = resolve("cmd", str(path))
    assert again.to_dict() == cfg.to_dict()
    assert again.optim.lr == 0.02 and again.data.store == "/x.zarr"


def test_base_chain_of_a_user_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("base: cmd/ntu60\nengine:\n  epochs: 7\nmodel:\n  topk: 100\n")
    cfg = resolve("cmd", str(path))
    assert cfg.engine.epochs == 7 and cfg.model.topk == 100
    assert cfg.model.queue_size == 16384  # inherited


@pytest.mark.parametrize(("overrides", "message"), [
    (["engine.epocs=3"], "engine: unknown key(s) epocs"),
    (["engine.epochs=three"], "engine.epochs: expected an integer"),
    (["optim.lr=-1"], "optim.lr must be > 0"),
    (["schedule.kind=linear"], "schedule.kind must be step or cosine"),
    (["optim.name=adam"], "optim.name must be sgd or adamw"),
    (["schedule.milestones=[5, 2]"], "increasing"),
    (["data.start_method=fork"], "spawn or forkserver"),
    (["training.x=1"], "unknown section(s) training"),
    (["model.queue_size=abc"], "model: queue_size"),
    (["model.nope=1"], "model: unknown key(s) nope"),
    (["engine.epochs"], "expected key.path=value"),
    (["data.augment=[3]"], "data.augment[0]"),
])
def test_validation_errors_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        resolve("cmd", "tiny", overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_switching_encoder_in_a_derived_config_drops_the_base_encoder_args(tmp_path: Path) -> None:
    path = tmp_path / "gru.yaml"
    path.write_text("base: crossclr/tiny\nmodel:\n  encoder: bigru\n"
                    "  encoder_args: {hidden_size: 32}\n")
    cfg = resolve("crossclr", str(path))
    assert cfg.model.encoder == "bigru"
    assert cfg.model.encoder_args == {"hidden_size": 32}  # no ST-GCN channel_multiplier
    same = tmp_path / "stgcn.yaml"
    same.write_text("base: crossclr/tiny\nmodel:\n  encoder_args: {hidden_dim: 32}\n")
    assert resolve("crossclr", str(same)).model.encoder_args["channel_multiplier"] == 0.0625


def test_unknown_config_name_and_method_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config 'nope' for method cmd"):
        resolve("cmd", "nope")
    with pytest.raises(ConfigError, match="config is for method 'cmd', not 'skeletonclr'"):
        resolve("skeletonclr", "cmd/ntu60")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve("cmd", str(tmp_path / "missing.yaml"))


def test_invalid_yaml_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("engine:\n  epochs: 3\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        resolve("cmd", str(path))


def test_apply_overrides_creates_nested_keys() -> None:
    out = apply_overrides({"a": {"b": 1}}, ["a.c.d=x", "a.b=null"])
    assert out == {"a": {"b": None, "c": {"d": "x"}}}


def test_bare_set_keys_are_method_settings() -> None:
    tree = apply_overrides({"model": {"topk": 8}}, ["topk=4", "engine.epochs=3"])
    assert tree["model"]["topk"] == 4 and tree["engine"]["epochs"] == 3
