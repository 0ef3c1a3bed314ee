"""Per-step log terms summed on the training device, read back once per log interval.

Every conversion of a device tensor to a Python number (``float``, ``.item()``, ``bool``) waits
for the device to finish all queued work; once per step it stalls a GPU between steps. So a step
only adds its detached terms to running sums on the device, and the non-finite-loss check is a
device-side flag (the first bad step and its loss); :meth:`StepLog.read` brings everything back
in one transfer (and, under DDP, one all-reduce) at the interval the engine chooses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from skelkit.train.distributed import DistContext, sum_across_ranks
from skelkit.train.methods.base import LogValue


@dataclass
class LogReading:
    """The host view of a :class:`StepLog`: per-term means over the steps so far and, when a loss
    was not finite, where (``bad_step`` 1-based within the epoch, on this rank; 0 when the bad
    loss came from another rank) and its value."""

    means: dict[str, float]
    steps: int
    nonfinite: bool
    bad_step: int
    bad_loss: float


class StepLog:
    """Running sums of the step logs of one epoch, kept on ``device``."""

    def __init__(self, device: torch.device) -> None:
        # float64 sums (float32 where the device has none): an epoch's mean stays exact to print.
        self.dtype = torch.float32 if device.type == "mps" else torch.float64
        self.device = device
        self.sums: dict[str, Tensor] = {}
        self.steps = 0
        self.bad_step = torch.zeros((), dtype=self.dtype, device=device)
        self.bad_loss = torch.zeros((), dtype=self.dtype, device=device)

    def add(self, loss: Tensor, logs: dict[str, LogValue]) -> None:
        """One step: ``loss`` (the engine's own column) and the method's other terms."""
        self.steps += 1
        loss = loss.detach().to(self.dtype)
        first_bad = ~torch.isfinite(loss) & (self.bad_step == 0)
        self.bad_step = torch.where(first_bad, float(self.steps), self.bad_step)
        self.bad_loss = torch.where(first_bad, loss, self.bad_loss)
        self._accumulate("loss", loss)
        for key, value in logs.items():
            if key != "loss":
                self._accumulate(key, value)

    def _accumulate(self, key: str, value: LogValue) -> None:
        if isinstance(value, Tensor):
            value = value.detach().to(self.dtype)
        previous = self.sums.get(key)
        if previous is None:
            self.sums[key] = torch.zeros((), dtype=self.dtype, device=self.device) + value
        else:
            self.sums[key] = previous + value

    def read(self, ctx: DistContext | None = None) -> LogReading:
        """Means so far: one device-to-host transfer; with ``ctx`` of a DDP run also one
        all-reduce, which every rank must call at the same step (this rank's means otherwise)."""
        keys = list(self.sums)
        packed = torch.stack([(self.bad_step > 0).to(self.dtype), self.bad_step, self.bad_loss,
                              *(self.sums[k] for k in keys)])
        world = 1
        if ctx is not None and ctx.enabled:
            local = packed.clone()
            packed = sum_across_ranks(packed, ctx)
            # The bad step and loss are this rank's own (a sum over ranks names no step).
            packed[1:3] = local[1:3]
            world = ctx.world_size
        host = packed.tolist()
        steps = max(self.steps * world, 1)
        return LogReading(means={k: v / steps for k, v in zip(keys, host[3:], strict=True)},
                          steps=self.steps, nonfinite=host[0] > 0, bad_step=int(host[1]),
                          bad_loss=host[2])
