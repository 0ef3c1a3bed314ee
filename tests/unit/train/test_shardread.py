"""The loader's direct shard reads (``skelkit.train.shardread``) return exactly what zarr reads,
fall back to zarr for any other layout, and refuse a shard whose index is damaged."""

from __future__ import annotations

import shutil
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import zarr

from skelkit.store.writer import consolidate
from skelkit.train import shardread
from skelkit.train.data import SkeletonDataset, build_augment, write_random_walk_store
from skelkit.train.shardread import ShardReadError, open_rows

CMD_AUGMENT = [{"name": "temporal_crop_resize", "window": 16, "min_frames": 8},
               {"name": "shear_or_corrupt", "p": 0.5, "num_joints": 5}]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_walk_store(tmp_path_factory.mktemp("shards") / "rw.zarr", classes=3,
                                   per_class=6, frames=(20, 60), seed=4)


def small_chunks(store: Path, folder: Path, name: str, chunk: int, shard: int) -> Path:
    """A copy of ``store`` whose array ``name`` is rewritten in chunks of ``chunk`` rows and
    shards of ``shard`` rows: several shards, a partial last chunk and a partial last shard."""
    copy = folder / f"{chunk}-{shard}.zarr"
    shutil.copytree(store, copy)
    data = zarr.open_array(str(store / name), mode="r")[:]
    shutil.rmtree(copy / name)
    group = zarr.open_group(str(copy), mode="r+")
    array = group.create_array(name, shape=data.shape, dtype=data.dtype,
                               chunks=(chunk, *data.shape[1:]), shards=(shard, *data.shape[1:]),
                               compressors=[zarr.codecs.BloscCodec(cname="lz4", shuffle="shuffle")])
    array[:] = data
    consolidate(copy)
    return copy


@pytest.mark.parametrize("name", ["raw/joint", "fixed/joint"])
def test_rows_equal_zarr_reads(store: Path, tmp_path: Path, name: str) -> None:
    copy = small_chunks(store, tmp_path, name, chunk=7, shard=35)
    want = zarr.open_array(str(copy / name), mode="r")[:]
    assert want.shape[0] % 7 and want.shape[0] % 35  # partial last chunk and shard
    reader = open_rows(copy, name)
    assert reader is not None and (reader.shard_rows, reader.chunk_rows) == (35, 7)
    assert np.array_equal(reader.read(np.arange(len(want))), want)
    rng = np.random.default_rng(0)
    for rows in (np.sort(rng.choice(len(want), len(want) // 2, replace=False)),  # sorted, sparse
                 rng.integers(0, len(want), 50),  # any order, repeats
                 np.array([len(want) - 1, 0, len(want) - 1])):
        assert np.array_equal(reader.read(rows), want[rows])
    with pytest.raises(IndexError):
        reader.read(np.array([len(want)]))


def test_a_chunk_cache_changes_nothing_but_decodes(store: Path) -> None:
    reader = open_rows(store, "raw/joint", cache_chunks=4)
    assert reader is not None and reader.rows > 3 * reader.chunk_rows
    assert reader is not None
    rows = np.arange(0, reader.rows, 3)
    first = reader.read(rows)
    decoded = reader.decoded
    assert np.array_equal(reader.read(rows[:5]), first[:5]) and reader.decoded == decoded


def test_few_shard_files_stay_open(store: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader keeps at most ``OPEN_SHARDS`` files open (the least recently used is closed and
    reopened with its index on demand), and reads the same rows throughout."""
    monkeypatch.setattr(shardread, "OPEN_SHARDS", 3)
    copy = small_chunks(store, tmp_path, "raw/joint", chunk=7, shard=35)
    want = zarr.open_array(str(copy / "raw/joint"), mode="r")[:]
    reader = open_rows(copy, "raw/joint")
    assert reader is not None and len(want) > 5 * 35
    rows = np.random.default_rng(3).integers(0, len(want), 300)
    for _ in range(2):
        assert np.array_equal(reader.read(rows), want[rows])
        assert len(reader._open) == 3
    reader.close()
    assert not reader._open


def test_a_damaged_chunk_names_its_array(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "chunk.zarr"
    shutil.copytree(store, copy)
    reader = open_rows(copy, "raw/joint")
    assert reader is not None
    _, index = reader._shard(0)  # type: ignore[misc]
    offset = int(index[0, 0])
    reader.close()
    shard = copy / "raw/joint/c/0/0/0/0"
    data = bytearray(shard.read_bytes())
    data[offset:offset + 16] = bytes(16)  # the chunk's blosc header
    shard.write_bytes(bytes(data))
    fresh = open_rows(copy, "raw/joint")
    assert fresh is not None
    with pytest.raises(ShardReadError, match=r"raw/joint: chunk 0 in file c/0/0/0/0 .* cannot be "
                                            r"read: checksum mismatch"):
        fresh.read(np.array([0]))


def test_the_store_takes_the_checksummed_path(store: Path) -> None:
    """A store of format 2 (CRC-32C on every chunk) is read here, not handed back to zarr."""
    reader = open_rows(store, "raw/joint")
    assert reader is not None and reader.checksummed


def test_one_flipped_payload_byte_is_a_checksum_error(store: Path, tmp_path: Path) -> None:
    """A byte flipped inside a chunk's compressed payload (its blosc header intact) may still
    decode to wrong numbers; the CRC-32C catches it before the decode."""
    copy = tmp_path / "flip.zarr"
    shutil.copytree(store, copy)
    reader = open_rows(copy, "raw/joint")
    assert reader is not None
    _, index = reader._shard(0)  # type: ignore[misc]
    offset, nbytes = int(index[0, 0]), int(index[0, 1])
    reader.close()
    shard = copy / "raw/joint/c/0/0/0/0"
    data = bytearray(shard.read_bytes())
    data[offset + nbytes // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    fresh = open_rows(copy, "raw/joint")
    assert fresh is not None
    with pytest.raises(ShardReadError, match="checksum mismatch"):
        fresh.read(np.array([0]))
    assert fresh.read(np.array([fresh.chunk_rows])).shape[0] == 1  # the next chunk still reads


def test_a_chunk_missing_from_a_format_2_shard_is_an_error_not_zeros(store: Path,
                                                                    tmp_path: Path) -> None:
    copy = tmp_path / "missing.zarr"
    shutil.copytree(store, copy)
    reader = open_rows(copy, "raw/joint")
    assert reader is not None
    shard = copy / "raw/joint/c/0/0/0/0"
    data = bytearray(shard.read_bytes())
    span = reader.per_shard * 16 + 4
    reader.close()
    index = np.frombuffer(bytes(data[-span:-4]), "<u8").reshape(-1, 2).copy()
    index[1] = 2**64 - 1  # the sharding spec's "chunk absent"
    raw = index.tobytes()
    data[-span:] = raw + google_crc32c.value(raw).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    fresh = open_rows(copy, "raw/joint")
    assert fresh is not None
    assert fresh.read(np.array([0])).shape[0] == 1
    with pytest.raises(ShardReadError, match=r"chunk 1 in file .* is missing"):
        fresh.read(np.array([fresh.chunk_rows]))


def test_other_layouts_fall_back_to_zarr(store: Path, tmp_path: Path) -> None:
    """An unsharded array (or a non-store folder) is not read here: ``open_rows`` says None and
    the dataset reads through zarr, with the same views."""
    copy = tmp_path / "plain.zarr"
    shutil.copytree(store, copy)
    data = zarr.open_array(str(store / "raw/joint"), mode="r")[:]
    shutil.rmtree(copy / "raw/joint")
    zarr.open_group(str(copy), mode="r+").create_array("raw/joint", data=data, chunks=(64, 3, 25, 2))
    consolidate(copy)  # the store's contract: what its readers see
    assert open_rows(copy, "raw/joint") is None
    assert open_rows(tmp_path / "nowhere", "raw/joint") is None
    aug = build_augment(CMD_AUGMENT)
    fallback = SkeletonDataset(copy, "xsub", "train", kind="sequence", augment=aug, seed=3)
    direct = SkeletonDataset(store, "xsub", "train", kind="sequence", augment=aug, seed=3)
    keys = [(i, 1) for i in range(len(direct))]
    for a, b in zip(fallback.__getitems__(keys), direct.__getitems__(keys), strict=True):
        assert np.array_equal(a["q"], b["q"]) and np.array_equal(a["k"], b["k"])
    assert fallback._readers == {"raw/joint": None}
    assert direct._readers["raw/joint"] is not None


@pytest.mark.parametrize("kind", ["sequence", "fixed"])
def test_dataset_reads_equal_zarr_reads(store: Path, kind: str) -> None:
    aug = build_augment(CMD_AUGMENT if kind == "sequence" else
                        [{"name": "shear", "amplitude": 0.5, "order": "columns"},
                         {"name": "temporal_pad_crop", "padding_ratio": 6, "window": 50}])
    direct = SkeletonDataset(store, "xsub", "train", kind=kind, augment=aug, seed=2)
    through_zarr = SkeletonDataset(store, "xsub", "train", kind=kind, augment=aug, seed=2,
                                   shard_reads=False)
    positions = np.random.default_rng(1).permutation(len(direct))
    a, b = direct._read_clips(positions), through_zarr._read_clips(positions)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.lengths, b.lengths)
    keys = [(int(p), 0) for p in positions]
    for x, y in zip(direct.__getitems__(keys), through_zarr.__getitems__(keys), strict=True):
        assert np.array_equal(x["q"], y["q"]) and np.array_equal(x["k"], y["k"])


def test_a_damaged_shard_index_is_refused(store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "damaged.zarr"
    shutil.copytree(store, copy)
    shard = copy / "raw/joint/c/0/0/0/0"
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF  # inside the index: its CRC32C no longer matches
    shard.write_bytes(bytes(data))
    reader = open_rows(copy, "raw/joint")
    assert reader is not None
    with pytest.raises(ShardReadError, match="CRC32C"):
        reader.read(np.array([0]))
