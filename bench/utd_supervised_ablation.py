"""Controlled experiments: why is skelkit's supervised path on UTD-MHAD worse than a plain script?

One factor at a time between ``bench/utd_supervised_plain.py`` and ``skeleval finetune --scratch``,
all in memory (no loaders), with skelkit's own encoders:

    --input fixed|sequence    the store's 50-frame fixed joints, or the CMD sequence view (the
                              whole valid sequence, CMD-normalised, resized to --window frames)
    --standardise channel|none  per-channel (x, y, z) train-side standardisation before the encoder
    --encoder bigru|stgcn     skelkit's BiGRU (input BatchNorm) or ST-GCN (data BatchNorm)
    --pool final|last|mean    the BiGRU's pooling
    --opt adam|sgd, --lr, --momentum, --weight-decay, --epochs, --milestones, --batch-size

    python bench/utd_supervised_ablation.py STORE --encoder bigru --input sequence --pool final \
        --opt sgd --lr 0.01 --epochs 40 --milestones 25,35
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
from skelkit.train.data import SkeletonDataset
from skelkit.train.encoders import build_encoder


def load_side(store_path: Path, protocol: str, side: str, view: str, window: int
              ) -> tuple[np.ndarray, np.ndarray]:
    ds = SkeletonDataset(store_path, protocol, side, kind=view, mode="embed", window=window)
    items = ds.__getitems__(list(range(len(ds))))
    return np.stack([it["x"] for it in items]).astype(np.float32), ds.meta.labels


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(256), y.split(256)))
    return hits / len(y)


@torch.no_grad()
def recalibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy whose BatchNorm running statistics are the exact train-side averages (one pass,
    cumulative), to tell a statistics lag from a bad model."""
    import copy

    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    twin.train()
    for xb in x.split(64):
        twin(xb)
    return twin


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--protocol", default="xsub")
    ap.add_argument("--input", choices=("fixed", "sequence"), default="fixed")
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--standardise", choices=("channel", "none"), default="none")
    ap.add_argument("--encoder", choices=("bigru", "stgcn"), default="bigru")
    ap.add_argument("--pool", default="mean")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--channel-multiplier", type=float, default=0.125)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--opt", choices=("adam", "sgd"), default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--nesterov", action="store_true")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--milestones", default="")
    ap.add_argument("--cosine", action="store_true")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--eval-every", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    xtr, ytr = load_side(args.store, args.protocol, "train", args.input, args.window)
    xte, yte = load_side(args.store, args.protocol, "test", args.input, args.window)
    if args.standardise == "channel":
        mean = xtr.mean(axis=(0, 2, 3, 4), keepdims=True)
        std = xtr.std(axis=(0, 2, 3, 4), keepdims=True)
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    xtr_t, xte_t = torch.from_numpy(xtr), torch.from_numpy(xte)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    layout = open_store(args.store).layout
    if args.encoder == "bigru":
        kwargs = dict(hidden_size=args.hidden, num_layers=args.layers, pool=args.pool)
    else:
        kwargs = dict(channel_multiplier=args.channel_multiplier, dropout=args.dropout)
    encoder = build_encoder(args.encoder, 3, layout, xtr.shape[-1], **kwargs)
    classes = int(max(ytr.max(), yte.max())) + 1
    model = nn.Sequential(encoder, nn.Linear(encoder.out_dim, classes))
    if args.opt == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                              weight_decay=args.weight_decay, nesterov=args.nesterov)
    if args.cosine:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    else:
        milestones = [int(m) for m in args.milestones.split(",") if m]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, 0.1)
    start = time.perf_counter()
    acc = 0.0
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xtr_t))
        if len(order) % args.batch_size == 1:
            order = order[:-1]  # a lone sample breaks BatchNorm in train mode
        for idx in order.split(args.batch_size):
            loss = nn.functional.cross_entropy(model(xtr_t[idx]), ytr_t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % args.eval_every and epoch + 1 < args.epochs:
            continue
        acc, train_acc = accuracy(model, xte_t, yte_t), accuracy(model, xtr_t, ytr_t)
        if not args.quiet:
            print(f"epoch {epoch + 1:3d}  loss {loss.item():.3f}  train {100 * train_acc:.1f} %  "
                  f"test top-1 {100 * acc:.1f} %", flush=True)
    recal = accuracy(recalibrated(model, xtr_t), xte_t, yte_t)
    print(f"BatchNorm statistics re-estimated on the train side: test top-1 {100 * recal:.1f} %")
    print(f"final test top-1 {100 * acc:.1f} % (train {100 * train_acc:.1f} %; "
          f"{time.perf_counter() - start:.0f} s) {' '.join(sys.argv[2:])}")


if __name__ == "__main__":
    main()
