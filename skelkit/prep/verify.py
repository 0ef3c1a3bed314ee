"""`skelprep verify`: checks a store against the schema and re-derives a subset of modalities.

It first lists every chunk the arrays' shapes need (a missing one would read as zeros), then
reads every chunk once (its CRC-32C checked on a store of format 2): the cost of a full read,
about the time a loader takes for one pass over the store's bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skelkit.prep.formats import DATASETS
from skelkit.prep.kernels.modalities import derive_modalities
from skelkit.store.chunks import has_checksums, store_arrays, store_missing_chunks
from skelkit.store.errors import StoreError
from skelkit.store.reader import Store, open_store
from skelkit.store.schema import MAX_BODIES, MODALITIES, SAMPLE_COLUMNS

MAX_LISTED = 20  # missing chunks listed one per line; the rest are counted
SCAN_BLOCK = 512  # samples (or frames x 50) read at a time, so verify runs in bounded memory
DERIVE_ATOL = 1e-4


class VerifyFailure(Exception):
    """Structure so broken that the remaining checks cannot run."""


def _check_columns(store: Store, problems: list[str]) -> None:
    n = len(store)
    for name, dtype in SAMPLE_COLUMNS.items():
        key = f"samples/{name}"
        if key not in store.group:
            raise VerifyFailure(f"column {key} is missing")
        arr = store.group[key]
        if arr.shape != (n,):
            problems.append(f"column {name} has shape {arr.shape}, expected ({n},)")
        elif dtype is not str and np.dtype(arr.dtype) != dtype:
            problems.append(f"column {name} has dtype {arr.dtype}, expected {dtype}")
        elif dtype is str and n and not isinstance(arr[0:1][0], str):
            problems.append(f"column {name} does not hold strings")


def _check_values(store: Store, problems: list[str]) -> None:
    s = store.samples
    n = len(store)
    if n == 0:
        return
    if s["name"].duplicated().any():
        problems.append(f"duplicate sample names, e.g. {s['name'][s['name'].duplicated()].iloc[0]}")
    if (s["label"] < 0).any():
        problems.append("negative labels")
    if (s["num_frames"] < 1).any():
        problems.append("samples with zero frames")
    if ((s["num_bodies"] < 0) | (s["num_bodies"] > store.max_bodies)).any():
        problems.append(f"num_bodies outside 0..{store.max_bodies}")
    expected_gamma = s["num_frames"].to_numpy() / store.frames
    if not np.allclose(s["gamma"].to_numpy(), expected_gamma, rtol=1e-5):
        problems.append(f"gamma != num_frames / {store.frames}")


def _check_splits(store: Store, problems: list[str]) -> None:
    n = len(store)
    spec = DATASETS.get(store.dataset)
    if spec is not None and tuple(store.protocols) != spec.protocols:
        problems.append(f"protocols {list(store.protocols)}, expected {list(spec.protocols)}")
    recomputed = None
    if spec is not None and spec.splits_from_columns and n:
        cols = {k: store.samples[k].to_numpy() for k in ("subject", "camera", "setup")}
        recomputed = spec.splits(cols, {})
    for protocol in store.protocols:
        key = f"splits/{protocol}"
        if key not in store.group:
            problems.append(f"split {protocol} is missing")
            continue
        arr = store.group[key]
        if arr.shape != (n,) or np.dtype(arr.dtype) != np.int8:
            problems.append(f"split {protocol} is {arr.dtype}{arr.shape}, expected int8({n},)")
            continue
        values = np.asarray(arr[:])
        if n and not np.isin(values, (0, 1)).all():
            problems.append(f"split {protocol} holds values other than 0/1")
        if recomputed is not None and protocol in recomputed:
            wrong = np.flatnonzero(recomputed[protocol] != values)
            if wrong.size:
                problems.append(f"split {protocol} disagrees with the protocol for "
                                f"{wrong.size} samples, e.g. {store.samples['name'][wrong[0]]}")


def _check_arrays(store: Store, problems: list[str]) -> None:
    n, f, v, m = len(store), store.frames, store.layout.num_joints, store.max_bodies
    if m != MAX_BODIES:
        problems.append(f"max_bodies {m}, expected {MAX_BODIES}")
    if tuple(store.modalities) != MODALITIES:
        problems.append(f"modalities {list(store.modalities)}, expected {list(MODALITIES)}")
    for name in store.modalities:
        if f"fixed/{name}" not in store.group:
            raise VerifyFailure(f"fixed/{name} is missing")
        arr = store.group[f"fixed/{name}"]
        if arr.shape != (n, 3, f, v, m) or np.dtype(arr.dtype) != np.float32:
            raise VerifyFailure(f"fixed/{name} is {arr.dtype}{arr.shape}, "
                                f"expected float32{(n, 3, f, v, m)}")
        for lo in range(0, n, SCAN_BLOCK):
            block = np.asarray(arr[lo:lo + SCAN_BLOCK])
            bad = ~np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
            if bad.any():
                i = lo + int(np.flatnonzero(bad)[0])
                problems.append(f"fixed/{name} has non-finite values (sample {i}, "
                                f"{store.samples['name'][i]})")
                break
    raw = store.group["raw/joint"]
    offsets = np.asarray(store.group["raw/offsets"][:])
    if raw.ndim != 4 or raw.shape[1:] != (3, v, m) or np.dtype(raw.dtype) != np.float32:
        raise VerifyFailure(f"raw/joint is {raw.dtype}{raw.shape}, expected float32(T, 3, {v}, {m})")
    if offsets.shape != (n + 1,) or offsets.dtype != np.int64:
        raise VerifyFailure(f"raw/offsets is {offsets.dtype}{offsets.shape}, expected int64({n + 1},)")
    if offsets[0] != 0 or (np.diff(offsets) <= 0).any():
        problems.append("raw/offsets does not start at 0 and increase strictly")
    elif offsets[-1] != raw.shape[0]:
        problems.append(f"raw/offsets ends at {offsets[-1]} but raw/joint has {raw.shape[0]} frames")
    elif not np.array_equal(np.diff(offsets), store.samples["num_frames"].to_numpy()):
        problems.append("raw/offsets do not match num_frames")
    step = SCAN_BLOCK * f
    for lo in range(0, raw.shape[0], step):
        block = np.asarray(raw[lo:lo + step])
        if not np.isfinite(block).all():
            problems.append(f"raw/joint has non-finite values near frame {lo}")
            break


def _check_derivation(store: Store, problems: list[str], subset: int, seed: int) -> int:
    """Re-derive every modality of ``subset`` samples from the stored fixed joints."""
    n = len(store)
    if n == 0:
        return 0
    rng = np.random.default_rng(seed)
    picks = np.unique(np.concatenate([
        [0, n - 1], rng.choice(n, size=min(n, max(0, subset - 2)), replace=False)
    ])).astype(np.int64)
    joints = np.asarray(store.fixed("joint")[picks])  # (k, 3, F, V, M)
    stored = {m: np.asarray(store.fixed(m)[picks]) for m in store.modalities}
    gammas = store.samples["gamma"].to_numpy()[picks]
    for row, i in enumerate(picks):
        j = np.ascontiguousarray(joints[row].transpose(3, 1, 2, 0))  # -> (M, F, V, 3)
        derived = derive_modalities(j, float(gammas[row]), store.layout)
        for m in store.modalities:
            expect = derived[m].transpose(3, 1, 2, 0)  # -> (3, F, V, M)
            err = float(np.max(np.abs(expect - stored[m][row]))) if expect.size else 0.0
            if not err <= DERIVE_ATOL:
                problems.append(f"fixed/{m} of sample {i} ({store.samples['name'][i]}) differs "
                                f"from its re-derivation by {err:.3g}")
                return len(picks)
    return len(picks)


def _check_chunks(store: Store, summary: dict, problems: list[str]) -> None:
    """Every chunk the shapes need is stored; say when the chunks carry no checksums."""
    arrays = list(store_arrays(store.group.unchecked))
    summary["checksums"] = all(has_checksums(a) for _, a in arrays)
    if not summary["checksums"]:
        summary["note"] = (f"store format {store.version}: its chunks carry no checksums (built "
                           "before format 2), so a changed byte can read back unnoticed; chunk "
                           "existence is checked; rebuild with --overwrite to add them")
    missing = store_missing_chunks(store.path, store.group.unchecked)
    problems.extend(missing[:MAX_LISTED])
    if len(missing) > MAX_LISTED:
        problems.append(f"... and {len(missing) - MAX_LISTED} more missing chunks")


def verify_store(path: str | Path, *, subset: int = 32, seed: int = 0) -> tuple[list[str], dict]:
    """(problems, summary); an empty problem list means the store passed every check.

    StoreError when ``path`` is not a skelkit store at all (bad input, not a failed check)."""
    problems: list[str] = []
    summary: dict = {"path": str(path)}
    store = open_store(path, require_complete=False)  # not a store at all: StoreError, exit 2
    try:
        open_store(path, require_complete=True)
    except StoreError as e:  # a store whose build did not finish: a failed verification
        return [str(e)], summary
    summary.update(dataset=store.dataset, samples=len(store),
                   bytes=sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()))
    _check_chunks(store, summary, problems)
    if problems:  # the other checks would read the missing chunks as zeros
        return problems, summary
    try:
        _check_columns(store, problems)
        _check_values(store, problems)
        _check_splits(store, problems)
        _check_arrays(store, problems)
        if not problems:
            summary["rederived"] = _check_derivation(store, problems, subset, seed)
    except VerifyFailure as e:
        problems.append(str(e))
    except StoreError as e:  # a chunk that does not read back (checksum, codec): one line
        problems.append(str(e))
    except Exception as e:  # anything else zarr raises on a damaged store
        problems.append(f"cannot read the store: {type(e).__name__}: {e}")
    return problems, summary
