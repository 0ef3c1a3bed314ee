"""SkeletonCLR: MoCo v2 on one modality of the fixed 50-frame joints (docs/design.md §5.2)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from skelkit.train.losses.contrastive import info_nce
from skelkit.train.methods.base import MethodConfig, MoCoConfig, MoCoMethod, MoCoOutputs, StepResult
from skelkit.train.modalities import MODALITY_NAMES


@dataclasses.dataclass
class SkeletonCLRConfig(MoCoConfig):
    modality: str = "joint"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"channel_multiplier": 0.25, "hidden_dim": 256, "dropout": 0.5})
    queue_size: int = 32768

    def validate(self) -> None:
        super().validate()
        if self.modality not in MODALITY_NAMES:
            raise ValueError(f"modality: {self.modality!r} is not one of {MODALITY_NAMES}")

    def trained_modalities(self) -> tuple[str, ...]:
        return (self.modality,)


class SkeletonCLR(MoCoMethod[SkeletonCLRConfig]):
    name: ClassVar[str] = "skeletonclr"
    Config: ClassVar[type[MethodConfig]] = SkeletonCLRConfig
    input_kind: ClassVar[str] = "fixed"

    def loss(self, encoded: MoCoOutputs, epoch: int) -> StepResult:
        """InfoNCE of the query against its key and the bank (I²MD Eq. 1)."""
        m = self.cfg.modality
        loss = info_nce(encoded.z_q[m], encoded.z_k[m], encoded.bank[m], self.cfg.temperature)
        return StepResult(loss, {"loss": loss.detach(), f"scl/{m}": loss.detach()})
