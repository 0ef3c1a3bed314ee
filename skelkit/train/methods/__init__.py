"""Method registry: name -> Method class (one module per method)."""

from __future__ import annotations

from skelkit.train.methods.base import Method, MethodConfig
from skelkit.train.methods.cmd import CMD
from skelkit.train.methods.crossclr import CrosSCLR
from skelkit.train.methods.i2md import I2MD
from skelkit.train.methods.ikem import IKEM
from skelkit.train.methods.ikem_student import IKEMStudent
from skelkit.train.methods.skeletonclr import SkeletonCLR

METHODS: dict[str, type[Method]] = {
    "skeletonclr": SkeletonCLR,
    "cmd": CMD,
    "i2md": I2MD,
    "crossclr": CrosSCLR,
    "ikem": IKEM,
    "ikem-student": IKEMStudent,
}

__all__ = ["CMD", "I2MD", "IKEM", "METHODS", "CrosSCLR", "IKEMStudent", "Method", "MethodConfig", "SkeletonCLR"]
