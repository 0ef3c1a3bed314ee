"""Run configuration as data: packaged YAML per method and dataset, typed engine sections, overrides.

A config file has the sections ``data``, ``optim``, ``schedule``, ``engine`` (dataclasses here) and
``model`` (validated by the chosen method's own ``Config``). A file may name a ``base:`` config whose
values it overrides, so dataset variants stay one screen long. The resolved config written into a
run directory is complete: passing it back as ``--config`` repeats the run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from skelkit.errors import InputError


class ConfigError(InputError, ValueError):
    """A config that cannot be resolved or does not validate; the message is one line."""


@dataclass
class DataConfig:
    store: str | None = None
    protocol: str | None = None
    window: int = 64
    """Frames per training view for sequence methods (temporal crop-resize target)."""
    augment: list[dict[str, Any]] = field(default_factory=list)
    """Augmentation pipeline: a list of {name: <AUGMENTATIONS key>, **kwargs}, applied in order."""
    num_workers: int = 2
    start_method: str = "forkserver"
    prefetch_factor: int = 4
    raw_cache: str = ""
    """Sequence methods: a folder where the train side's raw frames are decompressed once and
    read memory-mapped (a float32 copy: ~600 bytes per frame for NTU's 25 joints x 2 bodies;
    "": read the store's chunks every batch)."""


@dataclass
class OptimConfig:
    name: str = "sgd"
    """``sgd`` (the papers' optimiser) or ``adamw`` (``momentum`` is then beta_1)."""
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False


@dataclass
class ScheduleConfig:
    kind: str = "step"
    """``step``: lr x gamma at each milestone epoch; ``cosine``: half-cosine from lr to min_lr."""
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    warmup_epochs: int = 0


@dataclass
class EngineConfig:
    epochs: int = 1
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    """Mixed precision (float16 autocast with a gradient scaler), an explicit opt-in used only on
    CUDA. Off by default: the authors' code trains in float32, and the published numbers come
    from it; losses always run in float32 either way."""
    checkpoint_every: int = 10
    knn_every: int = 0
    """Run the cosine 1-NN monitor every N epochs (0: never)."""
    knn_modality: str = "joint"
    embed_batch_size: int = 256
    drop_last: bool = True
    grad_clip: float = 0.0
    """Clip the global gradient norm to this value (0: no clipping)."""
    find_unused_parameters: bool = False
    threads: int = 0
    """torch intra-op threads in the main process (0: torch's default)."""
    log_every: int = 0
    """Read the step logs back from the device (a synchronisation), check the loss for NaN/inf
    and write a train.log line every N steps (0: only at the end of each epoch and at the
    progress bar's refreshes)."""


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "engine": EngineConfig,
}


@dataclass
class RunConfig:
    method: str
    data: DataConfig
    optim: OptimConfig
    schedule: ScheduleConfig
    engine: EngineConfig
    model: Any
    """The method's validated ``Config`` dataclass instance."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "data": dataclasses.asdict(self.data),
            "optim": dataclasses.asdict(self.optim),
            "schedule": dataclasses.asdict(self.schedule),
            "engine": dataclasses.asdict(self.engine),
            "model": _model_to_dict(self.model),
        }

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)


def _model_to_dict(model_cfg: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(model_cfg):
        return _plain(dataclasses.asdict(model_cfg))
    if hasattr(model_cfg, "to_dict"):
        return _plain(model_cfg.to_dict())
    if isinstance(model_cfg, dict):
        return _plain(model_cfg)
    raise ConfigError(f"model config of type {type(model_cfg).__name__} cannot be serialised")


def _plain(value: Any) -> Any:
    """Tuples -> lists recursively, so YAML stays plain (safe_dump refuses python tuples)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --- locating and reading config files --------------------------------------------------------

def packaged_config_dir() -> Path:
    return Path(str(resources.files("skelkit.train") / "configs"))


def packaged_configs(method: str | None = None) -> list[str]:
    """Names like ``cmd/ntu60`` of the packaged configs (optionally of one method)."""
    root = packaged_config_dir()
    names = sorted(str(p.relative_to(root).with_suffix("")) for p in root.glob("*/*.yaml"))
    return [n for n in names if method is None or n.startswith(f"{method}/")]


def resolve_config_path(name_or_file: str, method: str) -> Path:
    """A file path, or a packaged name: ``cmd/ntu60`` or a bare ``tiny`` (for the chosen method)."""
    p = Path(name_or_file)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"config file not found: {name_or_file}")
        return p
    name = name_or_file if "/" in name_or_file else f"{method}/{name_or_file}"
    candidate = packaged_config_dir() / f"{name}.yaml"
    if not candidate.is_file():
        known = ", ".join(packaged_configs(method)) or "none"
        raise ConfigError(f"unknown config {name_or_file!r} for method {method}; packaged: {known}")
    return candidate


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def load_config_tree(path: Path, method: str, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a config file, merging it over its ``base:`` chain."""
    path = path.resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular base chain")
    raw = load_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    base_path = resolve_config_path(str(base), method)
    if not base_path.is_absolute() and not base_path.exists():
        base_path = path.parent / base_path
    return deep_merge(load_config_tree(base_path, method, (*_seen, path)), raw)


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    if "encoder" in top and top["encoder"] != out.get("encoder"):
        # encoder_args belong to the encoder they were written for: a config that switches
        # encoder starts from the new encoder's own defaults.
        out.pop("encoder_args", None)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


_TOP_LEVEL_KEYS = frozenset({"base", "method", "data", "optim", "schedule", "engine", "model"})


def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``a.b=c`` assignments; values are parsed as YAML (``1e-3``, ``[1, 2]``, ``true``, ``null``)."""
    out = copy.deepcopy(tree)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        if "." not in key and key not in _TOP_LEVEL_KEYS:
            # A bare name is a method setting: `--set imd=false` means `--set model.imd=false`.
            key = f"model.{key}"
        try:
            value = _yaml11_float(yaml.safe_load(text) if text.strip() else None)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: value is not valid YAML") from None
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return out


def _yaml11_float(value: Any) -> Any:
    """PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a string; read it as the number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


# --- validation --------------------------------------------------------------------------------

def coerce(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked against a field's type hint, for every config of a run (the engine
    sections and each method's ``model:``): ints are accepted for floats, YAML 1.1's ``1e-3``
    string is read as the number, lists become tuples for tuple fields, ``None`` only where the
    hint allows it. A mismatch is one line naming the key (``where``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        return coerce(where, value, kinds[0]) if len(kinds) == 1 else value
    expected = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if hint in expected:
        if hint is float:
            value = _yaml11_float(value)
        ok = (isinstance(value, bool) if hint is bool else
              not isinstance(value, bool) and isinstance(value, int | float if hint is float
                                                         else hint))
        if not ok:
            raise ConfigError(f"{where}: expected {expected[hint]}, got {value!r}")
        if hint is float and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value) if hint is float else value
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        items = ([coerce(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value)] if args
                 else list(value))
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def build_section(section: str, values: dict[str, Any] | None) -> Any:
    cls = SECTIONS[section]
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"{section}: expected a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(f"{section}.{k}", v, hints[k]) for k, v in values.items()})


def validate_sections(data: DataConfig, optim: OptimConfig, schedule: ScheduleConfig,
                      engine: EngineConfig) -> None:
    checks = [
        (data.window >= 2, "data.window must be >= 2"),
        (data.num_workers >= 0, "data.num_workers must be >= 0"),
        (data.start_method in ("spawn", "forkserver"),
         "data.start_method must be spawn or forkserver (zarr's event loop does not survive fork)"),
        (data.prefetch_factor >= 1, "data.prefetch_factor must be >= 1"),
        (optim.name in ("sgd", "adamw"), "optim.name must be sgd or adamw"),
        (optim.lr > 0, "optim.lr must be > 0"),
        (0 <= optim.momentum < 1, "optim.momentum must be in [0, 1)"),
        (optim.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (schedule.kind in ("step", "cosine"), "schedule.kind must be step or cosine"),
        (all(isinstance(m, int) and m > 0 for m in schedule.milestones),
         "schedule.milestones must be positive epoch numbers"),
        (list(schedule.milestones) == sorted(schedule.milestones),
         "schedule.milestones must be increasing"),
        (0 < schedule.gamma <= 1, "schedule.gamma must be in (0, 1]"),
        (schedule.min_lr >= 0, "schedule.min_lr must be >= 0"),
        (schedule.warmup_epochs >= 0, "schedule.warmup_epochs must be >= 0"),
        (engine.epochs >= 0, "engine.epochs must be >= 0"),
        (engine.batch_size >= 1, "engine.batch_size must be >= 1"),
        (engine.device in ("auto", "cpu", "cuda") or engine.device.startswith("cuda:"),
         "engine.device must be auto, cpu or cuda"),
        (engine.checkpoint_every >= 0, "engine.checkpoint_every must be >= 0"),
        (engine.knn_every >= 0, "engine.knn_every must be >= 0"),
        (engine.log_every >= 0, "engine.log_every must be >= 0"),
        (engine.embed_batch_size >= 1, "engine.embed_batch_size must be >= 1"),
        (engine.grad_clip >= 0, "engine.grad_clip must be >= 0"),
        (engine.threads >= 0, "engine.threads must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    for i, step in enumerate(data.augment):
        if not isinstance(step, dict) or not isinstance(step.get("name"), str):
            raise ConfigError(f"data.augment[{i}]: expected a mapping with a 'name' key")


def build_model_config(method_cls: Any, values: dict[str, Any] | None) -> Any:
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"model: expected a mapping, got {type(values).__name__}")
    try:
        return method_cls.Config.from_dict(values)
    except ConfigError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"model: {exc}") from None


def build_run_config(tree: dict[str, Any], method: str, method_cls: Any) -> RunConfig:
    tree = dict(tree)
    named = tree.pop("method", method)
    if named != method:
        raise ConfigError(f"config is for method {named!r}, not {method!r}")
    unknown = sorted(set(tree) - set(SECTIONS) - {"model"})
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}; known: data, optim, "
                          "schedule, engine, model")
    sections = {name: build_section(name, tree.get(name)) for name in SECTIONS}
    validate_sections(**sections)
    model = build_model_config(method_cls, tree.get("model"))
    return RunConfig(method=method, model=model, **sections)


def resolve_run_config(method: str, method_cls: Any, config: str | None,
                       overrides: list[str] | None = None,
                       cli_values: dict[str, Any] | None = None) -> RunConfig:
    """The full resolution order: packaged/file config < ``--set`` < explicit CLI flags.

    ``cli_values`` maps dotted keys (``engine.epochs``) to values given by dedicated flags;
    ``None`` values are ignored.
    """
    tree: dict[str, Any] = {}
    if config is not None:
        tree = load_config_tree(resolve_config_path(config, method), method)
    tree = apply_overrides(tree, list(overrides or []))
    for key, value in (cli_values or {}).items():
        if value is None:
            continue
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return build_run_config(tree, method, method_cls)
