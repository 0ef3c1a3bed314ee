"""``skeltrain import``: an authors' released checkpoint as a skelkit run directory.

The run directory is like one ``skeltrain run`` writes: ``config.yaml`` (the packaged published
config of the method unless ``--config`` names another, with the sizes the checkpoint's shapes
fix, then ``--set`` on top), ``checkpoints/last.pt`` in skelkit's checkpoint format (no optimizer
state), and ``train.log`` saying where the weights came from. ``skeltrain embed``, ``skeleval``
and ``skeleval finetune`` then use it as any run.

A converter per format maps the authors' state-dict names to the method's ``state_dict()``
names: ``importers/cmd.py`` (CMD) and ``importers/ikem.py`` (CrosSCLR, IKEM, IKEM student), each
exposing ``CONVERTERS = {format: fn(reference_state, method) -> state}`` and optionally
``SETTINGS = {format: fn(reference_state) -> model settings}``. Files are read with
``torch.load(weights_only=True)``: one that needs arbitrary unpickling is refused, never run.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from skelkit.errors import InputError
from skelkit.store.layout import NTU25
from skelkit.store.reader import open_store
from skelkit.store.rundir import RunDir
from skelkit.train.checkpoint import save_checkpoint
from skelkit.train.config import (
    ConfigError,
    apply_overrides,
    build_run_config,
    deep_merge,
    load_config_tree,
    resolve_config_path,
)
from skelkit.train.runs import method_class

Converter = Callable[[dict[str, Tensor], Any], dict[str, Tensor]]
FORMATS = ("cmd", "crossclr", "ikem", "ikem-student")
"""``--from`` values; each is also the skelkit method the weights become."""
_MODULES = ("skelkit.train.importers.cmd", "skelkit.train.importers.ikem")
LOG = logging.getLogger("skelkit.train")


class ImportInputError(InputError):
    """A checkpoint that cannot be imported (refused, unreadable, wrong names or shapes); one
    line, the CLI exits 2."""


def _registries(attribute: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a converter module that exists but fails to import
                raise
            continue
        merged.update(getattr(module, attribute, {}))
    return merged


def converters() -> dict[str, Converter]:
    """Format -> converter, merged from the converter modules present."""
    return _registries("CONVERTERS")


def read_reference_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(state dict, metadata) of a released checkpoint: a bare state dict, or a dict holding it
    under ``state_dict`` (CMD's ``torch.save({'epoch', 'state_dict', 'optimizer', ...})``)."""
    path = Path(path)
    if not path.is_file():
        raise ImportInputError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise ImportInputError(f"{path}: unreadable checkpoint (not a torch.save file of "
                                   "tensors and plain types)") from None
        raise ImportInputError(
            f"{path}: refused: loading it needs arbitrary unpickling (it calls {found[1]}), "
            "which can run code; only tensors and plain types are read "
            "(torch.load weights_only=True)") from None
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ImportInputError(f"{path}: unreadable checkpoint ({type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    meta: dict[str, Any] = {}
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        meta = {k: v for k, v in payload.items() if k in ("epoch", "arch")}
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not payload or not all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in payload.items()):
        raise ImportInputError(f"{path}: not a state dict (name -> tensor), nor a dict holding "
                               "one under 'state_dict'")
    return dict(payload), meta


def check_state(converted: dict[str, Tensor], method: Any, fmt: str) -> None:
    """The converted names and shapes are exactly the method's; else one line saying which
    differ (usually a size the config sets: ``--set model....``)."""
    ours = method.state_dict()
    missing = sorted(set(ours) - set(converted))
    extra = sorted(set(converted) - set(ours))
    if missing or extra:
        parts = [f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
                 if missing else "",
                 f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}"
                 if extra else ""]
        raise ImportInputError(f"{fmt} checkpoint does not fit the {method.name} config: "
                               f"{'; '.join(p for p in parts if p)} (check --config / --set)")
    for name, tensor in converted.items():
        if tuple(tensor.shape) != tuple(ours[name].shape):
            raise ImportInputError(f"{fmt} checkpoint does not fit the {method.name} config: "
                                   f"{name} is {tuple(tensor.shape)} in the checkpoint, "
                                   f"{tuple(ours[name].shape)} here (check --config / --set)")


def import_checkpoint(fmt: str, checkpoint: str | Path, run_dir: str | Path, *,
                      config: str | None = None, overrides: list[str] | None = None,
                      store: str | None = None, protocol: str | None = None) -> dict[str, Any]:
    """Write ``run_dir`` from the released ``checkpoint`` of format ``fmt``; returns a summary."""
    if fmt not in FORMATS:
        raise ImportInputError(f"--from: one of {', '.join(FORMATS)}, got {fmt!r}")
    table = converters()
    if fmt not in table:
        raise ImportInputError(f"--from {fmt}: no converter in this installation "
                               f"(available: {', '.join(sorted(table)) or 'none'})")
    rundir = RunDir(run_dir)
    if rundir.last_checkpoint.exists():
        raise ImportInputError(f"{run_dir} already holds a run; choose another --run-dir")
    state, meta = read_reference_checkpoint(checkpoint)
    cls = method_class(fmt)
    try:
        tree = load_config_tree(resolve_config_path(config or f"{fmt}/ntu60", fmt), fmt)
        settings = _registries("SETTINGS").get(fmt)
        if settings is not None:
            tree = deep_merge(tree, {"model": settings(state)})
        tree = apply_overrides(tree, list(overrides or []))
        tree.setdefault("data", {})
        if store is not None:
            tree["data"]["store"] = str(Path(store).resolve())
        if protocol is not None:
            tree["data"]["protocol"] = protocol
        cfg = build_run_config(tree, fmt, cls)
    except ValueError as exc:  # the reference's own ReferenceFormatError included
        raise ConfigError(str(exc)) from None
    if cfg.data.store:
        opened = open_store(cfg.data.store)
        layout, bodies = opened.layout, opened.max_bodies
    else:  # the released checkpoints are all NTU RGB+D models: 25 joints, two bodies
        layout, bodies = NTU25, 2
    torch.manual_seed(cfg.engine.seed)
    method = cls(cfg.model, layout, num_bodies=bodies)
    try:
        converted = table[fmt](state, method)
    except ValueError as exc:
        raise ImportInputError(f"{checkpoint}: {exc}") from None
    check_state(converted, method, fmt)
    method.load_state_dict(converted, strict=True)

    epoch = int(meta.get("epoch", 0) or 0)
    source = {"format": fmt, "checkpoint": str(Path(checkpoint).resolve()), "epoch": epoch}
    rundir.path.mkdir(parents=True, exist_ok=True)
    config_text = cfg.to_yaml()
    rundir.config.write_text(config_text)
    last = save_checkpoint(rundir.last_checkpoint, method=fmt, epoch=epoch,
                           model=method.state_dict(), optimizer=None, scheduler=None,
                           scaler=None, config_text=config_text,
                           extra={"layout": layout.to_attrs(), "imported_from": source})
    line = (f"imported {fmt} checkpoint {source['checkpoint']} (its epoch {epoch}): "
            f"{len(converted)} tensors, fidelity {cfg.model.fidelity}, layout {layout.name}")
    with rundir.log.open("a") as log:
        log.write(line + "\n")
    LOG.info("%s", line)
    return {"run_dir": str(rundir.path), "checkpoint": str(last), "method": fmt, "epoch": epoch,
            "tensors": len(converted), "store": cfg.data.store}
