"""What the three commands share: options read and checked the same way, and counts worded
the same way.

Light on purpose (click and re only): ``--help`` and usage errors must answer before torch loads.
"""

from __future__ import annotations

import re
from typing import Any

import click

from skelkit import __version__

DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


class DeviceType(click.ParamType):
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: checked here by spelling; whether the machine
    has that device is answered when torch is loaded (``skelkit.train.runs.resolve_device``)."""

    name = "device"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "auto|cpu|cuda[:N]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not DEVICE_PATTERN.fullmatch(text):
            self.fail(f"{text!r} is not auto, cpu, cuda or cuda:N", param, ctx)
        return text


DEVICE = DeviceType()


def version_option(prog: str) -> Any:
    """``--version``: ``<prog>, version X.Y.Z``, the same on the three commands."""
    return click.version_option(version=__version__, prog_name=prog)


def plural(count: int, noun: str) -> str:
    """``1 class``, ``4 classes``, ``1 epoch``, ``2 epochs``."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith(("ss", "x", "sh")) else f"{count} {noun}s"
