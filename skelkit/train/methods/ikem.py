"""IKEM: six-modality CrosSCLR with the implicit knowledge exchange (IKEM §2.1, docs/design.md §5.6).

Stage one trains every modality alone with InfoNCE. Stage two (from ``cross_view_epoch``) adds,
next to CrosSCLR's explicit exchange L_cross (CrosSCLR Eq. 8), the implicit one L_ikem (IKEM
Eq. 1-2): per modality an extra MLP g~_u maps the query encoder's feature to the space of the
concatenated keys of all modalities, contrasted against the bank M_c of concatenated keys, which
is the per-modality banks stacked and renormalised (their rows are written together). In stage
two the key encoders of the high-performing modalities (the paper: joint, bone, axis) stop their
momentum update ("the key encoder is frozen"), configurable by ``frozen_key_modalities``; they
still run, in train mode, so their BatchNorm statistics move.

With ``fidelity: reference`` every number of one step equals the authors' code (golden
``ikem_step.npz``); the switches (``IKEM_SWITCHES``) say where it departs from the paper.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.stgcn import DROPOUT_SWITCH, GRAPH_SWITCH
from skelkit.train.fidelity import Switch, SwitchTable
from skelkit.train.heads import ProjectionHead
from skelkit.train.losses.contrastive import info_nce_logits
from skelkit.train.methods.base import MethodConfig, MoCoOutputs
from skelkit.train.methods.crossclr import (
    CROSS_VIEW_LOSS_SWITCH,
    INIT_SWITCH,
    CrosSCLR,
    CrosSCLRConfig,
    StepOutputs,
    normal_init_,
)
from skelkit.train.modalities import MODALITY_NAMES

EXCHANGE_HIDDEN_SWITCH = Switch(
    "exchange_hidden_factor", 3, 1,
    "the exchange MLPs mlp2{j,m,b,a,r,o} are Linear(hidden, 3*hidden)-ReLU-Linear(3*hidden, "
    "3*hidden) (net/crossclr_6views.py construction, lines 10-229); the output stays "
    "6*feature_dim, which is 3*hidden at the published sizes; paper: hidden width = the "
    "encoder's")
UNIT_AXIS_SWITCH = Switch(
    "unit_axis", False, True,
    "the rotation-axis encoder reads the raw cross product b_v x b_w, not its unit vector "
    "(net/crossclr_6views.py stage one lines 466-693, golden ikem_step encoder_input)")
STAGE_ONE_EXCHANGE_SWITCH = Switch(
    "stage_one_exchange_grad", False, True,
    "stage one leaves the exchange MLPs out of the graph: no gradient, so SGD's weight decay "
    "and momentum leave them untouched until stage two (ikem_step stage1 grad_none; DDP then "
    "needs engine.find_unused_parameters); paper: a zero-weighted term keeps them in the graph")

IKEM_SWITCHES = SwitchTable("ikem", GRAPH_SWITCH, DROPOUT_SWITCH, INIT_SWITCH,
                            CROSS_VIEW_LOSS_SWITCH, EXCHANGE_HIDDEN_SWITCH, UNIT_AXIS_SWITCH,
                            STAGE_ONE_EXCHANGE_SWITCH)


@dataclasses.dataclass
class IKEMConfig(CrosSCLRConfig):
    SWITCHES: ClassVar[SwitchTable | None] = IKEM_SWITCHES
    modalities: tuple[str, ...] = MODALITY_NAMES
    ikem_weight: float = 1.0
    """Weight of L_ikem next to L_cross in stage two (the paper and the code add them: 1)."""
    frozen_key_modalities: tuple[str, ...] = ("joint", "bone", "axis")
    """Key encoders without momentum update in stage two (paper and code agree)."""

    def validate(self) -> None:
        super().validate()
        stray = [m for m in self.frozen_key_modalities if m not in self.modalities]
        if stray:
            raise ValueError(f"frozen_key_modalities: {stray} are not among the trained "
                             f"modalities {list(self.modalities)}")
        if self.ikem_weight < 0:
            raise ValueError(f"ikem_weight: must be >= 0, got {self.ikem_weight}")


class IKEM(CrosSCLR[IKEMConfig]):
    name: ClassVar[str] = "ikem"
    Config: ClassVar[type[MethodConfig]] = IKEMConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: IKEMConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.unit_axis = self.behaviour.unit_axis
        concat_dim = cfg.feature_dim * len(self.modalities)
        factor = self.behaviour.exchange_hidden_factor
        self.exchange = nn.ModuleDict({
            m: ProjectionHead(self.branch(m).encoder_q.out_dim, concat_dim, mlp=True,
                              hidden_dim=self.branch(m).encoder_q.out_dim * factor)
            for m in self.modalities})
        if self.behaviour.init == "normal":
            normal_init_(self.exchange)

    def stage_two_frozen_keys(self) -> tuple[str, ...]:
        return tuple(self.cfg.frozen_key_modalities)

    def mapped_query(self, modality: str, hidden: Tensor) -> Tensor:
        """z~_u = g~_u(f_u), L2-normalised (IKEM §2.1)."""
        return F.normalize(self.exchange[modality](hidden), dim=1)

    def loss(self, encoded: MoCoOutputs, epoch: int) -> StepOutputs:
        """CrosSCLR's loss, plus in stage two ikem_weight x L_ikem (IKEM Eq. 1-2)."""
        out = super().loss(encoded, epoch)
        cfg, views, mods = self.cfg, encoded, self.modalities
        ikem = out.loss.new_zeros(())
        if self.cross_view_stage(epoch):
            # z^_c and M_c: the unit concatenations of the keys and of the bank rows (the banks
            # as they were before this step's enqueue).
            concat_key = F.normalize(torch.cat([views.z_k[m] for m in mods], dim=1), dim=1)
            concat_bank = F.normalize(torch.cat([views.bank[m] for m in mods], dim=1), dim=1)
            for m in mods:  # IKEM Eq. 2: the sum over modalities of Eq. 1
                logits = info_nce_logits(self.mapped_query(m, views.h_q[m]), concat_key,
                                         concat_bank, cfg.temperature)
                target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
                out.exchange_logits[m] = logits
                out.exchange_losses[m] = F.cross_entropy(logits, target)
                out.view_losses[m] = out.view_losses[m] + cfg.ikem_weight * out.exchange_losses[m]
                ikem = ikem + out.exchange_losses[m]
            out.loss = out.loss + cfg.ikem_weight * ikem
        elif self.behaviour.stage_one_exchange_grad:
            # Keeps the exchange MLPs in the graph (DDP expects every parameter to get a
            # gradient) without changing the stage-one loss.
            out.loss = out.loss + 0.0 * sum(self.mapped_query(m, views.h_q[m]).sum()
                                            for m in mods)
        out.logs["ikem"] = ikem.detach()
        out.logs["loss"] = out.loss.detach()
        return out
