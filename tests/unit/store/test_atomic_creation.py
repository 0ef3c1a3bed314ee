"""Store creation is all or nothing: a kill -9 at any point of it leaves either no store or an
empty, resumable one, and ``skelprep build --resume`` then equals an uninterrupted build."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skelkit.store.lock import store_lock
from skelkit.store.reader import open_store
from skelkit.store.writer import STAGING_SUFFIX
from skelkit.train.data import write_random_walk_store

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"


def skelprep(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SKELKIT_KILL_AT"}
    if kill_at:
        env["SKELKIT_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "skelkit.prep.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def build(raw: Path, out: Path, *extra: str, kill_at: str | None = None
          ) -> subprocess.CompletedProcess[str]:
    return skelprep("build", "--dataset", "ntu60", "--raw", str(raw), "--out", str(out),
                    "--workers", "1", *extra, kill_at=kill_at)


def arrays(path: Path) -> dict[str, np.ndarray]:
    store = open_store(path)
    out = {f"samples/{c}": store.samples[c].to_numpy() for c in store.samples.columns}
    out.update({f"splits/{p}": store.split(p) for p in store.protocols})
    out.update({f"fixed/{m}": np.asarray(store.fixed(m)[:]) for m in store.modalities})
    out["raw/joint"] = np.asarray(store.group["raw/joint"][:])
    out["raw/offsets"] = store.offsets
    return out


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw") / "ntu"
    done = skelprep("synth", "--dataset", "ntu60", "--out", str(folder), "--classes", "2",
                    "--performers", "2", "--nuisance", "none")
    assert done.returncode == 0, done.stderr
    return folder


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("clean") / "s.zarr"
    done = build(raw, out)
    assert done.returncode == 0, done.stderr
    return arrays(out)


@pytest.mark.slow
@pytest.mark.parametrize("point, leaves_store", [
    ("store-create-attrs", False),    # attributes written, no array yet
    pytest.param("store-create-arrays", False,  # every array created, not yet renamed
                 marks=pytest.mark.skipif(REDUCED, reason="reduced: the attrs point is the "
                                                          "same staging state")),
    ("store-create-renamed", True),   # in place, empty, before the first batch
])
def test_kill_during_creation_then_resume_equals_a_clean_build(
        raw: Path, clean: dict[str, np.ndarray], tmp_path: Path, point: str,
        leaves_store: bool) -> None:
    out = tmp_path / "s.zarr"
    killed = build(raw, out, kill_at=point)
    assert killed.returncode == -9, killed.stderr
    assert out.exists() == leaves_store
    if leaves_store:  # what is there opens as an incomplete store with its progress
        store = open_store(out, require_complete=False)
        assert not store.complete and store.attrs["progress"]["n_samples"] == 0
    resumed = build(raw, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got = arrays(out)
    assert got.keys() == clean.keys()
    for key in clean:
        assert np.array_equal(got[key], clean[key]), key
    assert not out.with_name(out.name + STAGING_SUFFIX).exists()
    assert not store_lock(out).path.exists()


@pytest.mark.slow
def test_kill_during_overwrite_leaves_the_old_store_or_none(raw: Path, clean: dict[str, np.ndarray],
                                                            tmp_path: Path) -> None:
    out = tmp_path / "s.zarr"
    write_random_walk_store(out, classes=2, per_class=2)  # some complete store to overwrite
    killed = build(raw, out, "--overwrite", kill_at="store-create-arrays")
    assert killed.returncode == -9
    assert open_store(out).dataset == "randomwalk"  # untouched until the new one is ready
    killed = build(raw, out, "--overwrite", kill_at="store-create-removed-old")
    assert killed.returncode == -9
    assert not out.exists()  # the old one removed, the new one not yet in place: no store
    resumed = build(raw, out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    got = arrays(out)
    assert all(np.array_equal(got[k], clean[k]) for k in clean)
