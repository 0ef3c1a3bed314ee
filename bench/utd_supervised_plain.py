"""The plain supervised comparison for UTD-MHAD xsub (issue 13, item 6): no skelkit training code.

A bidirectional GRU (2 layers, hidden 128) over the store's fixed joints (50 frames, every joint
of both body slots flattened per frame), each coordinate channel (x, y, z) standardised with
train-side statistics, outputs mean-pooled over frames, one linear layer; Adam lr 1e-3, batch 32,
cross-entropy, 20 epochs; top-1 of the test side after the last epoch.

    python bench/utd_supervised_plain.py STORE [--epochs 20] [--seed 0] [--threads 1]

It reads the store with zarr's reader only, so it is a second way of getting the supervised number
``skeleval finetune --scratch`` reports.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelkit.store.reader import open_store


def load(store_path: Path, protocol: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{side: ((N, 50, C*V*M) standardised frames, (N,) labels)}."""
    store = open_store(store_path)
    fixed, labels = store.fixed("joint"), store.samples["label"].to_numpy(np.int64)
    sides = {}
    for side in ("train", "test"):
        rows = store.indices(protocol, side)
        sides[side] = (np.asarray(fixed.oindex[rows], np.float32), labels[rows])  # (N, C, T, V, M)
    train = sides["train"][0]
    mean = train.mean(axis=(0, 2, 3, 4), keepdims=True)
    std = train.std(axis=(0, 2, 3, 4), keepdims=True)
    out = {}
    for side, (x, y) in sides.items():
        x = (x - mean) / std
        n, c, t, v, m = x.shape
        frames = x.transpose(0, 2, 1, 3, 4).reshape(n, t, c * v * m)
        out[side] = (torch.from_numpy(np.ascontiguousarray(frames)), torch.from_numpy(y))
    return out


class GRUClassifier(nn.Module):
    def __init__(self, in_dim: int, classes: int, hidden: int = 128, layers: int = 2) -> None:
        super().__init__()
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x)[0].mean(dim=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--protocol", default="xsub")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = load(args.store, args.protocol)
    (xtr, ytr), (xte, yte) = data["train"], data["test"]
    classes = int(max(ytr.max(), yte.max())) + 1
    model = GRUClassifier(xtr.shape[-1], classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(xtr)).split(32):
            loss = nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  test top-1 {100 * acc:.1f} %")
    print(f"final test top-1 {100 * acc:.1f} % ({len(xtr)} train / {len(xte)} test, "
          f"{time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
