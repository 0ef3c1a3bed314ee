"""CMD training-step time: full-sequence BiGRU against a per-timestep Python loop (same weights).

One step = forward of the three query and three key encoders, the SCL and CMD losses, and the
backward pass. Both variants start from identical copies of one model; the script asserts that
their encoder outputs (and losses) agree to 1e-5 before timing.

    python bench/step.py            # the paper's sizes: batch 64, 64 frames, hidden 1024, 3 layers
    python bench/step.py --quick    # small sizes, seconds
    python bench/step.py --batch 64 --hidden 256 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from skelkit.store import NTU25
from skelkit.train.encoders.bigru import BiGRU, gru_stepwise, pool_gru
from skelkit.train.methods import CMD


def use_stepwise_loop(model: torch.nn.Module) -> None:
    """Make every BiGRU in ``model`` run its GRU as a per-timestep Python loop."""
    for module in model.modules():
        if isinstance(module, BiGRU):
            def forward(x: torch.Tensor, enc: BiGRU = module) -> torch.Tensor:
                return pool_gru(*gru_stepwise(enc.gru, enc.flatten(x)), enc.pool)
            module.forward = forward  # type: ignore[method-assign]


def make_batch(batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"q": torch.randn(batch, 3, frames, 25, 2, generator=g),
            "k": torch.randn(batch, 3, frames, 25, 2, generator=g),
            "gamma": torch.ones(batch)}


def time_steps(model: CMD, batches: list[dict[str, torch.Tensor]],
               label: str) -> tuple[list[float], float]:
    times, last = [], 0.0
    for i, batch in enumerate(batches):
        model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, _ = model.training_step(batch, epoch=0)
        loss.backward()
        times.append(time.perf_counter() - start)
        last = float(loss.detach())
        print(f"  {label} step {i}{' (warm-up)' if i == 0 else ''}: {times[-1]:.3f} s",
              flush=True)
    return times, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 8, 16 frames, hidden 64")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--queue", type=int, default=16384)
    parser.add_argument("--topk", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2, help="timed steps after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.hidden, args.queue, args.topk = 8, 16, 64, 256, 64
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = CMD.Config.from_dict({
        "encoder_args": {"hidden_size": args.hidden, "num_layers": args.layers},
        "queue_size": args.queue, "topk": args.topk,
    })
    full = CMD(cfg, NTU25)
    loop = copy.deepcopy(full)
    use_stepwise_loop(loop)

    # Same weights, same input: the encoders must agree before any timing means anything.
    probe = make_batch(min(args.batch, 8), args.frames, seed=1)["q"]
    with torch.no_grad():
        for m in full.modalities:
            a = full.encoder(m).eval()(full.derive_input(probe, None, m))
            b = loop.encoder(m).eval()(loop.derive_input(probe, None, m))
            err = (a - b).abs().max().item()
            assert err <= 1e-5, f"{m}: full-sequence and loop outputs differ by {err:.2e}"
            print(f"  {m} encoder: max |full - loop| = {err:.1e}", flush=True)
    full.train()
    loop.train()

    batches = [make_batch(args.batch, args.frames, seed=10 + i) for i in range(args.repeats + 1)]
    t_full, loss_full = time_steps(full, batches, "full-sequence")
    t_loop, loss_loop = time_steps(loop, batches, "per-timestep loop")
    assert abs(loss_full - loss_loop) <= 1e-4 * max(1.0, abs(loss_full)), (loss_full, loss_loop)

    full_s, loop_s = statistics.median(t_full[1:]), statistics.median(t_loop[1:])
    print(f"CMD step, batch {args.batch}, {args.frames} frames, hidden {args.hidden}, "
          f"{args.layers} layers, queue {args.queue}, K_c {args.topk}, "
          f"{torch.get_num_threads()} threads, device cpu")
    print(f"full-sequence BiGRU: {full_s:.3f} s/step")
    print(f"per-timestep loop:   {loop_s:.3f} s/step")
    print(f"ratio (loop / full): {loop_s / full_s:.2f}x")


if __name__ == "__main__":
    main()
