"""CMD training-step time: the reference-mode BiGRU (both weight sets forward in time, fused over
the whole sequence) against the authors' loop (``moco/GRU.py`` of maoyunyao/CMD: the GRU called
once per frame, carrying its hidden state), on the same weights and batches, side by side.

One step = forward of the three query and three key encoders, the InfoNCE and six KL terms, and
the backward pass. Before timing, the script checks on the first batch that both give the same
features, loss and gradients and prints the max |diff| of each.

    python bench/step.py                  # the published size: batch 64, 64 frames, 3 x 1024
    python bench/step.py --batch 8        # the same model on a smaller batch (slow CPUs)
    python bench/step.py --quick          # batch 8, 16 frames, hidden 64: seconds
    python bench/step.py --threads 2 --repeats 0 --skip-check   # one step each (2-core CPU)
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
from skelkit.train.encoders.bigru import BiGRU, gru_per_frame_calls, pool_gru
from skelkit.train.methods import CMD


def use_authors_loop(model: torch.nn.Module) -> None:
    """Make every BiGRU in ``model`` run the authors' per-frame loop over its own GRU."""
    for module in model.modules():
        if isinstance(module, BiGRU):
            def forward(x: torch.Tensor, enc: BiGRU = module) -> torch.Tensor:
                output = gru_per_frame_calls(enc.gru, enc.flatten(x))
                return pool_gru(output, output.new_zeros(0), enc.pool)
            module.forward = forward  # type: ignore[method-assign]


def make_batch(batch: int, frames: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"q": torch.randn(batch, 3, frames, 25, 2, generator=g),
            "k": torch.randn(batch, 3, frames, 25, 2, generator=g),
            "gamma": torch.ones(batch)}


def step(model: CMD, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(seconds, loss) of one training step with its backward pass."""
    model.zero_grad(set_to_none=True)
    start = time.perf_counter()
    loss, _ = model.training_step(batch, epoch=0)
    loss.backward()
    return time.perf_counter() - start, float(loss.detach())


def check_equal(fused: CMD, loop: CMD, batch: dict[str, torch.Tensor]) -> None:
    """Features, loss and every gradient of one step, on copies (the timed models stay fresh)."""
    a, b = copy.deepcopy(fused), copy.deepcopy(loop)
    use_authors_loop(b)
    with torch.no_grad():
        feats = max(float((a.encoder(m).eval()(a.derive_input(batch["q"], None, m))
                           - b.encoder(m).eval()(b.derive_input(batch["q"], None, m))).abs().max())
                    for m in a.modalities)
    a.train()
    b.train()
    _, loss_a = step(a, batch)
    _, loss_b = step(b, batch)
    grads = max(float((p.grad - q.grad).abs().max()) for p, q in
                zip(a.parameters(), b.parameters(), strict=True) if p.grad is not None)
    print(f"  same weights, same batch: max|diff| features {feats:.1e}, loss "
          f"{abs(loss_a - loss_b):.1e}, gradients {grads:.1e}", flush=True)
    assert feats < 1e-4 and abs(loss_a - loss_b) < 1e-4 * max(1.0, abs(loss_a)), (feats, loss_a,
                                                                                  loss_b)


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
    parser.add_argument("--skip-check", action="store_true",
                        help="skip the equality check (two extra steps: costly at batch 64 on CPU)")
    parser.add_argument("--paper", action="store_true",
                        help="also time paper fidelity (a true bidirectional nn.GRU, one call)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.frames, args.hidden, args.queue, args.topk = 8, 16, 64, 256, 64
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    cfg = CMD.Config.from_dict({
        "fidelity": "reference",
        "encoder_args": {"hidden_size": args.hidden, "num_layers": args.layers},
        "queue_size": args.queue, "topk": args.topk,
    })
    fused = CMD(cfg, NTU25).train()
    loop = copy.deepcopy(fused)
    batches = [make_batch(args.batch, args.frames, seed=10 + i) for i in range(args.repeats + 1)]
    if not args.skip_check:
        check_equal(fused, loop, batches[0])
    use_authors_loop(loop)

    models = {"fused": fused, "loop": loop}
    if args.paper:  # same weights, the paper's encoder (another computation: other losses)
        models["paper"] = copy.deepcopy(fused)
        for module in models["paper"].modules():
            if isinstance(module, BiGRU):
                module.directions = "bidirectional"
    times: dict[str, list[float]] = {name: [] for name in models}
    for i, batch in enumerate(batches):  # alternate, so all see the same machine load
        for name, model in models.items():
            seconds, loss = step(model, batch)
            times[name].append(seconds)
            print(f"  step {i}{' (warm-up)' if i == 0 else ''} {name}: {seconds:.2f} s, "
                  f"loss {loss:.4f}", flush=True)

    fused_s = statistics.median(times["fused"][1:] or times["fused"])
    loop_s = statistics.median(times["loop"][1:] or times["loop"])
    print(f"CMD step (reference fidelity), batch {args.batch}, {args.frames} frames, hidden "
          f"{args.hidden}, {args.layers} layers, queue {args.queue}, K_c {args.topk}, "
          f"{torch.get_num_threads()} threads, cpu")
    print(f"fused both-forward BiGRU: {fused_s:.2f} s/step")
    print(f"authors' per-frame loop:  {loop_s:.2f} s/step")
    print(f"ratio (loop / fused): {loop_s / fused_s:.2f}x")
    if args.paper:
        paper_s = statistics.median(times["paper"][1:] or times["paper"])
        print(f"paper fidelity (bidirectional nn.GRU): {paper_s:.2f} s/step "
              f"(fused / paper {fused_s / paper_s:.2f}x)")


if __name__ == "__main__":
    main()
