"""The prep room's shape: one error base, one registry, picklable workers, imports one way."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import numpy as np
import pytest

from skelkit.errors import InputError
from skelkit.prep.errors import BuildError, DatasetError, ManifestError, RawFormatError
from skelkit.prep.formats import DATASET_NAMES, DATASETS, GENERIC, get_dataset
from skelkit.prep.kernels.normalize import resize_frames
from skelkit.store.errors import EmbeddingFileError, StoreError

SKELKIT = Path(__file__).resolve().parents[3] / "skelkit"


@pytest.mark.parametrize("error", [RawFormatError, DatasetError, ManifestError, BuildError,
                                   StoreError, EmbeddingFileError])
def test_every_bad_input_error_is_an_input_error(error: type[Exception]) -> None:
    assert issubclass(error, InputError)


def test_raw_format_error_survives_a_worker_boundary() -> None:
    error = pickle.loads(pickle.dumps(RawFormatError("truncated body", file="a.skeleton", line=7)))
    assert (error.reason, error.file, error.line, error.kind) == (
        "truncated body", "a.skeleton", 7, "truncated")
    assert str(error) == "a.skeleton:7: truncated body"


def test_the_registry_names_every_dataset_once(tmp_path: Path) -> None:
    assert DATASET_NAMES == (*DATASETS, GENERIC)
    assert all(DATASETS[name].name == name for name in DATASETS)
    with pytest.raises(DatasetError, match="choose one of ntu60, ntu120, pku2, utd-mhad, generic"):
        get_dataset("ntu90")
    with pytest.raises(DatasetError, match="generic only"):
        get_dataset("ntu60", tmp_path, layout="ntu25")


def test_worker_preparers_pickle(tmp_path: Path) -> None:
    """The spawned dask workers receive each spec's ``prepare``: a lambda would fail there."""
    (tmp_path / "manifest.csv").write_text("name,file,label\n")
    specs = [*DATASETS.values(), get_dataset(GENERIC, tmp_path, layout="kinect20",
                                             normalise="center")]
    for spec in specs:
        prepare = pickle.loads(pickle.dumps(spec.prepare))
        assert callable(prepare)
    assert pickle.loads(pickle.dumps(specs[-1].prepare)).keywords["norm"].mode == "center"


def test_resize_frames_downsamples_with_half_frame_centres() -> None:
    t, frames = 120, 50
    ramp = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None, None], (2, t, 3, 3))
    out = resize_frames(ramp, frames)
    centres = np.clip((np.arange(frames) + 0.5) * (t / frames) - 0.5, 0, t - 1)
    np.testing.assert_allclose(out[1, :, 2, 0], centres, atol=1e-5)
    np.testing.assert_array_equal(resize_frames(ramp, t), ramp)  # same length: the identity


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("room,forbidden", [
    ("store", ("skelkit.prep", "skelkit.synth", "skelkit.train", "skelkit.eval")),
    ("prep", ("skelkit.train", "skelkit.eval")),
    ("synth", ("skelkit.prep", "skelkit.train", "skelkit.eval")),
])
def test_rooms_import_downwards_only(room: str, forbidden: tuple[str, ...]) -> None:
    for path in sorted((SKELKIT / room).rglob("*.py")):
        bad = [m for m in _imports(path) if m.startswith(forbidden)]
        assert not bad, f"{path.relative_to(SKELKIT)} imports {bad}"


def test_prep_reaches_synth_only_through_the_cli() -> None:
    for path in sorted((SKELKIT / "prep").rglob("*.py")):
        if path.name == "cli.py" and path.parent.name == "prep":
            continue
        bad = [m for m in _imports(path) if m.startswith("skelkit.synth")]
        assert not bad, f"{path.relative_to(SKELKIT)} imports {bad}"
