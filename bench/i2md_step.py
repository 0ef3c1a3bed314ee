"""I²MD training-step cost relative to CMD at equal encoder size (issue 6 item 6).

Both methods train joint, motion and bone on the same GCN-Transformer; CMD is skelkit's CMD class
with that encoder, I²MD adds the cluster-level branch (neighbour retrieval, the Transformer run
again with cross-attention on both views, Eq. 7-8) on top. One step = forward, backward and an SGD
update, from identical initial weights and the same batch; the median of ``--steps`` timed steps
after ``--warmup`` is reported (steps interleaved across the methods), with I²MD's ``imd: false``
variant as a check that it costs what CMD costs.

    python bench/i2md_step.py                  # the tiny config's encoder, batch 64, 64 frames
    python bench/i2md_step.py --size paper --batch 4 --modalities joint --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelkit.store import NTU25
from skelkit.train.encoders import ENCODERS
from skelkit.train.encoders.gcn_transformer import GCNTransformer
from skelkit.train.methods.cmd import CMD, CMDConfig
from skelkit.train.methods.i2md import I2MD, I2MDConfig

SIZES = {
    "tiny": {"gcn_widths": [16, 16, 16], "dim": 64, "layers": 2, "heads": 4, "ffn_dim": 128,
             "temporal_kernel": 5},
    "small": {"gcn_widths": [16, 16, 16], "dim": 128, "layers": 2, "heads": 4, "ffn_dim": 512},
    "paper": {"gcn_widths": [64, 64, 64], "dim": 768, "layers": 6, "heads": 12, "ffn_dim": 3072},
}


def build(kind: str, encoder_args: dict, queue: int, topk: int,
          modalities: list[str]) -> torch.nn.Module:
    shared = {"encoder": "gcn_transformer", "encoder_args": encoder_args, "queue_size": queue,
              "topk": topk, "modalities": modalities}
    torch.manual_seed(0)
    if kind == "cmd":
        # The bench registers the encoder in its own process so CMD builds it by name.
        ENCODERS.setdefault("gcn_transformer", GCNTransformer)
        return CMD(CMDConfig.from_dict(shared), NTU25)
    return I2MD(I2MDConfig.from_dict({**shared, "imd": kind == "i2md"}), NTU25)


class Stepper:
    """One model with its optimiser; ``step`` returns the seconds of one training step."""

    def __init__(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> None:
        self.model, self.batch = model, batch
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)

    def step(self) -> float:
        start = time.perf_counter()
        loss, _ = self.model.training_step(self.batch, 0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--queue", type=int, default=1024)
    parser.add_argument("--topk", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--modalities", default="joint,motion,bone",
                        help="comma-separated; one modality keeps the paper size in memory")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.frames, NTU25.num_joints, 2)
    batch = {"q": torch.randn(shape, generator=g), "k": torch.randn(shape, generator=g),
             "gamma": torch.ones(args.batch)}
    print(f"size {args.size} {SIZES[args.size]}, batch {args.batch}, {args.frames} frames, "
          f"queue {args.queue}, K_c {args.topk}, K_d 64, modalities {args.modalities}, "
          f"threads {torch.get_num_threads()}")
    kinds = ("cmd", "i2md-imd-off", "i2md")
    steppers = {kind: Stepper(build(kind, SIZES[args.size], args.queue, args.topk,
                                        args.modalities.split(",")), batch)
                for kind in kinds}
    # Round-robin, so a shared machine's changing load hits every method alike.
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for i in range(args.warmup + args.steps):
        for kind in kinds:
            took = steppers[kind].step()
            if i >= args.warmup:
                times[kind].append(took)
    seconds = {kind: statistics.median(t) for kind, t in times.items()}
    for kind in kinds:
        print(f"{kind:>13}: {seconds[kind] * 1000:9.1f} ms/step (median of {args.steps})")
    print(f"ratio I2MD/CMD: {seconds['i2md'] / seconds['cmd']:.2f}x "
          f"(imd off / CMD: {seconds['i2md-imd-off'] / seconds['cmd']:.2f}x)")


if __name__ == "__main__":
    main()
