"""The store contract: write in batches, read back exactly, resume truncates, complete set last."""

from __future__ import annotations

import numpy as np
import pytest

from skelkit.store import NTU25, EmbeddingFileError, Layout, StoreError
from skelkit.store.embeddings import EmbeddingGroup, read_embeddings, write_embeddings
from skelkit.store.reader import open_store
from skelkit.store.schema import MODALITIES
from skelkit.store.writer import SampleBatch, StoreWriter

V, M, F = NTU25.num_joints, 2, 50


def make_batch(rng: np.random.Generator, start: int, lengths: list[int]) -> SampleBatch:
    n = len(lengths)
    cols = {
        "name": np.array([f"S{start + i:03d}" for i in range(n)]),
        "label": rng.integers(0, 5, n),
        "subject": rng.integers(1, 9, n),
        "camera": rng.integers(1, 4, n),
        "setup": np.ones(n, int),
        "replication": np.ones(n, int),
        "num_frames": np.array(lengths),
        "num_bodies": np.ones(n, int),
        "gamma": np.array(lengths, np.float32) / F,
    }
    raw = [rng.standard_normal((t, 3, V, M)).astype(np.float32) for t in lengths]
    fixed = {m: rng.standard_normal((n, 3, F, V, M)).astype(np.float32) for m in MODALITIES}
    splits = {"xsub": rng.integers(0, 2, n).astype(np.int8)}
    return SampleBatch(cols, splits, raw, fixed)


def create(path, **kw) -> StoreWriter:
    return StoreWriter.create(
        path, dataset="toy", layout=NTU25, frames=F, max_bodies=M, modalities=MODALITIES,
        normalisation={"raw": "cmd"}, source={"raw": "nowhere"}, protocols=["xsub"], **kw,
    )


def test_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    w = create(tmp_path / "s.zarr", chunk_frames=16, shard_frames=64, shard_samples=4, chunk_samples=2)
    batches = [make_batch(rng, 0, [10, 70, 3]), make_batch(rng, 3, [55, 1])]
    for b in batches:
        w.append(b)
        w.commit_progress({"batches": 1})
    with pytest.raises(StoreError, match="incomplete"):
        open_store(tmp_path / "s.zarr")
    w.finalize({"written": 5})
    s = open_store(tmp_path / "s.zarr")
    assert len(s) == 5 and s.complete and s.report == {"written": 5}
    assert s.layout == NTU25
    assert list(s.samples["name"]) == ["S000", "S001", "S002", "S003", "S004"]
    assert s.samples["num_frames"].tolist() == [10, 70, 3, 55, 1]
    assert s.offsets.tolist() == [0, 10, 80, 83, 138, 139]
    raws = [r for b in batches for r in b.raw]
    for i, r in enumerate(raws):
        np.testing.assert_array_equal(s.raw(i), r)
    joint = np.concatenate([b.fixed["joint"] for b in batches])
    np.testing.assert_array_equal(s.fixed("joint")[:], joint)
    split = np.concatenate([b.splits["xsub"] for b in batches])
    np.testing.assert_array_equal(s.indices("xsub", "train"), np.flatnonzero(split == 0))
    with pytest.raises(StoreError, match="unknown protocol"):
        s.split("xview")


def test_resume_truncates_uncommitted(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "s.zarr"
    w = create(path)
    b1, b2 = make_batch(rng, 0, [5, 6]), make_batch(rng, 2, [7])
    w.append(b1)
    w.commit_progress({"next_batch": 1})
    w.append(b2)  # written but never committed: a kill here must not keep it
    w2 = StoreWriter.resume(path)
    assert w2.n_samples == 2 and w2.progress["next_batch"] == 1
    w2.append(b2)
    w2.commit_progress({"next_batch": 2})
    w2.finalize({})
    s = open_store(path)
    assert len(s) == 3 and s.offsets.tolist() == [0, 5, 11, 18]
    np.testing.assert_array_equal(s.raw(2), b2.raw[0])
    np.testing.assert_array_equal(s.fixed("bone")[2], b2.fixed["bone"][0])


def test_existing_store_is_not_overwritten(tmp_path):
    create(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="already exists"):
        create(tmp_path / "s.zarr")
    create(tmp_path / "s.zarr", overwrite=True)


def test_open_errors(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "nope.zarr")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError):
        open_store(tmp_path / "empty")


def test_layout_attrs_roundtrip_and_validation():
    assert Layout.from_attrs(NTU25.to_attrs()) == NTU25
    # docs/design.md §3.2: bone (1,2), hinge (23,22), torso normal from bones 2, 5, 9 (1-based).
    assert NTU25.parents[0] == 1 and NTU25.parents[20] == 20 and NTU25.parents[22] == 7
    assert NTU25.hinges[22] == (22, 21) and NTU25.hinges[24] == (24, 23) and NTU25.hinges[1] == (1, 20)
    assert (NTU25.torso_normal.a, NTU25.torso_normal.b, NTU25.torso_normal.c) == (1, 4, 8)
    with pytest.raises(ValueError):
        Layout("bad", ("a", "b"), (0, 5), ((0, 1), (1, 0)))


def test_embeddings_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(2)
    g = {k: EmbeddingGroup(rng.standard_normal((n, 8)), rng.integers(0, 3, n), [f"s{i}" for i in range(n)])
         for k, n in (("train", 6), ("test", 4))}
    write_embeddings(tmp_path / "e.h5", g, {"method": "cmd", "epoch": 3, "config": {"a": 1}})
    back, attrs = read_embeddings(tmp_path / "e.h5")
    np.testing.assert_allclose(back["test"].embedding, g["test"].embedding.astype(np.float32))
    assert list(back["train"].name) == [f"s{i}" for i in range(6)]
    assert attrs["method"] == "cmd" and attrs["epoch"] == 3
    with pytest.raises(EmbeddingFileError, match="no such file"):
        read_embeddings(tmp_path / "missing.h5")
    with pytest.raises(EmbeddingFileError, match="mismatched lengths"):
        EmbeddingGroup(np.zeros((3, 2)), np.zeros(2), ["a", "b", "c"])
    bad = dict(g)
    bad["test"] = EmbeddingGroup(np.full((2, 8), np.nan), [0, 1], ["x", "y"])
    write_embeddings(tmp_path / "nan.h5", bad, {})
    with pytest.raises(EmbeddingFileError, match="non-finite"):
        read_embeddings(tmp_path / "nan.h5")
    write_embeddings(tmp_path / "one.h5", {"train": g["train"]}, {})
    with pytest.raises(EmbeddingFileError, match="missing group 'test'"):
        read_embeddings(tmp_path / "one.h5")


def test_kinect20_mirrors_ntu25_semantics():
    from skelkit.store import KINECT20, get_layout

    assert KINECT20.num_joints == 20 and get_layout("kinect20") is KINECT20
    names = KINECT20.joint_names
    ntu = NTU25.joint_names
    # The normalisation joints name the same body parts in both layouts.
    pairs = [("center_joint", "spine", "spine_mid"), ("fixed_origin_joint", "shoulder_center", "spine_shoulder"),
             ("presence_joint", "hip_center", "spine_base")]
    for attr, k20, n25 in pairs:
        assert names[getattr(KINECT20, attr)] == k20 and ntu[getattr(NTU25, attr)] == n25
    assert [names[j] for j in KINECT20.x_axis] == ["l_shoulder", "r_shoulder"]
    assert [names[j] for j in KINECT20.z_axis] == ["hip_center", "spine"]
    assert names[KINECT20.parents[names.index("r_hand")]] == "r_wrist"
    assert len(KINECT20.edges) == 19  # a tree: V - 1 edges without the root self-loop


def test_layout_from_json_file(tmp_path):
    import json

    from skelkit.store import get_layout

    d = NTU25.to_attrs()
    d["name"] = "my25"
    (tmp_path / "my25.json").write_text(json.dumps(d))
    lay = get_layout(str(tmp_path / "my25.json"))
    assert lay.name == "my25" and lay.parents == NTU25.parents
    with pytest.raises(KeyError, match="unknown layout"):
        get_layout("nope")
