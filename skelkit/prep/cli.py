"""`skelprep`: synth, build, info and verify.

Errors that stop a command print one line, ``skelprep <command>: error: <why>``, and exit 2
(:class:`skelkit.errors.SkelkitGroup`); `verify` exits 1 when the store it checked is wrong.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from skelkit.cli_options import version_option
from skelkit.errors import CONTEXT_SETTINGS, EXIT_INTERNAL, InputError, SkelkitGroup
from skelkit.prep.limits import DEFAULT_MAX_FILE_MB
from skelkit.store.schema import FIXED_FRAMES

# The formats, the build, the store reader and the generator pull in numba, zarr, pandas, dask
# and scipy (~1.5 s of imports against ~0.1 s without): each command imports what it runs in its
# body, so -h and usage errors answer at once. The registry holds the names; a test keeps this
# help text equal to it (tests/unit/prep/test_cli.py).
DATASET_HELP = "ntu60|ntu120|pku2|utd-mhad|generic"
SYNTH_DATASETS = ("ntu60", "ntu120", "pku2")
"""What `skelprep synth` generates (skelkit.synth.plan.SPECS; a test keeps the two equal)."""
SYNTH_SUFFIXES = (".skeleton", ".txt")
"""The files synth writes (NTU ``.skeleton``; PKU ``skeleton/``, ``label/`` and split ``.txt``):
--overwrite empties a folder holding only such files, nothing else."""
EXIT_VERIFY_FAILED = EXIT_INTERNAL
"""A store that fails verification: exit 1, one line per problem (documented in --help)."""


def _existing_store(store: Path) -> Path:
    """A missing store answered before the reader (zarr) is imported."""
    if not store.exists():
        raise InputError(f"{store}: no such store")
    return store


def _check_build_out(out: Path, resume: bool, overwrite: bool) -> None:
    """An existing ``--out`` that is not a store (no ``zarr.json``) is never resumed or replaced:
    say so with advice that works, before the build starts (the builder would refuse too, but
    its advice names --resume and --overwrite, which both refuse such a folder)."""
    if not out.exists() or (out / "zarr.json").is_file():
        return
    if not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder; pick another --out")
    if any(out.iterdir()):
        raise InputError(f"--out {out}: an existing folder that is not a skelkit store; "
                         f"nothing was changed: pick a new --out (e.g. {out / 'store.zarr'})")
    if resume:
        raise InputError(f"--out {out}: an empty folder, no build to resume; drop --resume")
    if not overwrite:
        raise InputError(f"--out {out}: an empty folder; --overwrite builds into it")


def kernels_cached() -> bool:
    """Whether numba's on-disk cache holds the build's kernels (``cache=True``): numba's own
    places, NUMBA_CACHE_DIR when set, else ``__pycache__`` beside the kernels or, when that is
    not writable, the user's cache folder. Looked up without importing numba (a second)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("skelkit.prep.kernels")
    if spec is None or not spec.submodule_search_locations:
        return False
    kernels = Path(next(iter(spec.submodule_search_locations)))
    configured = os.environ.get("NUMBA_CACHE_DIR")
    roots = ([Path(configured)] if configured
             else [kernels / "__pycache__", Path.home() / ".cache" / "numba"])
    # normalize.py's kernels run in every dataset's build.
    return any(any(root.rglob("normalize.*.nbi")) for root in roots if root.is_dir())


def _dataset_option(f):
    return click.option("--dataset", required=True, metavar=DATASET_HELP,
                        help="Which dataset (its raw format, protocols and missing list).")(f)


@click.group(cls=SkelkitGroup, name="skelprep", context_settings=CONTEXT_SETTINGS)
@version_option("skelprep")
def main() -> None:
    """Raw NTU RGB+D 60/120, PKU-MMD II, UTD-MHAD or generic skeletons into a Zarr feature store."""


def _prepare_synth_out(out: Path, overwrite: bool) -> None:
    """A non-empty ``--out`` would mix old and new files: refused, or with ``--overwrite``
    emptied first when all it holds is raw files synth could have written."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not overwrite:
        raise InputError(f"--out {out}: not empty (synth would mix old and new files); pick an "
                         "empty folder or pass --overwrite")
    files = [p for p in out.rglob("*") if not p.is_dir()]
    foreign = [p for p in files if p.suffix not in SYNTH_SUFFIXES]
    if foreign:
        raise InputError(f"--out {out}: holds {foreign[0].relative_to(out)} (and "
                         f"{len(foreign) - 1} more) that synth does not write; refusing to "
                         "empty it")
    import shutil

    shutil.rmtree(out)


@main.command()
@click.option("--dataset", required=True, type=click.Choice(SYNTH_DATASETS),
              help="Which dataset's raw format, protocols and missing list.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Folder to write.")
@click.option("--classes", type=int, default=None, help="Number of action classes.")
@click.option("--performers", type=int, default=None, help="Number of performers.")
@click.option("--seed", type=int, default=0)
@click.option("--nuisance", type=click.Choice(["real", "none"]), default="real",
              help="real: the nuisance of genuine recordings (camera tilt and roll, body sizes, "
                   "timing, sensor noise, dropped joints; skelkit/synth/nuisance.py); "
                   "none: the earlier, milder generator, bit for bit.")
@click.option("--overwrite", is_flag=True,
              help="Empty a non-empty --out first (only when it holds nothing but the raw files "
                   "synth writes).")
def synth(dataset: str, out: Path, classes: int | None, performers: int | None, seed: int,
          nuisance: str, overwrite: bool) -> None:
    """Write a small synthetic dataset in the genuine raw format."""
    _prepare_synth_out(out, overwrite)
    from skelkit.synth.dataset import synth_dataset

    try:
        summary = synth_dataset(dataset, out, classes=classes, performers=performers, seed=seed,
                                nuisance=nuisance)
    except (ValueError, OSError) as e:
        raise InputError(str(e)) from None
    click.echo(", ".join(f"{k}: {v}" for k, v in summary.items()))


@main.command()
@_dataset_option
@click.option("--raw", required=True, type=click.Path(path_type=Path), help="Raw dataset folder.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Store to write.")
@click.option("--frames", type=int, default=FIXED_FRAMES, help="Fixed-length frames.")
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
@click.option("--normalise", default="layout", metavar="layout|center[:JOINT]|none",
              help="generic: how samples are normalised.")
@click.option("--allow-outside-raw", is_flag=True,
              help="generic: admit manifest files outside --raw (by default such rows are "
                   "skipped with a reason).")
@click.option("--max-file-mb", type=float, default=DEFAULT_MAX_FILE_MB,
              help="Skip raw files larger than this many MB (10^6 bytes) without reading them "
                   "(a reason in the report); 0: no limit. The default is 25 times the "
                   "largest genuine file.")
def build(dataset: str, raw: Path, out: Path, frames: int, workers: int | None,
          scheduler: str | None, missing: Path | None, resume: bool, overwrite: bool,
          manifest: Path | None, layout: str | None, normalise: str,
          allow_outside_raw: bool, max_file_mb: float) -> None:
    """Build a store from raw files (parallel on dask, resumable)."""
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    _check_build_out(out, resume, overwrite)
    if not kernels_cached():
        # Otherwise the bar sits at 0 for the minute numba takes to compile, without a word.
        click.echo("skelprep build: compiling the numba kernels on first use (about a minute "
                   "on 2 cores; cached for later builds)", err=True)
    from skelkit.prep.builder.pipeline import BuildOptions, build_store
    from skelkit.prep.report import format_report

    opts = BuildOptions(dataset=dataset, raw=raw, out=out, frames=frames, workers=workers,
                        scheduler=scheduler, missing=missing, resume=resume, overwrite=overwrite,
                        manifest=manifest, layout=layout, normalise=normalise,
                        allow_outside_raw=allow_outside_raw, max_file_mb=max_file_mb)
    click.echo(format_report(build_store(opts)))


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(store: Path, as_json: bool) -> None:
    """Describe a store: dataset, layout, splits, classes, modalities, size, build report."""
    _existing_store(store)
    from skelkit.prep.info import format_info, store_info

    data = store_info(store)
    click.echo(json.dumps(data, indent=2) if as_json else format_info(data))


@main.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--subset", type=int, default=32,
              help="Samples whose modalities are re-derived from the stored joints.")
def verify(store: Path, subset: int) -> None:
    """Check schema, shapes, dtypes, finite values, offsets, splits and modality derivation.

    Every chunk the arrays need must be stored (a missing one would read as zeros), and every
    chunk is read once, its checksum checked (stores of format 2): a full read of the store.
    Exit 0: the store passed; 1: it failed a check (one line per problem); 2: not a store.
    """
    _existing_store(store)
    import time

    from skelkit.prep.verify import verify_store

    started = time.perf_counter()
    problems, summary = verify_store(store, subset=subset)
    seconds = time.perf_counter() - started
    if summary.get("note"):
        click.echo(f"skelprep verify: note: {summary['note']}", err=True)
    if problems:
        for p in problems:
            click.echo(f"skelprep verify: {p}", err=True)
        sys.exit(EXIT_VERIFY_FAILED)
    checked = "checksums verified" if summary.get("checksums") else "no checksums to verify"
    click.echo(f"{store}: ok ({summary.get('dataset')}, {summary.get('samples')} samples, "
               f"{summary.get('rederived', 0)} re-derived; every chunk present and read, "
               f"{checked}: {summary.get('bytes', 0) / 1e6:.1f} MB in {seconds:.1f} s)")


if __name__ == "__main__":
    main()
