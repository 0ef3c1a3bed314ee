"""`skelprep`: synth, build, info and verify.

Errors that stop a command print one line to stderr and exit with code 2 (no traceback);
`verify` exits 1 when the store is wrong.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from skelkit import __version__

DATASET_NAMES = ("ntu60", "ntu120", "pku2", "utd-mhad", "generic")
EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 1


class UserError(Exception):
    """A reason to stop with exit code 2 and one line."""


def _fail(command: str, message: str) -> None:
    click.echo(f"skelprep {command}: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


class OneLineErrors(click.Group):
    """Click prints usage blocks for bad options; skelprep prints one line instead."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.ctx.get_help())
            sys.exit(0)
        except click.exceptions.Abort:
            click.echo("skelprep: aborted", err=True)
            sys.exit(130)
        except click.UsageError as e:
            command = e.ctx.command.name if e.ctx is not None and e.ctx.command else "skelprep"
            prefix = "skelprep" if command == self.name else f"skelprep {command}"
            click.echo(f"{prefix}: error: {e.format_message()}", err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            click.echo(f"skelprep: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)


def _dataset_option(f):
    return click.option("--dataset", required=True, metavar="|".join(DATASET_NAMES),
                        help="Which dataset (its raw format, protocols and missing list).")(f)


def _check_dataset(command: str, dataset: str) -> None:
    if dataset not in DATASET_NAMES:
        _fail(command, f"unknown dataset {dataset!r}; choose one of {', '.join(DATASET_NAMES)}")


@click.group(cls=OneLineErrors, name="skelprep")
@click.version_option(version=__version__, prog_name="skelprep")
def main() -> None:
    """Raw NTU RGB+D 60/120 and PKU-MMD II skeletons into a Zarr feature store."""


@main.command()
@_dataset_option
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--classes", type=int, default=None, help="Number of action classes.")
@click.option("--performers", type=int, default=None, help="Number of performers.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--nuisance", type=click.Choice(["real", "none"]), default="real", show_default=True,
              help="real: the nuisance of genuine recordings (camera tilt and roll, body sizes, "
                   "timing, sensor noise, dropped joints; skelkit/prep/synth_nuisance.py); "
                   "none: the earlier, milder generator, bit for bit.")
def synth(dataset: str, out: Path, classes: int | None, performers: int | None, seed: int,
          nuisance: str) -> None:
    """Write a small synthetic dataset in the genuine raw format."""
    _check_dataset("synth", dataset)
    from skelkit.prep.synth import synth_dataset

    try:
        summary = synth_dataset(dataset, out, classes=classes, performers=performers, seed=seed,
                                nuisance=nuisance)
    except (ValueError, OSError) as e:
        _fail("synth", str(e))
    click.echo(", ".join(f"{k}: {v}" for k, v in summary.items()))


@main.command()
@_dataset_option
@click.option("--raw", required=True, type=click.Path(path_type=Path), help="Raw dataset folder.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Store to write.")
@click.option("--frames", type=int, default=50, show_default=True, help="Fixed-length frames.")
@click.option("--workers", type=int, default=None,
              help="Local worker processes (default: all cores; 1 runs in this process).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="An existing dask.distributed scheduler, e.g. tcp://host:8786.")
@click.option("--missing", type=click.Path(path_type=Path), default=None,
              help="Missing-skeleton list replacing the packaged official one.")
@click.option("--resume", is_flag=True, help="Finish an interrupted build of --out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at --out.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None,
              help="generic: the CSV manifest (default RAW/manifest.csv).")
@click.option("--layout", default=None, metavar="NAME|FILE.json",
              help="generic: the skeleton layout (e.g. kinect20, ntu25, or a JSON file).")
@click.option("--normalise", default="layout", show_default=True,
              metavar="layout|center[:JOINT]|none", help="generic: how samples are normalised.")
def build(dataset: str, raw: Path, out: Path, frames: int, workers: int | None,
          scheduler: str | None, missing: Path | None, resume: bool, overwrite: bool,
          manifest: Path | None, layout: str | None, normalise: str) -> None:
    """Build a store from raw files (parallel on dask, resumable)."""
    _check_dataset("build", dataset)
    if resume and overwrite:
        _fail("build", "--resume and --overwrite exclude each other")
    from skelkit.prep.build import BuildError, BuildOptions, build_store
    from skelkit.prep.datasets import DatasetError
    from skelkit.prep.report import format_report
    from skelkit.store.errors import StoreError

    opts = BuildOptions(dataset=dataset, raw=raw, out=out, frames=frames, workers=workers,
                        scheduler=scheduler, missing=missing, resume=resume, overwrite=overwrite,
                        manifest=manifest, layout=layout, normalise=normalise)
    try:
        report = build_store(opts)
    except (BuildError, DatasetError, StoreError) as e:
        _fail("build", str(e))
    click.echo(format_report(report))


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(store: Path, as_json: bool) -> None:
    """Describe a store: dataset, layout, splits, classes, modalities, size, build report."""
    from skelkit.prep.info import format_info, store_info
    from skelkit.store.errors import StoreError

    try:
        data = store_info(store)
    except StoreError as e:
        _fail("info", str(e))
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--subset", type=int, default=32, show_default=True,
              help="Samples whose modalities are re-derived from the stored joints.")
def verify(store: Path, subset: int) -> None:
    """Check schema, shapes, dtypes, finite values, offsets, splits and modality derivation."""
    from skelkit.prep.verify import verify_store

    if not store.exists():
        _fail("verify", f"{store}: no such store")
    problems, summary = verify_store(store, subset=subset)
    if problems:
        for p in problems:
            click.echo(f"skelprep verify: {p}", err=True)
        sys.exit(EXIT_VERIFY_FAILED)
    click.echo(f"{store}: ok ({summary.get('dataset')}, {summary.get('samples')} samples, "
               f"{summary.get('rederived', 0)} re-derived)")


if __name__ == "__main__":
    main()
