"""IKEM: six-modality CrosSCLR with the implicit knowledge exchange (IKEM §2.1, docs/design.md §5.6).

Stage one trains every modality alone with InfoNCE. Stage two (from ``cross_view_epoch``) adds,
next to CrosSCLR's explicit exchange L_cross (CrosSCLR Eq. 8), the implicit one L_ikem (IKEM
Eq. 1-2): per modality an extra MLP g~_u maps the query encoder's feature to the space of the
concatenated keys of all modalities, contrasted against a bank M_c of such concatenations. In
stage two the key encoders of the high-performing modalities (the paper: joint, bone, axis) stop
their momentum update ("the key encoder is frozen"), configurable by ``frozen_key_modalities``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.heads import ProjectionHead
from skelkit.train.losses_crossview import concat_unit, implicit_exchange
from skelkit.train.methods.base import MethodConfig, batch_views
from skelkit.train.methods.crossclr import CrosSCLR, CrosSCLRConfig
from skelkit.train.moco import FeatureQueue
from skelkit.train.modalities import MODALITY_NAMES


@dataclasses.dataclass
class IKEMConfig(CrosSCLRConfig):
    modalities: tuple[str, ...] = MODALITY_NAMES
    ikem_weight: float = 1.0
    """Weight of L_ikem next to L_cross in stage two (the paper adds them: 1)."""
    frozen_key_modalities: tuple[str, ...] = ("joint", "bone", "axis")
    """Key encoders without momentum update in stage two."""

    def validate(self) -> None:
        super().validate()
        stray = [m for m in self.frozen_key_modalities if m not in self.modalities]
        if stray:
            raise ValueError(f"frozen_key_modalities: {stray} are not among the trained "
                             f"modalities {list(self.modalities)}")
        if self.ikem_weight < 0:
            raise ValueError(f"ikem_weight: must be >= 0, got {self.ikem_weight}")


class IKEM(CrosSCLR):
    name: ClassVar[str] = "ikem"
    Config: ClassVar[type[MethodConfig]] = IKEMConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: IKEMConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        concat_dim = cfg.feature_dim * len(self.modalities)
        self.exchange = nn.ModuleDict({
            m: ProjectionHead(self.branch(m).encoder_q.out_dim, concat_dim, mlp=True)
            for m in self.modalities})
        self.concat_queue = FeatureQueue(cfg.queue_size, concat_dim)

    def mapped_query(self, modality: str, hidden: Tensor) -> Tensor:
        """z~_u = g~_u(f_u), L2-normalised (IKEM §2.1)."""
        return F.normalize(self.exchange[modality](hidden), dim=1)

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        cfg: IKEMConfig = self.cfg  # type: ignore[assignment]
        q, k, gamma = batch_views(batch)
        stage_two = self.cross_view_stage(epoch)
        views = self.encode_views(q, k, gamma,
                                  cfg.frozen_key_modalities if stage_two else ())
        loss, logs = self.view_loss(views, epoch)
        concat_key = concat_unit([views.z_k[m] for m in self.modalities])  # z^_c
        mapped = {m: self.mapped_query(m, views.h_q[m]) for m in self.modalities}
        if stage_two:
            bank = self.concat_queue.keys.clone()
            ikem = loss.new_zeros(())
            for m in self.modalities:  # IKEM Eq. 2: the sum over modalities of Eq. 1
                ikem = ikem + implicit_exchange(mapped[m], concat_key, bank, cfg.temperature)
            loss = loss + cfg.ikem_weight * ikem
        else:
            # Keeps the exchange MLPs in the graph (DDP expects every parameter to get a
            # gradient) without changing the stage-one loss.
            ikem = 0.0 * sum(t.sum() for t in mapped.values())
            loss = loss + ikem
        logs["ikem"] = float(ikem.detach())
        self.enqueue(views)
        self.concat_queue.enqueue(concat_key)
        logs.update({"loss": float(loss.detach()), "stage": 2.0 if stage_two else 1.0})
        return loss, logs
