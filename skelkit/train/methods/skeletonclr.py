"""SkeletonCLR: MoCo v2 on one modality of the fixed 50-frame joints (docs/design.md §5.2)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import Tensor

from skelkit.store.layout import Layout
from skelkit.train.losses import info_nce
from skelkit.train.methods.base import Method, MethodConfig, batch_views, check_moco_settings
from skelkit.train.modalities import MODALITY_NAMES, derive


@dataclasses.dataclass
class SkeletonCLRConfig(MethodConfig):
    modality: str = "joint"
    encoder: str = "stgcn"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"channel_multiplier": 0.25, "hidden_dim": 256, "dropout": 0.5})
    feature_dim: int = 128
    queue_size: int = 32768
    momentum: float = 0.999
    temperature: float = 0.07
    mlp: bool = True

    def validate(self) -> None:
        check_moco_settings(self)
        if self.modality not in MODALITY_NAMES:
            raise ValueError(f"modality: {self.modality!r} is not one of {MODALITY_NAMES}")


class SkeletonCLR(Method):
    name: ClassVar[str] = "skeletonclr"
    Config: ClassVar[type[MethodConfig]] = SkeletonCLRConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: SkeletonCLRConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self._build_branches((cfg.modality,))

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        return derive(x, modality, gamma, self.layout)

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        q, k, gamma = batch_views(batch)
        m = self.cfg.modality
        out = self.moco_encode(q, k, gamma)
        loss = info_nce(out.z_q[m], out.z_k[m], out.bank[m], self.cfg.temperature)
        self.moco_enqueue(out)
        return loss, {"loss": float(loss.detach()), f"scl/{m}": float(loss.detach())}
