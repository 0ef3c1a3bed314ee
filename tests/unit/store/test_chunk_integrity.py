"""Missing and damaged chunks are never read as data: a chunk that is not stored (zarr would
read it as zeros) fails `skelprep verify` and stops training at its start with one line; a
flipped byte is a checksum error on read, one line naming the store, array and chunk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from skelkit.store.chunks import (
    EMPTY_ENTRY,
    ChunkReadError,
    has_checksums,
    missing_chunks,
    store_arrays,
    store_missing_chunks,
)
from skelkit.store.errors import StoreError
from skelkit.store.layout import NTU25
from skelkit.store.reader import open_store
from skelkit.store.writer import SampleBatch, StoreWriter, consolidate
from skelkit.train.data import write_random_walk_store

V, M = NTU25.num_joints, 2


def small_batch(rng: np.random.Generator, start: int, n: int, frames: int = 7) -> SampleBatch:
    columns = {
        "name": np.array([f"s{start + i:04d}" for i in range(n)]),
        "label": np.zeros(n, np.int64),  # all equal to the fill value: must be stored anyway
        "subject": np.ones(n), "camera": np.ones(n), "setup": np.ones(n),
        "replication": np.ones(n), "num_frames": np.full(n, frames),
        "num_bodies": np.ones(n), "gamma": np.full(n, frames / 4),
    }
    raw = [rng.normal(size=(frames, 3, V, M)).astype(np.float32) for _ in range(n)]
    fixed = {"joint": rng.normal(size=(n, 3, 4, V, M)).astype(np.float32)}
    return SampleBatch(columns, {"xsub": np.zeros(n, np.int8)}, raw, fixed)


def small_store(path: Path, n: int = 10) -> Path:
    """Several shards of several chunks each (fixed: chunks of 2 samples, shards of 4)."""
    writer = StoreWriter.create(
        path, dataset="test", layout=NTU25, frames=4, max_bodies=M, modalities=["joint"],
        normalisation={}, source={}, protocols=["xsub"], chunk_samples=2, shard_samples=4,
        chunk_frames=8, shard_frames=32)
    writer.append(small_batch(np.random.default_rng(0), 0, n))
    writer.commit_progress()
    writer.finalize({})
    return path


def test_every_array_is_checksummed_and_every_chunk_stored_even_all_zero(tmp_path: Path
                                                                          ) -> None:
    path = small_store(tmp_path / "s.zarr")
    group = zarr.open_group(str(path), mode="r")
    arrays = dict(store_arrays(group))
    assert set(arrays) >= {"samples/label", "splits/xsub", "raw/joint", "raw/offsets",
                           "fixed/joint"}
    assert all(has_checksums(a) for a in arrays.values())
    assert store_missing_chunks(path, group) == []
    # samples/label and splits/xsub are all zeros (the fill value) and still stored.
    assert (path / "samples" / "label" / "c" / "0").is_file()
    assert (path / "splits" / "xsub" / "c" / "0").is_file()


def test_a_deleted_shard_file_is_missing_and_named(tmp_path: Path) -> None:
    path = small_store(tmp_path / "s.zarr")
    (path / "fixed" / "joint" / "c" / "1" / "0" / "0" / "0" / "0").unlink()  # samples 4-7
    group = zarr.open_group(str(path), mode="r")
    problems = store_missing_chunks(path, group)
    assert problems == ["fixed/joint: chunk file c/1/0/0/0/0 (rows 4-7) is missing "
                        "(zarr would read it as zeros)"]


def test_a_chunk_a_shard_index_marks_empty_is_missing(tmp_path: Path) -> None:
    path = small_store(tmp_path / "s.zarr")
    shard = path / "fixed" / "joint" / "c" / "0" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    index_at = len(data) - (2 * 16 + 4)  # two chunks a shard, crc32c after the index
    data[index_at + 16:index_at + 32] = np.array([EMPTY_ENTRY, EMPTY_ENTRY], "<u8").tobytes()
    shard.write_bytes(bytes(data))
    group = zarr.open_group(str(path), mode="r")
    assert missing_chunks(path, "fixed/joint", group["fixed/joint"]) == [
        "fixed/joint: chunk file c/0/0/0/0/0 (rows 0-3): its index marks chunk 1/0/0/0/0 "
        "(rows 2-3) empty"]
    # The last shard holds two samples (8, 9) of its four: its second chunk is not expected.
    assert missing_chunks(path, "raw/joint", group["raw/joint"]) == []


def test_a_flipped_byte_is_one_line_naming_store_array_and_chunk(tmp_path: Path) -> None:
    path = small_store(tmp_path / "s.zarr")
    shard = path / "fixed" / "joint" / "c" / "1" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[20] ^= 0xFF  # inside the first chunk (samples 4-5)
    shard.write_bytes(bytes(data))
    store = open_store(path)
    store.fixed("joint")[0:4]  # other chunks still read
    with pytest.raises(ChunkReadError) as err:
        store.fixed("joint").oindex[[1, 5, 9]]
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: fixed/joint: chunk 2 in file c/1/0/0/0/0 (rows 4-5) "
                              "cannot be read: checksum mismatch")


# --- through the commands (in-process: the command's whole path, without a new interpreter) ---

def cli(main: object, *args: object) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, [str(a) for a in args])  # type: ignore[arg-type]
    return result.exit_code, result.stderr.strip().splitlines()


def verify(store: Path) -> tuple[int, list[str]]:
    from skelkit.prep.cli import main

    return cli(main, "verify", store)


CHUNKS = {"raw/joint": "c/0/0/0/0", "samples/label": "c/0", "fixed/joint": "c/0/0/0/0/0"}


@pytest.mark.parametrize("array", sorted(CHUNKS))
def test_verify_fails_naming_a_deleted_chunk(tmp_path: Path, array: str) -> None:
    store = small_store(tmp_path / "s.zarr")
    (store / array / CHUNKS[array]).unlink()
    code, lines = verify(store)
    assert code == 1
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"skelprep verify: {array}: chunk file {CHUNKS[array]} (rows 0-")
    assert lines[0].endswith("is missing (zarr would read it as zeros)")


def test_verify_names_a_flipped_byte_in_one_line(tmp_path: Path) -> None:
    store = small_store(tmp_path / "s.zarr")
    chunk = store / "samples" / "label" / "c" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    code, lines = verify(store)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(
        f"skelprep verify: {store}: samples/label: chunk file c/0 (rows 0-9) cannot be "
        "read: checksum mismatch"), lines


def test_verify_of_a_store_without_checksums_says_so_and_checks_existence(
        tmp_path: Path) -> None:
    """A store of format 1 (no crc32c, chunks equal to the fill value not written)."""
    path = small_store(tmp_path / "old.zarr")
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["version"] = 1
    old = group.create_array("samples/extra", shape=(3,), dtype="int8", chunks=(4,))
    old[:] = np.ones(3, np.int8)
    assert not has_checksums(old)
    consolidate(path)
    (path / "raw" / "offsets" / "c" / "0").unlink()
    code, lines = verify(path)
    assert code == 1
    assert lines[0].startswith("skelprep verify: note: store format 1: its chunks carry no "
                               "checksums"), lines
    assert lines[1:] == ["skelprep verify: raw/offsets: chunk file c/0 (rows 0-10) is missing "
                         "(zarr would read it as zeros)"]


# --- training -----------------------------------------------------------------------------------

TRAIN = ["--set", "data.num_workers=0", "--set", "engine.batch_size=4", "--set",
         "engine.knn_every=0", "--set", "model.queue_size=16", "--set", "engine.threads=1"]


def skeltrain(store: Path, run_dir: Path) -> tuple[int, list[str]]:
    from skelkit.train.cli import main

    return cli(main, "run", "skeletonclr", "--config", "tiny", "--store", store, "--protocol",
               "xsub", "--epochs", 1, "--device", "cpu", "--no-progress", "--run-dir", run_dir,
               *TRAIN)


@pytest.fixture()
def walk_store(tmp_path: Path) -> Path:
    return write_random_walk_store(tmp_path / "rw.zarr", classes=3, per_class=6,
                                   frames=(20, 40), seed=5)


def test_training_refuses_a_store_with_a_missing_chunk_in_one_line(
        walk_store: Path, tmp_path: Path) -> None:
    (walk_store / "samples" / "label" / "c" / "0").unlink()
    run_dir = tmp_path / "run"
    code, lines = skeltrain(walk_store, run_dir)
    assert code == 2
    assert lines == [f"skeltrain run: error: {walk_store}: samples/label: chunk file c/0 (rows "
                     f"0-17) is missing (zarr would read it as zeros); the store is damaged: "
                     f"`skelprep verify {walk_store}` lists it all, rebuild with --overwrite"]
    assert not run_dir.exists()  # refused before anything was written


@pytest.mark.parametrize("array, key", [("raw/joint", "c/0/0/0/0"),
                                        ("fixed/joint", "c/0/0/0/0/0")])
def test_the_trainers_start_check_finds_every_array(walk_store: Path, array: str,
                                                    key: str) -> None:
    from skelkit.store.chunks import require_all_chunks

    require_all_chunks(walk_store, zarr.open_group(str(walk_store), mode="r"))
    (walk_store / array / key).unlink()
    with pytest.raises(StoreError, match=f"{array}: chunk file {key} .* is missing"):
        require_all_chunks(walk_store, zarr.open_group(str(walk_store), mode="r"))


def test_training_on_a_flipped_byte_stops_with_one_line(walk_store: Path, tmp_path: Path
                                                        ) -> None:
    shard = walk_store / "fixed" / "joint" / "c" / "0" / "0" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF  # the first chunk's bytes (samples 0-7)
    shard.write_bytes(bytes(data))
    code, lines = skeltrain(walk_store, tmp_path / "run")
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"skeltrain run: error: {walk_store}: fixed/joint: chunk 0 in "
                               "file c/0/0/0/0/0 (rows 0-7) cannot be read: checksum mismatch")
