"""Baselines every table needs: raw joint coordinates (issue 13 item 3).

``skeleval knn|linear --store S --protocol P --raw`` evaluates the store's ``fixed/joint`` array
(normalised joints resized to the store's fixed frame count, all bodies), each sample flattened
to one (3 x T x V x M) vector: what learning has to beat. The other baseline, the same encoder at
random initialisation, is a run trained for zero epochs (``skeltrain run ... --epochs 0``);
``skeleval report`` labels such runs "random init".

A baseline has no run directory of its own; ``--record-dir DIR`` makes one (a ``config.yaml``
naming the store and protocol, ``method: raw-joints``) so that its results enter ``eval.jsonl``
and ``skeleval report`` like any run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from skelkit.eval.errors import EmbeddingSplit, EvalInputError
from skelkit.store.reader import StoreError, open_store
from skelkit.store.rundir import RunDir

RAW_METHOD = "raw-joints"
READ_CHUNK = 256


def raw_joint_split(store_path: str | Path, protocol: str, modality: str = "joint"
                    ) -> EmbeddingSplit:
    """Both sides of ``protocol`` as flattened fixed-length ``modality`` arrays (float32)."""
    store_path = Path(store_path)
    if not store_path.exists():
        raise EvalInputError(f"{store_path}: no such store")
    try:
        store = open_store(store_path)
        store.split(protocol)
        fixed = store.fixed(modality)
    except (StoreError, KeyError, ValueError) as err:
        message = str(err) if str(store_path) in str(err) else f"{store_path}: {err}"
        raise EvalInputError(" ".join(message.split())) from None
    samples = store.samples
    labels = samples["label"].to_numpy(np.int64)
    names = samples["name"].to_numpy(str)
    sides = {}
    for side in ("train", "test"):
        rows = np.sort(store.indices(protocol, side))
        if len(rows) == 0:
            raise EvalInputError(f"{store_path}: protocol {protocol!r} has no {side} samples")
        sides[side] = (_read_flat(fixed, rows), labels[rows], names[rows])
    attrs: dict[str, Any] = {
        "method": RAW_METHOD, "modality": modality, "store": str(store_path.resolve()),
        "dataset": store.dataset, "protocol": protocol, "source": "raw",
        "encoder": f"none (fixed/{modality}, flattened)",
    }
    return EmbeddingSplit(path=store_path, train_embedding=sides["train"][0],
                          train_label=sides["train"][1], test_embedding=sides["test"][0],
                          test_label=sides["test"][1], test_name=sides["test"][2], attrs=attrs)


def _read_flat(array: Any, rows: np.ndarray) -> np.ndarray:
    """(len(rows), prod(sample shape)) float32, read a chunk of rows at a time."""
    width = int(np.prod(array.shape[1:]))
    out = np.empty((len(rows), width), np.float32)
    for start in range(0, len(rows), READ_CHUNK):
        block = np.asarray(array.oindex[rows[start:start + READ_CHUNK]], np.float32)
        out[start:start + len(block)] = block.reshape(len(block), width)
    return out


def ensure_baseline_dir(record_dir: str | Path, attrs: dict[str, Any]) -> Path:
    """A run-like directory for a baseline's records: config.yaml written once, then checked."""
    record_dir = Path(record_dir)
    config = {"method": attrs["method"], "baseline": True,
              "data": {"store": attrs["store"], "dataset": attrs["dataset"],
                       "protocol": attrs["protocol"]},
              "model": {"encoder": attrs.get("encoder", ""), "modality": attrs["modality"]}}
    path = RunDir(record_dir).config
    if path.is_file():
        try:
            existing = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            existing = None
        if existing != config:
            raise EvalInputError(f"{path}: --record-dir holds another run or baseline "
                                 f"(its config.yaml differs); use a new directory")
        return record_dir
    record_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return record_dir
