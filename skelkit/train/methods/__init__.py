"""Method registry: name -> Method class (one module per method)."""

from __future__ import annotations

from skelkit.train.methods.base import Method, MethodConfig
from skelkit.train.methods.cmd import CMD
from skelkit.train.methods.skeletonclr import SkeletonCLR

METHODS: dict[str, type[Method]] = {"skeletonclr": SkeletonCLR, "cmd": CMD}

__all__ = ["CMD", "METHODS", "Method", "MethodConfig", "SkeletonCLR"]
