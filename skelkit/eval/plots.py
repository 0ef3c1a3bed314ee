"""PNG figures: a t-SNE map of embeddings and the training curves of a run.

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot), so no display backend or
global state is involved and the functions are safe in headless containers and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.manifold import TSNE

from skelkit.action_names import class_labels
from skelkit.errors import one_line
from skelkit.eval.errors import EvalInputError
from skelkit.failpoints import failpoint
from skelkit.store.durable import disk_full_is_one_line, partial_path
from skelkit.store.rundir import RunDir

REQUIRED_METRIC_COLUMNS = ("epoch", "loss")
MAX_PANELS = 9


# --- t-SNE ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TsneFigureInfo:
    n_points: int
    n_classes: int
    kl_divergence: float
    legend: tuple[str, ...] = ()
    """The legend's entries, in class order (empty when there are too many classes to list)."""


def embedding_dataset(attrs: dict[str, Any]) -> str | None:
    """The dataset an embeddings file was computed on: its ``dataset`` attribute, else the
    dataset its store declares (if the store is still where ``store`` says); None otherwise,
    never a guess from a file name."""
    if attrs.get("dataset"):
        return str(attrs["dataset"])
    if not attrs.get("store"):
        return None
    from skelkit.store.reader import open_store

    try:
        return str(open_store(str(attrs["store"]), require_complete=False).dataset)
    except Exception:  # moved, on another machine, or not a store: numbers, not a guess
        return None


def subsample(n: int, max_points: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` rows, drawn without replacement."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


@dataclass(frozen=True)
class TsneMap:
    embedding: np.ndarray
    """(N, 2) map coordinates."""
    kl_divergence: float


def tsne_map(x: np.ndarray, *, perplexity: float = 30.0, n_iter: int = 1000,
             seed: int = 0) -> TsneMap:
    """scikit-learn's Barnes-Hut t-SNE (van der Maaten 2014) of the L2-normalised rows: the cosine
    geometry every other protocol here uses. The perplexity is capped at (N - 1) / 3, which
    scikit-learn requires to be below N."""
    if len(x) < 5:
        raise EvalInputError(f"t-SNE needs at least 5 points, got {len(x)}")
    rows = np.asarray(x, np.float64)
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    fitted = TSNE(n_components=2, perplexity=min(perplexity, (len(x) - 1) / 3.0), init="pca",
                  learning_rate="auto", max_iter=n_iter, random_state=seed).fit(unit)
    return TsneMap(fitted.embedding_, float(fitted.kl_divergence_))


def plot_tsne(
    embedding: np.ndarray,
    label: np.ndarray,
    out: str | Path,
    *,
    title: str = "",
    max_points: int = 2000,
    perplexity: float = 30.0,
    n_iter: int = 1000,
    seed: int = 0,
    dataset: str | None = None,
) -> TsneFigureInfo:
    """Run t-SNE on (a seeded subsample of) ``embedding`` and save a scatter coloured by label.

    The legend names the actions (``A1 drink water``) when ``dataset`` has a name table, and
    shows the 0-based labels otherwise."""
    if len(embedding) < 5:
        raise EvalInputError(f"t-SNE needs at least 5 points, got {len(embedding)}")
    keep = subsample(len(embedding), max_points, seed)
    result = tsne_map(embedding[keep], perplexity=perplexity, n_iter=n_iter, seed=seed)
    labels = np.asarray(label)[keep]
    classes = np.unique(labels)

    fig = Figure(figsize=(8.5, 7.0), dpi=120)
    ax = fig.add_subplot()
    colours = _class_colours(len(classes))
    texts = class_labels(dataset, [int(c) for c in classes])
    named = texts != [str(int(c)) for c in classes]
    for colour, cls, text in zip(colours, classes, texts):
        points = result.embedding[labels == cls]
        ax.scatter(points[:, 0], points[:, 1], s=6, color=colour, label=text, linewidths=0)
    legend: tuple[str, ...] = ()
    if len(classes) <= 20:
        legend = tuple(texts)
        ax.legend(title="action" if named else "label", fontsize=7, markerscale=2.5,
                  loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    subtitle = f"{len(keep)} points, {len(classes)} classes, KL {result.kl_divergence:.3f}"
    ax.set_title(f"{title}\n{subtitle}" if title else subtitle, fontsize=10)
    fig.tight_layout()
    _save(fig, out)
    return TsneFigureInfo(len(keep), len(classes), result.kl_divergence, legend)


def _class_colours(n: int) -> list[tuple[float, ...]]:
    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    # Many classes (NTU has 60 or 120): spread them over a perceptually ordered cyclic map.
    return [colormaps["turbo"](i / max(n - 1, 1)) for i in range(n)]


# --- training curves ------------------------------------------------------------------------


def read_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The run's metrics.csv, checked for the columns every run logs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EvalInputError(f"{run_dir}: no such run directory")
    path = RunDir(run_dir).metrics
    if not path.is_file():
        raise EvalInputError(f"{run_dir}: no {path.name} (has this run logged anything?)")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = one_line(err)
        raise EvalInputError(f"{path}: unreadable CSV ({reason})") from None
    missing = [c for c in REQUIRED_METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise EvalInputError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise EvalInputError(f"{path}: no rows")
    for column in frame.columns:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def plot_curves(run_dir: str | Path, out: str | Path, *, title: str = "") -> list[str]:
    """Loss (and other scalars) against step, KNN accuracy against epoch. Returns panel titles."""
    frame = read_metrics(run_dir)
    panels = _panel_columns(frame)
    fig = Figure(figsize=(6.0 * min(len(panels), 3), 4.0 * ((len(panels) + 2) // 3)), dpi=110)
    cols = min(len(panels), 3)
    rows = (len(panels) + 2) // 3
    # Per-step logs plot against step; per-epoch logs (no step column) against epoch.
    has_steps = "step" in frame.columns and bool(frame["step"].notna().any())
    x_step = frame["step"] if has_steps else frame["epoch"]
    x_label = "step" if has_steps else "epoch"
    for index, (panel_title, columns) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, index + 1)
        per_epoch = panel_title == "KNN"
        for column in columns:
            valid = frame[column].notna()
            if per_epoch:
                accuracy = frame[column][valid]
                # Runs may log fractions or percent; show percent either way.
                if accuracy.max() <= 1.0:
                    accuracy = 100 * accuracy
                ax.plot(frame["epoch"][valid], accuracy, marker="o", markersize=3, label=column)
            else:
                ax.plot(x_step[valid], frame[column][valid], linewidth=1.0, label=column,
                        marker="o" if valid.sum() < 30 else None, markersize=3)
        ax.set_xlabel("epoch" if per_epoch else x_label)
        if per_epoch or x_label == "epoch":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        # Per-epoch panels span the run's epochs even when the monitor ran on few; a single
        # step or epoch gets a whole unit around it, not matplotlib's +-5 % (0.95-1.05).
        x_values = frame["epoch"] if per_epoch else x_step
        low, high = float(x_values.min()), float(x_values.max())
        if per_epoch or high == low:
            pad = 0.05 * (high - low) if high > low else 0.5
            ax.set_xlim(low - pad, high + pad)
        ax.set_ylabel("top-1 (%)" if per_epoch else panel_title)
        if panel_title.startswith("learning rate") or _wide_positive_range(frame, columns):
            ax.set_yscale("log")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        if len(columns) > 1 or per_epoch:
            ax.legend(fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, out)
    return list(panels)


def _panel_columns(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Loss, KNN and learning rate first; then one panel per name prefix ("md/joint->bone" and
    its siblings share the panel "md", which also takes a column named just "md"); then the rest.
    """
    scalars = [c for c in frame.columns if c not in ("epoch", "step") and frame[c].notna().any()]
    losses = [c for c in scalars if "loss" in c.lower()]
    knn = [c for c in scalars if c.lower().startswith("knn")]
    lrs = [c for c in scalars if c.lower() == "lr" or c.lower().startswith("lr_")]
    panels: dict[str, list[str]] = {"loss": losses}
    if knn:
        panels["KNN"] = knn
    if lrs:
        panels["learning rate"] = lrs
    taken = set(losses + knn + lrs)
    prefixes = list(dict.fromkeys(c.split("/", 1)[0] for c in scalars if "/" in c and c not in taken))
    for prefix in prefixes:
        panels[prefix] = [c for c in scalars if c not in taken and
                          (c == prefix or c.startswith(prefix + "/"))]
        taken.update(panels[prefix])
    for column in scalars:
        if column not in taken:
            panels[column] = [column]
    if len(panels) > MAX_PANELS:
        panels = dict(list(panels.items())[:MAX_PANELS])
    return panels


def _wide_positive_range(frame: pd.DataFrame, columns: list[str]) -> bool:
    values = frame[columns].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return bool(values.size and values.min() > 0 and values.max() / values.min() > 1e3)


def _save(fig: Figure, out: str | Path) -> None:
    out = Path(out)
    temp = partial_path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        # Under a temporary name (the format from the real one's extension), renamed when whole.
        with disk_full_is_one_line(out, then="rerun", remove=[temp]):
            fig.savefig(temp, format=out.suffix.lstrip(".") or None)
            failpoint("write-figure")
            temp.replace(out)
    except OSError as err:
        raise EvalInputError(f"{out}: cannot write figure ({err.strerror or err})") from None
    finally:
        temp.unlink(missing_ok=True)
