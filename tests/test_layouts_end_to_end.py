"""Everything downstream follows the store's layout (issue 5 item 1).

build -> train (1 epoch) -> embed on a kinect20 store (UTD-MHAD .mat files) and an ntu25 store
(generic .npy files), checking that the BiGRU input width, the ST-GCN graph and the embedding
files follow the layout's joint count V instead of NTU's 25.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from click.testing import CliRunner

from skelkit.prep.builder.pipeline import BuildOptions, build_store
from skelkit.store.reader import open_store

REDUCED = os.environ.get("SKELKIT_REDUCED") == "1"
PER_SIDE = 6  # samples per split side and store


def _motion(frames: int, joints: int, seed: int) -> np.ndarray:
    """(T, V, 3) of a skeleton-sized point cloud 3 m away that moves: non-degenerate joints."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0, 0.3, (joints, 3)) + np.array([0.0, 0.0, 3.0])
    wave = np.sin(np.linspace(0, 2 + seed % 3, frames))[:, None, None]
    return (pose[None] + 0.1 * wave * rng.normal(0, 1, (1, joints, 3))).astype(np.float32)


def _kinect20_store(tmp: Path) -> Path:
    raw = tmp / "utd"
    raw.mkdir()
    for k in range(2 * PER_SIDE):
        subject = 1 + k % 2  # odd -> train, even -> test
        name = f"a{1 + k % 3}_s{subject}_t{1 + k // 2}_skeleton.mat"
        scipy.io.savemat(raw / name, {"d_skel": _motion(40 + k, 20, k).transpose(1, 2, 0)})
    out = tmp / "k20.zarr"
    build_store(BuildOptions(dataset="utd-mhad", raw=raw, out=out, workers=1, progress=False))
    return out


def _ntu25_store(tmp: Path) -> Path:
    raw = tmp / "mine"
    raw.mkdir()
    rows = ["name,file,label,subject,split_xsub"]
    for k in range(2 * PER_SIDE):
        x = np.stack([_motion(45 + k, 25, k), _motion(45 + k, 25, 50 + k)], axis=1)
        np.save(raw / f"s{k}.npy", x)
        rows.append(f"s{k},s{k}.npy,{k % 3},{k},{'train' if k % 2 == 0 else 'test'}")
    (raw / "manifest.csv").write_text("\n".join(rows) + "\n")
    out = tmp / "n25.zarr"
    build_store(BuildOptions(dataset="generic", raw=raw, out=out, workers=1, progress=False,
                             layout="ntu25"))
    return out


def _skeltrain(*args: str) -> None:
    from skelkit.train.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _train_and_embed(store: Path, method: str, config: str, run: Path,
                     *extra: str) -> tuple[dict[str, torch.Tensor], Path]:
    _skeltrain("run", method, "--store", str(store), "--protocol", "xsub", "--config", config,
               "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--workers", "0",
               "--run-dir", str(run), "--no-progress", "--set", "engine.knn_every=0", *extra)
    out = run.with_suffix(".h5")
    _skeltrain("embed", "--run", str(run), "--modality", "joint", "--out", str(out),
               "--device", "cpu", "--workers", "0", "--no-progress")
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    return ckpt["model"], out


def _check_embeddings(path: Path, store: Path) -> None:
    s = open_store(store)
    split = s.split("xsub")
    with h5py.File(path, "r") as f:
        for side, value in (("train", 0), ("test", 1)):
            emb = f[side]["embedding"][:]
            names = [n.decode() if isinstance(n, bytes) else n for n in f[side]["name"][:]]
            assert emb.ndim == 2 and emb.shape[0] == int((split == value).sum())
            assert np.isfinite(emb).all() and emb.std() > 0
            assert names == list(s.samples["name"][split == value])


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["kinect20", "ntu25"])
def test_build_train_embed_follow_the_layout(tmp_path: Path, layout: str) -> None:
    from skelkit.train.encoders.graph import spatial_partitions

    store = _kinect20_store(tmp_path) if layout == "kinect20" else _ntu25_store(tmp_path)
    s = open_store(store)
    v = {"kinect20": 20, "ntu25": 25}[layout]
    assert s.layout.name == layout and s.layout.num_joints == v
    assert s.fixed("joint").shape == (2 * PER_SIDE, 3, 50, v, 2)

    # CMD: the BiGRU reads 3 coordinates x V joints x 2 bodies per frame.
    model, emb = _train_and_embed(store, "cmd", "cmd/tiny", tmp_path / "cmd",
                                  "--set", "model.bone_tree=layout")
    for stream in ("joint", "motion", "bone"):
        assert model[f"branches.{stream}.encoder_q.gru.weight_ih_l0"].shape[1] == 3 * v * 2
        assert model[f"branches.{stream}.encoder_q.input_norm.weight"].shape == (3 * v * 2,)
    _check_embeddings(emb, store)
    if REDUCED:
        return

    # SkeletonCLR: the ST-GCN graph is the store layout's, V x V.
    model, emb = _train_and_embed(store, "skeletonclr", "skeletonclr/tiny",
                                  tmp_path / "skeletonclr")
    adjacency = model["branches.joint.encoder_q.adjacency"].numpy()
    np.testing.assert_allclose(adjacency, spatial_partitions(s.layout), atol=1e-6)
    assert adjacency.shape[-2:] == (v, v)
    _check_embeddings(emb, store)
