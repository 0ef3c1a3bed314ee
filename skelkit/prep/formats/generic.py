"""`--dataset generic`: one ``.npy`` per sample and a CSV manifest (docs/generic-format.md).

Discovery reads the manifest and each file's ``.npy`` header (not its data), so a missing file,
a bad label or a shape that does not fit the layout is reported per row, with the manifest's
file and line, before any worker starts. A manifest that cannot be used as a whole (no such
file, unknown or missing columns, no usable row) raises :class:`ManifestError`, which the CLI
turns into exit code 2 and one line.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from skelkit.prep.errors import DatasetError, ManifestError
from skelkit.prep.kernels.bodies import select_bodies
from skelkit.prep.kernels.normalize import resize_frames
from skelkit.prep.kernels.sample import PreparedSample, prepare_bodies, sample_problem, stored_sample
from skelkit.prep.tasks import DatasetSpec, Discovery, FileTask, PreparedPair, SampleSpec, Skip, listed_splits
from skelkit.store.layout import Layout, get_layout
from skelkit.store.schema import FIXED_FRAMES, MAX_BODIES

REQUIRED_COLUMNS = ("name", "file", "label")
ID_COLUMNS = ("subject", "camera", "setup")
SPLIT_PREFIX = "split_"
SPLIT_VALUES = {"train": 0, "test": 1}
NORMALISATIONS = ("layout", "center", "none")
DEFAULT_MANIFEST = "manifest.csv"
_PROTOCOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Normalisation:
    """How a generic sample is normalised.

    ``layout``: the CMD/IKEM preparation with the layout's centre and alignment joints (as NTU);
    ``center``: translation only, every frame centred on body 0's ``center_joint``;
    ``none``: coordinates kept as recorded.
    """

    mode: str
    center_joint: int = -1

    def describe(self, layout: Layout, frames_hint: str = "F") -> dict[str, str]:
        """The store's ``normalisation`` attribute."""
        if self.mode == "layout":
            return {
                "raw": f"CMD pre-normalisation (docs/design.md §3.3) with layout {layout.name}: centre "
                       f"{layout.joint_names[layout.center_joint]}, z {list(layout.z_axis)}, "
                       f"x {list(layout.x_axis)}; T_orig frames per sample",
                "fixed": f"IKEM fixed length ({frames_hint} frames), origin "
                         f"{layout.joint_names[layout.fixed_origin_joint]}",
            }
        what = ("centred per frame on body 0's joint "
                f"{layout.joint_names[self.center_joint]} (index {self.center_joint}), no rotation"
                if self.mode == "center" else "none: coordinates as recorded")
        return {"raw": f"generic {what}; T_orig frames per sample",
                "fixed": f"the raw sequence linearly resized to {frames_hint} frames"}


def parse_normalisation(text: str, layout: Layout) -> Normalisation:
    """``layout`` | ``none`` | ``center`` | ``center:JOINT`` (a joint name or 0-based index)."""
    mode, _, joint = text.strip().partition(":")
    if mode not in NORMALISATIONS:
        raise DatasetError(
            f"unknown normalisation {text!r}; choose layout, center, center:JOINT or none"
        )
    if mode != "center":
        if joint:
            raise DatasetError(f"normalisation {mode!r} takes no joint ({text!r})")
        return Normalisation(mode)
    if not joint:
        return Normalisation("center", layout.center_joint)
    if joint in layout.joint_names:
        return Normalisation("center", layout.joint_names.index(joint))
    if joint.isdigit() and int(joint) < layout.num_joints:
        return Normalisation("center", int(joint))
    raise DatasetError(
        f"center joint {joint!r} is neither a joint of layout {layout.name} nor an index "
        f"0..{layout.num_joints - 1}"
    )


def resolve_layout(name_or_path: str | None) -> tuple[str, Layout]:
    """(the name stored in the dataset spec, the layout); DatasetError when it cannot be had."""
    if not name_or_path:
        raise DatasetError("--dataset generic needs --layout NAME or --layout FILE.json")
    try:
        return name_or_path, get_layout(name_or_path)
    except KeyError as e:
        raise DatasetError(str(e.args[0])) from None
    except (ValueError, TypeError, OSError) as e:  # a JSON layout that does not validate
        raise DatasetError(f"layout file {name_or_path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# The manifest


@dataclass(frozen=True)
class ManifestHeader:
    columns: tuple[str, ...]
    protocols: tuple[str, ...]


def read_header(manifest: Path) -> ManifestHeader:
    """Check the header line; ManifestError naming ``manifest:1`` when it is unusable."""
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} does not exist")
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        header = next(csv.reader(fh), None)
    if not header or not any(h.strip() for h in header):
        raise ManifestError(f"{manifest}:1: empty manifest (expected a header line "
                            f"{','.join(REQUIRED_COLUMNS)},...)")
    columns = tuple(h.strip() for h in header)
    protocols = []
    for column in columns:
        if column in REQUIRED_COLUMNS or column in ID_COLUMNS:
            continue
        if column.startswith(SPLIT_PREFIX):
            protocol = column[len(SPLIT_PREFIX):]
            if not _PROTOCOL_NAME.match(protocol):
                raise ManifestError(f"{manifest}:1: bad split column {column!r} (expected "
                                    f"split_<protocol>, protocol of letters, digits, _ and -)")
            protocols.append(protocol)
            continue
        raise ManifestError(
            f"{manifest}:1: unknown column {column!r} (known: {', '.join(REQUIRED_COLUMNS)}, "
            f"{', '.join(ID_COLUMNS)}, split_<protocol>)"
        )
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise ManifestError(f"{manifest}:1: duplicated column {duplicated[0]!r}")
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise ManifestError(f"{manifest}:1: missing column {missing[0]!r} (required: "
                            f"{', '.join(REQUIRED_COLUMNS)})")
    return ManifestHeader(columns, tuple(protocols))


class RowError(Exception):
    """One manifest row that cannot become a sample (a reported skip, not a stop)."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


# What the store's columns hold (docs/design.md §4.2): label int64, the ids int32.
INT_RANGES = {"label": (0, 2 ** 63 - 1), "subject": (-1, 2 ** 31 - 1),
              "camera": (-1, 2 ** 31 - 1), "setup": (-1, 2 ** 31 - 1)}


def _int_field(row: dict[str, str], column: str, default: int | None = None) -> int:
    """The cell as an integer inside the range its store column holds (a RowError otherwise,
    never an OverflowError that would stop the build)."""
    text = row.get(column, "").strip()
    if not text and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise RowError(f"{column} {shown!r} is not an integer", f"bad_{column}") from None
    low, high = INT_RANGES[column]
    if not low <= value <= high:
        shown = str(value) if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"
        raise RowError(f"{column} {shown} is outside {low}..{high} (what the store holds)",
                       f"bad_{column}")
    return value


def _sample_path(file_text: str, raw: Path, allow_outside_raw: bool) -> Path:
    """The row's file, checked to be a regular file inside ``raw`` (after following links)
    unless ``allow_outside_raw``; the reasons name the path, never what the file holds."""
    path = Path(file_text) if Path(file_text).is_absolute() else raw / file_text
    if not allow_outside_raw:
        root = raw.resolve()
        if not path.resolve().is_relative_to(root):
            raise RowError(f"file {path} is outside the raw folder {root} "
                           "(--allow-outside-raw admits it)", "outside_raw")
    if not path.exists():
        raise RowError(f"file {path} does not exist", "missing_file")
    if path.is_dir():
        raise RowError(f"file {path} is a folder, not a .npy file", "bad_file")
    if not path.is_file():  # read nothing from a device, FIFO or socket: it may never end
        raise RowError(f"file {path} is not a regular file (a device, FIFO or socket)",
                       "bad_file")
    return path


class NpySizeError(ValueError):
    """A ``.npy`` header whose shape does not fit the file's size (the message quotes no
    content of the file, only sizes)."""


def npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the data; ValueError when the
    header promises more (or less) data than the file holds, so loading it never allocates
    by a lying header."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        data_start = fh.tell()
    shape, dtype = tuple(int(s) for s in shape), np.dtype(dtype)
    promised = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - data_start
    if promised != held:
        raise NpySizeError(f"its header promises {shape} {dtype} ({promised} bytes of data) but "
                         f"the file holds {held}")
    return shape, dtype


def check_shape(shape: tuple[int, ...], layout: Layout) -> str | None:
    """Why ``shape`` is not a (T, V, 3) or (T, M, V, 3) sample of ``layout``; None if it is."""
    v = layout.num_joints
    expected = f"(T, {v}, 3) or (T, M, {v}, 3) for layout {layout.name}"
    if len(shape) not in (3, 4) or shape[-1] != 3 or shape[-2] != v:
        return f"shape {shape} does not fit: expected {expected}"
    if shape[0] == 0:
        return "zero frames"
    if len(shape) == 4 and shape[1] == 0:
        return f"shape {shape} has no body"
    return None


def _row_task(row: dict[str, str], raw: Path, layout: Layout, protocols: tuple[str, ...],
              manifest: Path, line: int, allow_outside_raw: bool = False
              ) -> tuple[SampleSpec, FileTask, dict[str, int]]:
    name = row["name"].strip()
    if not name:
        raise RowError("empty name", "bad_name")
    label = _int_field(row, "label")
    ids = {c: _int_field(row, c, default=-1) for c in ID_COLUMNS}
    splits = {}
    for protocol in protocols:
        value = row.get(SPLIT_PREFIX + protocol, "").strip().lower()
        if value not in SPLIT_VALUES:
            raise RowError(f"{SPLIT_PREFIX}{protocol} is {value!r}, expected train or test",
                           "bad_split")
        splits[protocol] = SPLIT_VALUES[value]
    file_text = row["file"].strip()
    if not file_text:
        raise RowError("empty file", "missing_file")
    path = _sample_path(file_text, raw, allow_outside_raw)
    try:
        shape, dtype = npy_shape(path)
    except Exception as e:  # a crafted header raises ValueError, SyntaxError,
        # tokenize.TokenError, ...: all of them cost this row. numpy's messages quote the
        # file's first bytes: name the failure, not the content.
        raise RowError(f"file {path} is not a .npy array ({_what_failed(e)})",
                       "bad_file") from None
    if dtype.kind not in "fiu":
        raise RowError(f"file {path} holds {dtype}, expected numbers", "bad_file")
    problem = check_shape(shape, layout)
    if problem is not None:
        raise RowError(f"file {path}: {problem}", "bad_shape")
    spec = SampleSpec(name=name, label=label, subject=ids["subject"], camera=ids["camera"],
                      setup=ids["setup"], replication=-1, label_file=str(manifest),
                      label_line=line)
    return spec, FileTask(str(path), (spec,), path.stat().st_size), splits


def _what_failed(error: Exception) -> str:
    """A reason for an unreadable file that quotes none of its bytes."""
    if isinstance(error, OSError):
        return error.strerror or type(error).__name__
    if isinstance(error, NpySizeError):
        return str(error)
    return f"{type(error).__name__}: no valid .npy magic and header"


def read_manifest(manifest: Path, raw: Path, layout: Layout,
                  allow_outside_raw: bool = False) -> Discovery:
    """The work list of a generic dataset; bad rows become skips naming ``manifest:line``."""
    header = read_header(manifest)
    tasks: list[FileTask] = []
    skipped: list[Skip] = []
    train: dict[str, list[str]] = {p: [] for p in header.protocols}
    seen: dict[str, int] = {}
    rows = 0
    with open(manifest, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        next(reader)
        for fields in reader:
            line = reader.line_num
            if not any(f.strip() for f in fields):
                continue
            rows += 1
            name = fields[0].strip() if fields else ""
            where = (name or f"<line {line}>", str(manifest), line)
            if len(fields) != len(header.columns):
                skipped.append(Skip(*where, f"{len(fields)} fields, the header has "
                                    f"{len(header.columns)}", "bad_row"))
                continue
            row = dict(zip(header.columns, fields))
            try:
                spec, task, splits = _row_task(row, raw, layout, header.protocols, manifest, line,
                                               allow_outside_raw)
            except RowError as e:
                skipped.append(Skip(*where, e.reason, e.kind))
                continue
            if spec.name in seen:
                skipped.append(Skip(*where, f"name {spec.name!r} already used on line "
                                    f"{seen[spec.name]}", "duplicate_name"))
                continue
            seen[spec.name] = line
            tasks.append(task)
            for protocol, side in splits.items():
                if side == 0:
                    train[protocol].append(spec.name)
    if not tasks:
        if not rows:
            raise ManifestError(f"{manifest}: no sample rows after the header")
        first = skipped[0]
        raise ManifestError(f"{manifest}: no usable row ({len(skipped)} bad; first: line "
                            f"{first.line}: {first.reason})")
    return Discovery(tasks, skipped, files_found=rows, split_lists=train)


def generic_dataset(raw: Path, manifest: Path | None, layout: str | None,
                    normalisation: str = "layout", frames: int = FIXED_FRAMES,
                    allow_outside_raw: bool = False) -> DatasetSpec:
    """The spec of one generic build; DatasetError/ManifestError when it cannot start."""
    layout_name, resolved = resolve_layout(layout)
    norm = parse_normalisation(normalisation, resolved)
    manifest = Path(manifest) if manifest is not None else Path(raw) / DEFAULT_MANIFEST
    header = read_header(manifest)

    def discover(raw_dir: Path, missing: set[str]) -> Discovery:
        return read_manifest(manifest, raw_dir, resolved, allow_outside_raw)

    return DatasetSpec(
        name="generic", layout=layout_name, protocols=header.protocols, missing_resource=None,
        discover_fn=discover, splits_fn=listed_splits("name"),
        prepare=partial(prepare_generic_task, norm=norm),
        normalisation_attrs=norm.describe(resolved, str(frames)),
    )


# ---------------------------------------------------------------------------------------------
# Worker side: one task (one file) -> a PreparedSample, or a Skip naming the manifest line.


def to_bodies(array: np.ndarray) -> tuple[np.ndarray, int]:
    """(T, V, 3) or (T, M, V, 3) -> the two most active bodies (2, T, V, 3) and how many exist."""
    slots = array[:, None] if array.ndim == 3 else array
    slots = np.ascontiguousarray(np.asarray(slots, dtype=np.float32).transpose(1, 0, 2, 3))
    return select_bodies(slots, MAX_BODIES)


def center_on_joint(bodies: np.ndarray, joint: int) -> np.ndarray:
    """Every present joint minus body 0's ``joint`` in the same frame; absent joints stay zero."""
    present = np.any(bodies != 0, axis=-1, keepdims=True)
    return np.where(present, bodies - bodies[0:1, :, joint:joint + 1], 0).astype(np.float32)


def prepare_generic(bodies: np.ndarray, layout: Layout, frames: int, norm: Normalisation,
                    num_bodies: int) -> PreparedSample:
    """Selected bodies (2, T, V, 3) -> a PreparedSample under ``norm``."""
    if norm.mode == "layout":
        return prepare_bodies(bodies, layout, frames, num_bodies=num_bodies)
    seq = center_on_joint(bodies, norm.center_joint) if norm.mode == "center" else bodies
    seq = np.ascontiguousarray(seq, dtype=np.float32)
    return stored_sample(seq, resize_frames(seq, frames), seq.shape[1] / frames, layout,
                         num_bodies)


def prepare_array_task(task: FileTask, array: np.ndarray, layout: Layout, frames: int,
                       norm: Normalisation, out: list[PreparedPair], skipped: list[Skip]) -> None:
    """Check, select bodies, prepare; one sample appended to ``out`` or one Skip."""
    spec = task.samples[0]
    where = (spec.name, spec.label_file or task.file, spec.label_line or None)
    problem = check_shape(tuple(array.shape), layout)
    if problem is not None:
        skipped.append(Skip(*where, f"file {task.file}: {problem}", "bad_shape"))
        return
    bad = np.flatnonzero(~np.isfinite(array).reshape(array.shape[0], -1).all(axis=1))
    if bad.size:
        skipped.append(Skip(*where, f"file {task.file}: non-finite value (NaN or inf) in frame "
                            f"{int(bad[0])}", "non_finite"))
        return
    bodies, num_bodies = to_bodies(array)
    if num_bodies == 0:
        skipped.append(Skip(*where, f"file {task.file}: every joint is zero", "zero_frames"))
        return
    try:
        sample = prepare_generic(bodies, layout, frames, norm, num_bodies)
    except Exception as e:  # one sample lost, not the build
        skipped.append(Skip(*where, f"{type(e).__name__}: {e}", "error"))
        return
    problem2 = sample_problem(sample)
    if problem2 is not None:
        kind, reason = problem2
        skipped.append(Skip(*where, f"file {task.file}: {reason}", kind))
        return
    out.append((spec, sample))


def prepare_generic_task(task: FileTask, layout: Layout, frames: int, out: list[PreparedPair],
                         skipped: list[Skip], *, norm: Normalisation) -> None:
    """One ``.npy`` file -> one sample under ``norm``, or one Skip naming the manifest line."""
    spec = task.samples[0]
    try:
        array = np.load(task.file, allow_pickle=False)
    except Exception as e:  # as at discovery: any unreadable file costs its row
        skipped.append(Skip(spec.name, spec.label_file or task.file, spec.label_line or None,
                            f"file {task.file}: cannot load ({_what_failed(e)})", "bad_file"))
        return
    prepare_array_task(task, array, layout, frames, norm, out, skipped)
