"""``skeleval``: KNN, linear probe, t-SNE and curve figures, and the results table (issue 4).

Every bad input ends as one line on stderr and exit code 2 (:class:`skelkit.errors.SkelkitGroup`);
results go to stdout (``--json`` for machines), notes about recording go to stderr. Commands
import their modules inside the function: torch and the stores are heavy, and ``skeleval --help``
must answer at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from skelkit.cli_options import DEVICE, version_option
from skelkit.errors import CONTEXT_SETTINGS, InputError, SkelkitGroup


@click.group(cls=SkelkitGroup, name="skeleval", context_settings=CONTEXT_SETTINGS)
@version_option("skeleval")
def main() -> None:
    """Evaluate frozen skeleton representations (docs/design.md §5.10)."""


def _device(name: str) -> Any:
    """The torch device of ``--device`` (the run abstraction's one resolution)."""
    # Imported here: torch is heavy, and `skeleval --help` must answer at once.
    from skelkit.train.runs import resolve_device

    return resolve_device(name)


def _record(target: Path | None, record: dict[str, Any], enabled: bool,
            note: str | None = None) -> None:
    """Append the result to ``target``/eval.jsonl (a run or baseline directory); ``note`` says
    why a result that names a run is not recorded there."""
    if enabled and target is None and note is not None:
        click.echo(f"skeleval: note: {note}", err=True)
    if enabled and target is None and record.get("source") == "raw":
        click.echo("skeleval: note: raw baseline not recorded; --record-dir DIR keeps it for "
                   "`skeleval report`", err=True)
    if not enabled or target is None:
        return
    from skelkit.eval.report import append_eval_record

    try:
        written = append_eval_record(target, record)
    except OSError as err:
        click.echo(f"skeleval: note: could not record in {target}: {err.strerror}", err=True)
        return
    click.echo(f"skeleval: recorded in {written}", err=True)


def _warn_absent_classes(split: Any) -> None:
    line = split.absent_classes_warning()
    if line is not None:
        click.echo(f"skeleval: warning: {line}", err=True)


def _warn_near_constant(source_label: str, stats: Any, standardized: bool | None) -> None:
    line = stats.warning(source_label)
    if line is None:
        return
    if standardized is None:
        tail = ""
    elif standardized:
        tail = " (this probe standardises them)"
    else:
        tail = " (this probe does not: expect chance-level accuracy; --standardize fixes it)"
    click.echo(f"skeleval: warning: {line}{tail}", err=True)


def _source_options(func: Any) -> Any:
    options = [
        click.option("--emb", "emb", default=None,
                     type=click.Path(path_type=Path, dir_okay=False),
                     help="Embedding file (HDF5, groups train and test; `skeltrain embed`)."),
        click.option("--run", "run", default=None, type=click.Path(path_type=Path),
                     help="Run directory: encode the store with its frozen encoder."),
        click.option("--store", default=None, type=click.Path(path_type=Path),
                     help="Store for --run (default: the run's) or --raw."),
        click.option("--protocol", default=None,
                     help="Split protocol for --run (default: the run's) or --raw."),
        click.option("--raw", is_flag=True,
                     help="Baseline: the store's raw fixed joints, flattened, as features."),
        click.option("--modality", default="joint", show_default=True,
                     help="Stream of --run, or fixed modality of --raw."),
        click.option("--checkpoint", default=None,
                     help="Checkpoint of --run (default: checkpoints/last.pt)."),
        click.option("--record-dir", default=None, type=click.Path(path_type=Path),
                     help="Record in DIR/eval.jsonl (for `skeleval report`): a --raw "
                          "baseline, or an --emb result in the run directory DIR."),
        click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
                     help="DataLoader workers for --run."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_SOURCE_KEYS = ("emb", "run", "store", "protocol", "raw", "modality", "checkpoint", "record_dir",
                "workers")


def _source_args(kwargs: dict[str, Any]) -> Any:
    from skelkit.eval.source_args import SourceArgs

    return SourceArgs(**{key: kwargs[key] for key in _SOURCE_KEYS})


def _open(kwargs: dict[str, Any], device: str) -> Any:
    args = _source_args(kwargs)
    for key in _SOURCE_KEYS:
        kwargs.pop(key)
    args.kind()  # a usage error before torch is imported
    from skelkit.eval.sources import open_source  # heavy (torch): only for a valid source

    return open_source(args, _device(device))


_emb_option = click.option(
    "--emb", "emb", required=True, type=click.Path(path_type=Path, dir_okay=False),
    help="Embedding file (HDF5, groups train and test; written by `skeltrain embed`).",
)
_device_option = click.option(
    "--device", type=DEVICE, default="auto", show_default=True, help="torch device."
)
_record_option = click.option(
    "--record/--no-record", default=True, show_default=True,
    help="Append the result to the run's (or --record-dir's) eval.jsonl.",
)
_progress_option = click.option("--progress/--no-progress", default=True, show_default=True,
                                help="Progress bars (encoding, probe epochs) on stderr.")


@main.command()
@_source_options
@click.option("--k", "k", default=1, show_default=True, type=click.IntRange(min=1),
              help="Number of neighbours.")
@click.option("--weighted", is_flag=True, help="Vote with exp(sim / T) instead of counts.")
@click.option("--temperature", default=0.1, show_default=True,
              type=click.FloatRange(min=0, min_open=True), help="T of the weighted vote.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_device_option
@_record_option
@_progress_option
def knn(k: int, weighted: bool, temperature: float, as_json: bool, device: str, record: bool,
        progress: bool, **source_kwargs: Any) -> None:
    """Classify the test side by its nearest train features (cosine similarity)."""
    source = _open(source_kwargs, device)  # first: a usage error answers before torch loads
    from skelkit.eval.features import feature_stats
    from skelkit.knn import knn_evaluate

    split = source.features(progress=progress)
    stats = feature_stats(split.train_embedding)
    _warn_near_constant(source.label, stats, None)
    _warn_absent_classes(split)
    result = knn_evaluate(
        split.train_embedding, split.train_label, split.test_embedding, split.test_label,
        k=k, weighted=weighted, temperature=temperature, num_classes=split.num_classes,
        device=_device(device),
    )
    summary = {**result.as_dict(), **stats.summary(), "source": source.kind}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        vote = f", weighted T={temperature:g}" if weighted else ""
        click.echo(
            f"KNN k={result.k} (cosine{vote}) {source.label}: top-1 {100 * result.top1:.2f} %  "
            f"top-5 {100 * result.top5:.2f} %  (train {result.n_train}, test {result.n_test})"
        )
    _record(source.record_dir, {**source.provenance(), "kind": "knn", **summary}, record,
            source.record_note)


@main.command()
@_source_options
@click.option("--recipe", "recipe_name", default="default", show_default=True,
              help="Probe protocol: default, cmd, i2md, crossclr, ikem, or auto (the run's "
                   "method's own); cmd/i2md train on random crops and need --run.")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Override the recipe's epochs.")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Override the recipe's learning rate.")
@click.option("--milestones", default=None,
              help="Override the recipe's x0.1 epochs (comma-separated; '' for none).")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Override the recipe's batch size.")
@click.option("--weight-decay", default=None, type=click.FloatRange(min=0),
              help="Override the recipe's weight decay.")
@click.option("--standardize/--no-standardize", default=None,
              help="Standardise features with train-side statistics (default: the recipe's).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@_device_option
@_record_option
@_progress_option
def linear(recipe_name: str, epochs: int | None, lr: float | None, milestones: str | None,
           batch_size: int | None, weight_decay: float | None, standardize: bool | None,
           seed: int, as_json: bool, device: str, record: bool, progress: bool,
           **source_kwargs: Any) -> None:
    """Train a linear classifier on frozen train features; score the test side."""
    _source_args(source_kwargs).kind()  # a usage error answers before torch loads
    from skelkit.eval.features import feature_stats
    from skelkit.eval.linear import (
        BEST_LABEL,
        parse_milestones,
        progress_bar,
        train_linear_probe,
    )
    from skelkit.eval.recipes import resolve_recipe, with_overrides

    source = _open(source_kwargs, device)
    try:
        recipe = resolve_recipe(recipe_name, source.method)
        recipe, deviations = with_overrides(
            recipe, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
            standardize=standardize, seed=seed,
            milestones=parse_milestones(milestones) if milestones is not None else None)
    except ValueError as err:
        raise InputError(str(err)) from None
    deviations.pop("seed", None)  # a seed is a repeat, not a change of protocol
    config = recipe.probe
    if recipe.needs_run and source.kind != "run":
        raise InputError(f"recipe {recipe.name} trains on random temporal crops redrawn "
                             "every epoch: it needs --run RUN (with --store/--protocol), not "
                             "frozen features")
    if source.kind == "run":
        from skelkit.eval.run_features import probe_run

        result, split = probe_run(source.encoder, recipe, config, progress=progress)
        source.split = split
    else:
        split = source.features()
        with progress_bar(config.epochs, f"linear ({recipe.name})", progress) as bar:
            result = train_linear_probe(
                split.train_embedding, split.train_label, split.test_embedding,
                split.test_label, config, num_classes=split.num_classes, device=_device(device),
                recipe=recipe.name, progress=bar)
    _warn_near_constant(source.label, feature_stats(split.train_embedding), config.standardize)
    _warn_absent_classes(split)
    summary = {**result.as_dict(), "recipe_source": recipe.source, "source": source.kind}
    if deviations:
        summary["deviations"] = {key: list(value) if isinstance(value, tuple) else value
                                 for key, value in deviations.items()}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        best = result.best
        best_text = ""
        if best is not None:
            best_text = (f"; {BEST_LABEL}: {100 * best.top1:.2f} % at epoch {best.epoch}")
        changed = ""
        if deviations:
            changed = ", changed: " + ", ".join(
                f"{key}={value}" for key, value in summary["deviations"].items())
        click.echo(
            f"linear probe [{recipe.name}{changed}] {source.label}: top-1 "
            f"{100 * result.top1:.2f} %  top-5 {100 * result.top5:.2f} % after epoch "
            f"{config.epochs}{best_text}  (train top-1 {100 * result.train_top1:.2f} %, lr "
            f"{config.lr:g}, batch {config.batch_size}, "
            f"{'standardised' if config.standardize else 'unstandardised'}, seed {seed}; "
            f"train {result.n_train}, test {result.n_test})"
        )
    _record(source.record_dir, {**source.provenance(), "kind": "linear", **summary}, record,
            source.record_note)


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory written by `skeltrain run` (config.yaml, checkpoints/).")
@click.option("--store", "store", required=True, type=click.Path(path_type=Path),
              help="Store to fine-tune and test on (another dataset than the run's: transfer).")
@click.option("--protocol", required=True, help="Split protocol of the store, e.g. xsub.")
@click.option("--modality", default="joint", show_default=True,
              help="Which trained stream's query encoder to fine-tune.")
@click.option("--checkpoint", default=None, help="Checkpoint (default: checkpoints/last.pt).")
@click.option("--recipe", default=None, metavar="NAME",
              help="Named protocol: i2md, cmd, crossclr, semi1, semi10, transfer, supervised "
                   "(skelkit/eval/finetune_recipes.py); the options below override its "
                   "settings. Default: i2md, or supervised with --scratch.")
@click.option("--label-fraction", default=None,
              type=click.FloatRange(min=0, max=1, min_open=True),
              help="Fraction of the labelled train side (semi-supervised). [recipe; 1]")
@click.option("--subset", default=None, type=click.Choice(["stratified", "uniform"]),
              help="How --label-fraction draws: per class, or regardless of class. [recipe]")
@click.option("--repeats", default=None, type=click.IntRange(min=1),
              help="Subsets drawn (seed-derived); mean and std over them. [recipe]")
@click.option("--epochs", default=None, type=click.IntRange(min=1), help="[recipe]")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help="[recipe]")
@click.option("--milestones", default=None,
              help="Epochs at which the learning rate is multiplied by 0.1 (comma-separated). "
                   "[recipe]")
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="[recipe; else the run's engine.batch_size]")
@click.option("--weight-decay", default=None, type=click.FloatRange(min=0), help="[recipe]")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--scratch", is_flag=True,
              help="Random initialisation instead of the checkpoint: the supervised baseline.")
@click.option("--augment", is_flag=True,
              help="Train on the run's pre-training augmentation instead of un-augmented views.")
@click.option("--workers", default=0, show_default=True, type=click.IntRange(min=0),
              help="DataLoader workers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_device_option
@_record_option
def finetune(run_dir: Path, store: Path, protocol: str, modality: str, checkpoint: str | None,
             recipe: str | None, label_fraction: float | None, subset: str | None,
             repeats: int | None, epochs: int | None, lr: float | None, milestones: str | None,
             batch_size: int | None, weight_decay: float | None, seed: int, scratch: bool,
             augment: bool, workers: int, as_json: bool, progress: bool, device: str,
             record: bool) -> None:
    """Fine-tune a run's encoder and a new linear classifier on a store; score its test side."""
    import dataclasses

    from skelkit.eval.finetune import run_finetune
    from skelkit.eval.finetune_recipes import (
        DEFAULT_RECIPE,
        DEFAULT_SCRATCH_RECIPE,
        finetune_recipe,
    )
    from skelkit.eval.linear import parse_milestones

    try:
        chosen = finetune_recipe(recipe or (DEFAULT_SCRATCH_RECIPE if scratch else DEFAULT_RECIPE))
        given = {"label_fraction": label_fraction, "subset": subset, "repeats": repeats,
                 "epochs": epochs, "lr": lr, "batch_size": batch_size,
                 "weight_decay": weight_decay,
                 "milestones": None if milestones is None else parse_milestones(milestones)}
        overrides = {k: v for k, v in given.items() if v is not None}
        if augment:  # the run's own augmentation replaces the recipe's views
            overrides.update(augment=True, train_crop=None)
        config = dataclasses.replace(chosen.config, seed=seed, num_workers=workers, **overrides)
    except ValueError as err:
        raise InputError(str(err)) from None
    epochs, lr, label_fraction, repeats = (config.epochs, config.lr, config.label_fraction,
                                           config.repeats)
    result = run_finetune(run_dir, store, protocol, modality=modality, checkpoint=checkpoint,
                          scratch=scratch, config=config, device=_device(device),
                          progress=progress,
                          require_transfer=chosen.transfer)
    summary = result.as_dict()
    if as_json:
        click.echo(json.dumps(summary))
    else:
        what = "supervised from scratch (random init)" if scratch else "fine-tune"
        spread = ""
        if result.top1_std is not None:
            spread = f" ± {100 * result.top1_std:.2f}"
        top5_spread = f" ± {100 * result.top5_std:.2f}" if result.top5_std is not None else ""
        where = f"{result.provenance['dataset']} {protocol}"
        if result.transfer:
            where += f" (transfer from {result.provenance['pretrain_dataset']})"
        click.echo(
            f"{what} {result.provenance['method']} {modality} on {where}: top-1 "
            f"{100 * result.top1:.2f}{spread} %  top-5 {100 * result.top5:.2f}{top5_spread} %  "
            f"(recipe {chosen.name}: {epochs} epochs, lr {lr:g}, labels "
            f"{100 * label_fraction:g} % x {repeats}; "
            f"train {result.n_train}, test {result.n_test})"
        )
    if record:
        from skelkit.eval.report import append_eval_record

        try:
            target = append_eval_record(
                Path(run_dir), {**result.provenance, "kind": "finetune", **summary})
        except OSError as err:
            click.echo(f"skeleval: note: could not record in {run_dir}: {err.strerror}", err=True)
        else:
            click.echo(f"skeleval: recorded in {target}", err=True)


# Formats matplotlib's Agg/vector backends write (a test keeps this within matplotlib's list);
# checked before any work, without importing matplotlib.
FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _check_figure_out(out: Path) -> None:
    """The figure's format comes from ``--out``'s extension: an unknown one fails here, in one
    line, not in matplotlib after the t-SNE has run."""
    extension = out.suffix.lower().lstrip(".")
    if extension not in FIGURE_FORMATS:
        got = f"extension .{extension}" if extension else "no extension"
        raise InputError(f"--out {out}: {got}; use one of "
                         f"{', '.join('.' + f for f in FIGURE_FORMATS)}")


@main.command()
@_emb_option
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Figure to write; the format follows the extension (.png, .pdf, .svg...).")
@click.option("--group", default="test", show_default=True, help="train or test.")
@click.option("--max-points", default=2000, show_default=True, type=click.IntRange(min=5),
              help="Seeded random subsample size (exact t-SNE is O(N^2)).")
@click.option("--perplexity", default=30.0, show_default=True,
              type=click.FloatRange(min=1.0))
@click.option("--iterations", default=1000, show_default=True, type=click.IntRange(min=50))
@click.option("--seed", default=0, show_default=True, type=int)
def tsne(emb: Path, out: Path, group: str, max_points: int, perplexity: float,
         iterations: int, seed: int) -> None:
    """Write a t-SNE map of one embedding group, coloured by label."""
    _check_figure_out(out)
    from skelkit.eval.errors import load_embedding_split
    from skelkit.eval.plots import embedding_dataset, plot_tsne

    if group not in ("train", "test"):
        raise InputError(f"--group must be train or test, got {group!r}")
    split = load_embedding_split(emb)
    if group == "train":
        embedding, label = split.train_embedding, split.train_label
    else:
        embedding, label = split.test_embedding, split.test_label
    method = split.attrs.get("method", "")
    info = plot_tsne(
        embedding, label, out, title=f"{emb.name} [{group}] {method}".strip(),
        max_points=max_points, perplexity=perplexity, n_iter=iterations, seed=seed,
        dataset=embedding_dataset(split.attrs),
    )
    click.echo(
        f"t-SNE of {info.n_points} {group} embeddings ({info.n_classes} classes, "
        f"KL {info.kl_divergence:.3f}) -> {out}"
    )


@main.command()
@click.option("--run", "run_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory holding metrics.csv.")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Figure to write; the format follows the extension (.png, .pdf, .svg...).")
def curves(run_dir: Path, out: Path) -> None:
    """Plot a run's training curves (metrics.csv) to a figure (PNG, PDF, SVG...)."""
    _check_figure_out(out)
    from skelkit.eval.plots import plot_curves

    panels = plot_curves(run_dir, out, title=run_dir.resolve().name)
    click.echo(f"curves ({', '.join(panels)}) -> {out}")


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--layout", type=click.Choice(["runs", "paper"]), default="runs",
              show_default=True,
              help="runs: one row per configuration (mean ± std over seeds); paper: the papers' "
                   "tables (rows = methods, columns = dataset x protocol, one table per "
                   "evaluation).")
@click.option("--published", is_flag=True,
              help="paper layout: show the published numbers beside each method's row.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of Markdown.")
def report(run_dirs: tuple[Path, ...], layout: str, published: bool, as_csv: bool) -> None:
    """Results table over run directories (and --record-dir baselines)."""
    from skelkit.store.rundir import RunDir

    for run_dir in run_dirs:  # a missing directory answered before the report's heavy imports
        RunDir(run_dir).require()
    from skelkit.eval.report import build_rows, csv_table, load_run, markdown_table

    if published and layout != "paper":
        raise InputError("--published needs --layout paper")
    runs = [load_run(run_dir) for run_dir in run_dirs]
    if layout == "paper":
        from skelkit.eval.paper_table import build_paper_table, csv_paper, markdown_paper

        table = build_paper_table(runs, published=published)
        click.echo(csv_paper(table) if as_csv else markdown_paper(table), nl=not as_csv)
        return
    rows = build_rows(runs)
    click.echo(csv_table(rows) if as_csv else markdown_table(rows), nl=not as_csv)


if __name__ == "__main__":
    sys.exit(main())
