"""``skeltrain``: pre-train a method on a store (``run``), export frozen embeddings (``embed``),
turn an authors' released checkpoint into a run (``import``), list the fidelity switches
(``switches``).

Exit codes: 0 success, 2 bad input (one line on stderr, :class:`skelkit.errors.SkelkitGroup`),
3 the loss became NaN/inf. Commands import their modules inside the function, after the checks
that need no torch (the method name, paths, option conflicts): torch and the stores are heavy,
and ``skeltrain --help`` and usage errors must answer at once.
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from skelkit.cli_options import DEVICE, plural, version_option
from skelkit.errors import (
    CONTEXT_SETTINGS,
    EXIT_INTERRUPTED,
    InputError,
    SkelkitGroup,
    one_line,
)
from skelkit.train.config import ConfigError, packaged_configs, resolve_run_config

EXIT_NONFINITE = 3


def _default_config(method: str, store: str | None) -> str:
    """``<method>/<dataset of the store>`` when packaged, else an error naming the choices."""
    if store is None:
        raise ConfigError("no --config and no --store to pick a default config from")
    _check_store_path(store)
    from skelkit.store.reader import open_store

    dataset = open_store(store).dataset
    name = f"{method}/{dataset}"
    if name in packaged_configs(method):
        return name
    raise ConfigError(f"no packaged config {name}; pass --config "
                      f"({', '.join(packaged_configs(method)) or 'none packaged'})")


# Usage checks answered before torch is imported (~4 s here): a mistake costs no wait.

def known_methods() -> list[str]:
    """The method names, without importing the methods: every method ships its packaged configs
    in ``configs/<method>/`` (a test keeps this list equal to the registry)."""
    return sorted({name.split("/")[0] for name in packaged_configs()})


def _check_method(method: str) -> None:
    if method not in known_methods():
        raise ConfigError(f"unknown method {method!r}; known: {', '.join(known_methods())}")


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_embed_out(out: Path) -> None:
    """``--out`` may replace an embedding file, never anything else (notes, a store, a folder):
    this first look needs no h5py; ``export_embeddings`` then checks an HDF5 file's groups."""
    if out.is_dir():
        raise ConfigError(f"--out {out}: a directory; name an .h5 file")
    if out.exists():
        with out.open("rb") as f:
            if f.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
                raise ConfigError(f"--out {out}: exists and is not an HDF5 embedding file; "
                                  "refusing to replace it (move it or pick another --out)")


def _check_store_path(store: str | Path) -> None:
    if not Path(store).exists():
        raise ConfigError(f"{store}: no such store")


@click.group(cls=SkelkitGroup, name="skeltrain", context_settings=CONTEXT_SETTINGS)
@version_option("skeltrain")
def main() -> None:
    """Self-supervised pre-training on a skelkit store."""


def _switch_tables(method: str | None = None) -> str:
    """Every method's switch table (``fidelity: reference`` vs ``paper``), as Markdown."""
    from skelkit.train.fidelity import REGISTRY
    from skelkit.train.methods import METHODS

    names = [method] if method else list(METHODS)
    tables = [REGISTRY[n].describe() if n in REGISTRY
              else f"{n}: no switches declared" for n in names]
    return "\n\n".join(tables)


def _stage_two_warnings(cfg: Any) -> list[str]:
    """CrosSCLR and IKEM mine across views only from ``model.cross_view_epoch`` on: a run that
    ends before it trains stage one alone, and an IKEM teacher that never reached stage two
    hands its student per-modality encoders only. Both are legal, neither is what a user means."""
    lines = []
    start = getattr(cfg.model, "cross_view_epoch", None)
    if start is not None and 0 < cfg.engine.epochs <= start:
        lines.append(f"the run ends after {plural(cfg.engine.epochs, 'epoch')}, before "
                     f"model.cross_view_epoch {start}: stage two (cross-view mining) is never reached; use --epochs above {start}"
                     f" or --set model.cross_view_epoch=N")
    teacher = getattr(cfg.model, "teacher", None)
    if teacher:
        from skelkit.store.rundir import RunDir
        from skelkit.train.checkpoint import CheckpointError, load_checkpoint

        rundir = RunDir(teacher)
        try:
            trained = int(load_checkpoint(rundir.last_checkpoint)["epoch"])
            teacher_start = (rundir.read_config().get("model") or {}).get("cross_view_epoch")
        except (CheckpointError, InputError, KeyError, TypeError, ValueError):
            return lines  # the teacher's own check (load_teacher) names what is wrong with it
        if teacher_start is not None and trained <= int(teacher_start):
            lines.append(f"--teacher {teacher}: trained {plural(trained, 'epoch')}, never reaching its "
                         f"stage two (model.cross_view_epoch {teacher_start}); the student "
                         "distils stage-one encoders")
    return lines


@main.command("run")
@click.argument("method")
@click.option("--store", type=str, default=None, help="Store (.zarr) to train on.")
@click.option("--protocol", type=str, default=None, help="Split protocol, e.g. xsub.")
@click.option("--config", "config", type=str, default=None,
              help="Packaged name (cmd/ntu60, tiny) or a YAML file (a run's config.yaml repeats it).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=0.05 (YAML-typed).")
@click.option("--epochs", type=int, default=None,
              help="Epochs.  [default: the config's engine.epochs]")
@click.option("--batch-size", type=int, default=None,
              help="Batch size.  [default: the config's engine.batch_size]")
@click.option("--device", type=DEVICE, default=None,
              help="torch device.  [default: the config's engine.device, auto]")
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Run directory to write.  [default: runs/METHOD-TIMESTAMP]")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this directory from its last checkpoint.")
@click.option("--seed", type=int, default=None,
              help="Random seed.  [default: the config's engine.seed]")
@click.option("--workers", type=int, default=None,
              help="DataLoader workers.  [default: the config's data.num_workers]")
@click.option("--no-progress", is_flag=True,
              help="No progress bars nor per-epoch lines (train.log keeps the epochs).")
@click.option("--teacher", type=click.Path(path_type=Path), default=None,
              help="ikem-student: the six-modality IKEM run directory to distil from.")
def run_command(method: str, store: str | None, protocol: str | None, config: str | None,
                overrides: tuple[str, ...], epochs: int | None, batch_size: int | None,
                device: str | None, run_dir: Path | None, resume: Path | None, seed: int | None,
                workers: int | None, no_progress: bool, teacher: Path | None) -> None:
    """Pre-train METHOD (e.g. cmd, skeletonclr) on a store.

    \b
    model.fidelity: `reference` computes what the authors' code computes (the published configs
    of cmd, crossclr, ikem, ikem-student), `paper` follows the papers' equations. Each
    difference is a named switch; override one with --set model.switches.NAME=VALUE.
    `skeltrain switches [METHOD]` lists them with the reference's file and line.
    """
    from skelkit.store.rundir import RunDir  # numpy (the store package): after the name check

    _check_method(method)
    cli_values: dict[str, Any] = {
        "data.store": store, "data.protocol": protocol, "engine.epochs": epochs,
        "engine.batch_size": batch_size, "engine.device": device, "engine.seed": seed,
        "data.num_workers": workers,
    }
    if teacher is not None:
        cli_values["model.teacher"] = str(teacher)
    if resume is not None:
        if run_dir is not None and Path(run_dir).resolve() != Path(resume).resolve():
            raise ConfigError("--run-dir and --resume name different directories")
        previous = RunDir(resume)
        tree_method = previous.read_config().get("method")
        if not previous.last_checkpoint.is_file():
            raise ConfigError(f"{resume}: no {previous.last_checkpoint.relative_to(resume)}"
                              " to resume from")
        if tree_method != method:
            raise ConfigError(f"{resume} is a {tree_method} run, not {method}")
        config, run_dir = str(previous.config), previous.path
    elif config is None:
        config = _default_config(method, store)
    elif store is not None:
        _check_store_path(store)
    if run_dir is None:
        run_dir = Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    if resume is None:
        # A run still training into run_dir is named (its lock's holder) before "already
        # holds a run", which its epoch-0 checkpoint would otherwise answer.
        from skelkit.store.lock import require_unheld

        require_unheld(RunDir(run_dir).lock_file, run_dir)
    if resume is None and RunDir(run_dir).last_checkpoint.exists():
        raise ConfigError(f"{run_dir} already holds a run; use --resume {run_dir} "
                          "or another --run-dir")

    # torch from here on.
    from skelkit.train.distributed import shutdown_distributed
    from skelkit.train.engine import NonFiniteLossError, TrainInterrupted, train
    from skelkit.train.runs import method_class

    cfg = resolve_run_config(method, method_class(method), config, list(overrides), cli_values)
    if int(os.environ.get("RANK", "0")) == 0:
        for line in _stage_two_warnings(cfg):
            click.echo(f"skeltrain run: warning: {line}", err=True)
    try:
        try:
            result = train(cfg, run_dir, resume=resume is not None, progress=not no_progress)
        finally:
            shutdown_distributed()
    except NonFiniteLossError as exc:
        click.echo(f"skeltrain run: error: {one_line(exc)}", err=True)
        sys.exit(EXIT_NONFINITE)
    except TrainInterrupted as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(f"\nskeltrain run: {exc.describe()}", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"run {result.run_dir}: {plural(result.epochs, 'epoch')}, checkpoint {result.last_checkpoint}")


# Listed in the help from the packaged configs (no torch): a new method shows up by itself.
run_command.help = inspect.cleandoc(run_command.help or "") + "\n\nMETHOD: " + ", ".join(known_methods()) + "."


@main.command("switches")
@click.argument("method", required=False)
def switches_command(method: str | None) -> None:
    """List the fidelity switches of METHOD (default: every method): the reference value, the
    paper value and what the authors' code does, with file and line."""
    if method is not None:
        _check_method(method)  # an unknown name is bad input, named with the known ones
    click.echo(_switch_tables(method))


@main.command("import")
@click.option("--from", "fmt", type=click.Choice(["cmd", "crossclr", "ikem", "ikem-student"]),
              required=True, help="Whose checkpoint: CMD's MoCo, or the IKEM repository's "
              "CrosSCLR / IKEM / IKEM-student processors.")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), required=True,
              help="Run directory to write (must not hold a run yet).")
@click.option("--config", "config", type=str, default=None,
              help="Packaged name or YAML file (default: <method>/ntu60); the checkpoint's "
              "shapes set the model sizes.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set model.topk=8.")
@click.option("--store", type=str, default=None, help="Store the run evaluates on (data.store).")
@click.option("--protocol", type=str, default=None, help="Split protocol (data.protocol).")
def import_command(fmt: str, checkpoint: Path, run_dir: Path, config: str | None,
                   overrides: tuple[str, ...], store: str | None, protocol: str | None) -> None:
    """Turn an authors' released CHECKPOINT into a skelkit run directory.

    Read with torch.load(weights_only=True): a file that needs arbitrary unpickling is refused
    (exit 2), never executed. `skeltrain embed`, `skeleval` and `skeleval finetune` then use the
    run like any other.
    """
    if not checkpoint.is_file():
        raise ConfigError(f"{checkpoint}: no such checkpoint")
    from skelkit.train.importers import import_checkpoint

    summary = import_checkpoint(fmt, checkpoint, run_dir, config=config,
                                overrides=list(overrides), store=store, protocol=protocol)
    click.echo(f"run {summary['run_dir']}: {summary['method']} weights from {checkpoint} "
               f"(epoch {summary['epoch']}, {summary['tensors']} tensors), checkpoint "
               f"{summary['checkpoint']}")


@main.command("embed")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run directory written by `skeltrain run`.")
@click.option("--checkpoint", type=str, default=None,
              help="Checkpoint file (default: the run's checkpoints/last.pt).")
@click.option("--modality", type=str, default="joint", show_default=True,
              help="A trained modality, or `all` for every trained stream (see --combine).")
@click.option("--combine", type=click.Choice(["mean", "concat"]), default="mean",
              show_default=True, help="With --modality all: average the streams (the papers' "
              "ensembles) or concatenate them.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output .h5 file.")
@click.option("--device", type=DEVICE, default="auto", show_default=True, help="torch device.")
@click.option("--batch-size", type=int, default=None)
@click.option("--workers", type=int, default=None)
@click.option("--store", type=str, default=None,
              help="Encode this store instead of the run's (same layout).")
@click.option("--protocol", type=str, default=None, help="Split protocol instead of the run's.")
@click.option("--no-progress", is_flag=True)
def embed_command(run_dir: Path, checkpoint: str | None, modality: str, combine: str, out: Path,
                  device: str, batch_size: int | None, workers: int | None, store: str | None,
                  protocol: str | None, no_progress: bool) -> None:
    """Write frozen train/test embeddings of a run (docs/design.md §4.4 HDF5)."""
    from skelkit.store.rundir import RunDir

    RunDir(run_dir).require()
    _check_embed_out(out)
    if store is not None:
        _check_store_path(store)
    from skelkit.train.embed import export_embeddings

    summary = export_embeddings(run_dir, out, checkpoint=checkpoint, modality=modality,
                                device=device, batch_size=batch_size, num_workers=workers,
                                progress=not no_progress, combine=combine, store=store,
                                protocol=protocol)
    click.echo(f"wrote {summary['out']}: {summary['train']} train, {summary['test']} test, "
               f"dim {summary['dim']}, {summary['method']} {summary['modality']} "
               f"epoch {summary['epoch']}")


if __name__ == "__main__":
    main()
