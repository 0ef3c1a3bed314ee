"""skeltrain run/embed end to end: run-dir contents, repeatable configs, HDF5 contract, exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from skelkit.store.embeddings import read_embeddings
from skelkit.store.reader import open_store
from skelkit.train.cli import main
from skelkit.train.data import write_random_walk_store

ROOT = Path(__file__).resolve().parents[3]
FAST = ["--set", "data.num_workers=0", "--set", "engine.knn_every=0", "--set",
        "model.queue_size=16", "--set", "engine.threads=1", "--batch-size", "4",
        "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("cli") / "rw.zarr", classes=3,
                                   per_class=8, frames=(20, 60), seed=2)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def losses(run_dir: Path) -> list[str]:
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return [r.split(",")[2] for r in rows]


def test_run_writes_the_run_dir_and_its_config_repeats_it(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "a"
    code, out = invoke("run", "skeletonclr", "--store", store, "--protocol", "xsub",
                       "--config", "tiny", "--epochs", "2", "--seed", "4", "--run-dir", run, *FAST)
    assert code == 0, out
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["engine"]["epochs"] == 2 and resolved["engine"]["seed"] == 4
    assert resolved["data"]["store"] == str(store.resolve())
    assert resolved["data"]["protocol"] == "xsub"
    assert len(losses(run)) == 2
    # The resolved config alone (no --store/--protocol/--set) repeats the run.
    code, out = invoke("run", "skeletonclr", "--config", run / "config.yaml", "--run-dir",
                       tmp_path / "b", "--no-progress")
    assert code == 0, out
    assert losses(tmp_path / "b") == losses(run)
    # A finished run dir is not overwritten by a new run.
    code, out = invoke("run", "skeletonclr", "--config", run / "config.yaml", "--run-dir", run)
    assert code == 2 and "--resume" in out


def test_resume_via_cli(store: Path, tmp_path: Path) -> None:
    common = ["--store", store, "--protocol", "xsub", "--config", "tiny", *FAST,
              "--set", "schedule.kind=step"]
    assert invoke("run", "skeletonclr", *common, "--epochs", "2", "--run-dir", tmp_path / "f")[0] == 0
    assert invoke("run", "skeletonclr", *common, "--epochs", "1", "--run-dir", tmp_path / "c")[0] == 0
    code, out = invoke("run", "skeletonclr", "--resume", tmp_path / "c", "--epochs", "2",
                       "--no-progress")
    assert code == 0, out
    assert losses(tmp_path / "c") == losses(tmp_path / "f")
    code, out = invoke("run", "cmd", "--resume", tmp_path / "c")
    assert code == 2 and "is a skeletonclr run, not cmd" in out


def test_embed_writes_the_hdf5_contract(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "cmd"
    code, out = invoke("run", "cmd", "--store", store, "--protocol", "xsub", "--config", "tiny",
                       "--epochs", "1", "--run-dir", run, *FAST, "--set", "model.topk=8")
    assert code == 0, out
    files = {}
    for modality in ("joint", "motion", "bone", "all"):
        files[modality] = tmp_path / f"{modality}.h5"
        code, out = invoke("embed", "--run", run, "--modality", modality, "--out",
                           files[modality], "--workers", "0", "--no-progress")
        assert code == 0, out
    groups, attrs = read_embeddings(files["joint"])
    s = open_store(store)
    for side in ("train", "test"):
        rows = s.indices("xsub", side)
        assert list(groups[side].name) == list(s.samples["name"].to_numpy(str)[rows])
        assert list(groups[side].label) == list(s.samples["label"].to_numpy()[rows])
        assert groups[side].embedding.shape == (len(rows), 128)  # 2 directions x hidden 64
    assert attrs["method"] == "cmd" and attrs["modality"] == "joint"
    assert attrs["encoder"] == "bigru" and attrs["protocol"] == "xsub"
    assert int(attrs["epoch"]) == 1 and attrs["checkpoint"].endswith("last.pt")
    assert Path(attrs["store"]) == store.resolve()
    assert yaml.safe_load(attrs["config"])["method"] == "cmd"  # JSON text is YAML
    # `all` is the mean of the three trained streams.
    streams = [read_embeddings(files[m])[0]["test"].embedding for m in ("joint", "motion", "bone")]
    all_groups, all_attrs = read_embeddings(files["all"])
    np.testing.assert_allclose(all_groups["test"].embedding, np.mean(streams, axis=0), atol=1e-5)
    assert all_attrs["modality"] == "all" and all_attrs["combine"] == "mean"
    assert all_attrs["streams"] == "joint,motion,bone"
    assert not np.allclose(streams[0], streams[1])
    # --combine concat: the streams side by side, in the method's modality order.
    code, out = invoke("embed", "--run", run, "--modality", "all", "--combine", "concat",
                       "--out", tmp_path / "concat.h5", "--workers", "0", "--no-progress")
    assert code == 0, out
    concat_groups, concat_attrs = read_embeddings(tmp_path / "concat.h5")
    np.testing.assert_allclose(concat_groups["test"].embedding,
                               np.concatenate(streams, axis=1), atol=1e-5)
    assert concat_attrs["combine"] == "concat"
    # An explicit checkpoint: the random initialisation.
    code, out = invoke("embed", "--run", run, "--checkpoint", "epoch_0000.pt", "--out",
                       tmp_path / "init.h5", "--workers", "0", "--no-progress")
    assert code == 0, out
    init_groups, init_attrs = read_embeddings(tmp_path / "init.h5")
    assert int(init_attrs["epoch"]) == 0
    assert not np.allclose(init_groups["test"].embedding, groups["test"].embedding)
    assert torch.load(run / "checkpoints" / "epoch_0000.pt", weights_only=True)["epoch"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["run", "skeletonclr", "--store", "/no/such.zarr", "--protocol", "xsub", "--config", "tiny"],
     "no such store"),
    (["run", "skeletonclr", "--store", "{store}", "--protocol", "xview", "--config", "tiny"],
     "unknown protocol 'xview'"),
    (["run", "nomethod", "--store", "{store}", "--protocol", "xsub"], "unknown method 'nomethod'"),
    (["run", "cmd", "--store", "{store}", "--protocol", "xsub", "--config", "nope"],
     "unknown config 'nope'"),
    (["run", "cmd", "--store", "{store}", "--protocol", "xsub"], "no packaged config cmd/randomwalk"),
    (["run", "cmd", "--store", "{store}", "--protocol", "xsub", "--config", "tiny",
      "--set", "optim.lr=fast"], "optim.lr: expected a number"),
    (["run", "cmd", "--resume", "{tmp}/nothing"], "no such run directory"),
    (["run", "cmd", "--resume", "{tmp}"], "not a run directory (no config.yaml)"),
    (["embed", "--run", "{tmp}/nothing", "--out", "{tmp}/x.h5"], "no such run directory"),
    (["embed", "--run", "{tmp}", "--out", "{tmp}/x.h5"], "not a run directory (no config.yaml)"),
])
def test_bad_input_is_one_line_and_exit_2(store: Path, tmp_path: Path, args: list[str],
                                          message: str) -> None:
    args = [a.replace("{store}", str(store)).replace("{tmp}", str(tmp_path)) for a in args]
    code, out = invoke(*args)
    assert code == 2
    assert out.startswith(f"skeltrain {args[0]}: error: ") and message in out
    assert out.count("\n") == 1


def test_python_dash_m_entry_point() -> None:
    proc = subprocess.run([sys.executable, "-m", "skelkit.train", "run", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "--resume" in proc.stdout and "--set" in proc.stdout
