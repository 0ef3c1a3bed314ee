"""CrosSCLR: one SkeletonCLR (MoCo v2) per view plus cross-view knowledge mining (CrosSCLR §3).

Stage one (epochs before ``cross_view_epoch``) trains every view alone with InfoNCE (Eq. 1);
stage two replaces it by L_cross (Eq. 8): each view's top-K neighbours and similarities guide the
other views (Eq. 4-7). The views are the 50-frame store joints, augmented (shear, temporal
pad-crop), with every modality derived from the augmented joints by the torch twins, so the
modalities of one sample stay consistent with each other. All banks are written together, so
row i of every bank holds the same sample (what Eq. 6 indexes across views).

Stage boundary: ``cross_view_epoch`` is the first (0-based) epoch of stage two. The authors'
processors run stage one while ``epoch <= cross_epoch`` with epochs counted from 1, so their
``cross_epoch: 150`` is our ``cross_view_epoch: 150`` (stage two from our epoch 150 = their 151).

Fidelity switches (``SWITCHES``): ``reference`` is what the authors' code computes (the golden
``stgcn.npz``, ``crossview_loss.npz`` and ``ikem_step.npz``), ``paper`` the equations as printed.
Known differences of CrosSCLR's own repository (LinguoLi/CrosSCLR) that no golden covers and no
switch reproduces: its bone list chains the hands (22->23->8, 24->25->12) with a zero bone at
joint 21, its motion is not time-scaled, and its motion and bone heads share the joint head's
last Linear (``net/crossclr_3views.py``, the MLP "hack").
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders.stgcn import (
    DROPOUT_SWITCH,
    GRAPH_SWITCH,
    check_no_switched_args,
    stgcn_switch_args,
)
from skelkit.train.fidelity import Switch, SwitchTable
from skelkit.train.losses.contrastive import info_nce
from skelkit.train.losses.crossview import MinedViewLoss, cross_view_mining, cross_view_reference
from skelkit.train.methods.base import (
    MethodConfig,
    MoCoConfig,
    MoCoMethod,
    MoCoOutputs,
    StepResult,
)
from skelkit.train.modalities import MODALITY_NAMES

INIT_SWITCH = Switch(
    "init", "normal", "default",
    "weights_init of processor/pretrain.py (lines 22-30), applied to the whole model after the "
    "key encoders copied the query encoders: Conv/Linear weights N(0, 0.02^2), zero biases, "
    "BatchNorm weights N(1, 0.02^2), zero BatchNorm biases; query and key encoders start "
    "different (golden ikem_step README, Weights)")
CROSS_VIEW_LOSS_SWITCH = Switch(
    "cross_view_loss", "reference", "paper",
    "stage two: logits [q_u.k_u, q_u.M_u, (q_u.M_u)*(q_v.M_v)]/T, positives [1, onehot(top-k of "
    "q_v.M_v), same], term = mean of -log p over the positives, per view the mean over the "
    "batch of sum_{v!=u} term_uv / (views-1), no stop-gradient on the mining view "
    "(processor/pretrain_crossclr_6views.py lines 87-131, net/crossclr_6views.py lines 975-1134); "
    "paper: CrosSCLR Eq. 6 (positives summed inside the log, s^v detached), summed (Eq. 8)")
STAGE_TWO_KEYS_SWITCH = Switch(
    "stage_two_frozen_keys", ("joint", "bone"), (),
    "stage two momentum-updates only the motion key encoder; the joint and bone key encoders "
    "stay frozen (LinguoLi/CrosSCLR net/crossclr_3views.py cross_training); paper: all updated")

CROSSCLR_SWITCHES = SwitchTable("crossclr", GRAPH_SWITCH, DROPOUT_SWITCH, INIT_SWITCH,
                                CROSS_VIEW_LOSS_SWITCH, STAGE_TWO_KEYS_SWITCH)


def normal_init_(module: nn.Module) -> None:
    """The authors' weights_init on every Conv/Linear/BatchNorm inside ``module`` (see
    ``INIT_SWITCH``); edge importance, BatchNorm statistics and queues are left alone."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear):
                m.weight.normal_(0.0, 0.02)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()


@dataclasses.dataclass
class CrosSCLRConfig(MoCoConfig):
    SWITCHES: ClassVar[SwitchTable | None] = CROSSCLR_SWITCHES
    modalities: tuple[str, ...] = ("joint", "motion", "bone")
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"channel_multiplier": 0.25})
    queue_size: int = 32768
    topk: int = 1
    """K of the knowledge miner (Eq. 4)."""
    cross_view_epoch: int = 150
    """First (0-based) epoch of stage two: InfoNCE before it, L_cross (Eq. 8) from it on."""
    embedding_context: bool = True
    """Weight view u's similarities by view v's (Eq. 6); false is the paper's "w/o EC"."""

    def validate(self) -> None:
        super().validate()
        check_no_switched_args(self.encoder_args)
        bad = [m for m in self.modalities if m not in MODALITY_NAMES]
        if bad or len(self.modalities) < 2 or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: at least two distinct names from {MODALITY_NAMES}, "
                             f"got {list(self.modalities)}")
        if not 0 <= self.topk <= self.queue_size:
            raise ValueError(f"topk: need 0 <= topk <= queue_size ({self.queue_size}), "
                             f"got {self.topk}")
        if self.cross_view_epoch < 0:
            raise ValueError(f"cross_view_epoch: must be >= 0, got {self.cross_view_epoch}")


@dataclasses.dataclass
class StepOutputs(StepResult):
    """One training step's loss and its parts (the golden tests read them)."""

    views: MoCoOutputs
    view_losses: dict[str, Tensor]
    """Per modality: its InfoNCE (stage one) or its cross-view loss (+ IKEM's exchange)."""
    cross: dict[str, MinedViewLoss] | None = None
    """Stage two, ``cross_view_loss: reference``: per view u its logits and terms, listed in the
    order of the other modalities."""
    masks: dict[str, Tensor] | None = None
    """Stage two, ``cross_view_loss: reference``: the positive mask each view mines."""
    exchange_logits: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    exchange_losses: dict[str, Tensor] = dataclasses.field(default_factory=dict)


CC = TypeVar("CC", bound=CrosSCLRConfig)


class CrosSCLR(MoCoMethod[CC]):
    name: ClassVar[str] = "crossclr"
    Config: ClassVar[type[MethodConfig]] = CrosSCLRConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: CC, layout: Layout, num_bodies: int = 2) -> None:
        switched = stgcn_switch_args(cfg.encoder, cfg.behaviour())
        super().__init__(cfg, layout, num_bodies, encoder_args={**cfg.encoder_args, **switched})
        if self.behaviour.init == "normal":
            normal_init_(self.branches)  # after the key copies: keys start independent

    def cross_view_stage(self, epoch: int) -> bool:
        """True from the configured epoch on: stage two, cross-view knowledge mining."""
        return epoch >= self.cfg.cross_view_epoch

    def stage_two_frozen_keys(self) -> tuple[str, ...]:
        """Modalities whose key encoder skips the momentum update in stage two."""
        return tuple(m for m in self.behaviour.stage_two_frozen_keys if m in self.modalities)

    def frozen_keys(self, epoch: int) -> tuple[str, ...]:
        """Stage two's frozen keys still run, in the module's mode, without momentum update."""
        return self.stage_two_frozen_keys() if self.cross_view_stage(epoch) else ()

    def loss(self, encoded: MoCoOutputs, epoch: int) -> StepOutputs:
        """Stage one: per-view InfoNCE (Eq. 1). Stage two: the cross-view loss of
        ``cross_view_loss`` per view u (paper: sum_{v != u} L_{v->u} of Eq. 6, summed as
        Eq. 8). The total is the sum over views."""
        cfg, views, mods = self.cfg, encoded, self.modalities
        stage_two = self.cross_view_stage(epoch)
        out = StepOutputs(views.z_q[mods[0]].new_zeros((), dtype=torch.float32), {}, views, {})
        if not stage_two:
            for u in mods:
                out.view_losses[u] = info_nce(views.z_q[u], views.z_k[u], views.bank[u],
                                              cfg.temperature)
        elif self.behaviour.cross_view_loss == "reference":
            losses, masks = cross_view_reference(
                [views.z_q[m] for m in mods], [views.z_k[m] for m in mods],
                [views.bank[m] for m in mods], cfg.topk, cfg.temperature, cfg.embedding_context)
            out.cross = dict(zip(mods, losses, strict=True))
            out.masks = dict(zip(mods, masks, strict=True))
            out.view_losses = {u: out.cross[u].loss for u in mods}
        else:
            for u in mods:
                out.view_losses[u] = sum(
                    (cross_view_mining(views.z_q[u], views.z_k[u], views.bank[u], views.z_q[v],
                                       views.bank[v], cfg.topk, cfg.temperature,
                                       cfg.embedding_context)
                     for v in mods if v != u), start=out.loss.new_zeros(()))
        for u in mods:
            out.loss = out.loss + out.view_losses[u]
            # One log key per view in both stages (metrics.csv keeps the first epoch's columns).
            out.logs[f"contrast/{u}"] = out.view_losses[u].detach()
        out.logs.update({"loss": out.loss.detach(), "stage": 2.0 if stage_two else 1.0})
        return out
