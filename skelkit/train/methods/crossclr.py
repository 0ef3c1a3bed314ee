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
from collections.abc import Iterable
from typing import Any, ClassVar

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
from skelkit.train.losses import info_nce
from skelkit.train.losses_crossview import MinedViewLoss, cross_view_mining, cross_view_reference
from skelkit.train.methods.base import Method, MethodConfig, batch_views, check_moco_settings
from skelkit.train.modalities import MODALITY_NAMES, derive

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
class CrosSCLRConfig(MethodConfig):
    SWITCHES: ClassVar[SwitchTable | None] = CROSSCLR_SWITCHES
    modalities: tuple[str, ...] = ("joint", "motion", "bone")
    encoder: str = "stgcn"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"channel_multiplier": 0.25})
    feature_dim: int = 128
    queue_size: int = 32768
    momentum: float = 0.999
    temperature: float = 0.07
    mlp: bool = True
    topk: int = 1
    """K of the knowledge miner (Eq. 4)."""
    cross_view_epoch: int = 150
    """First (0-based) epoch of stage two: InfoNCE before it, L_cross (Eq. 8) from it on."""
    embedding_context: bool = True
    """Weight view u's similarities by view v's (Eq. 6); false is the paper's "w/o EC"."""

    def validate(self) -> None:
        check_moco_settings(self)
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
class ViewOutputs:
    """Per modality: query embedding, query hidden feature, key embedding, bank snapshot."""

    z_q: dict[str, Tensor]
    h_q: dict[str, Tensor]
    z_k: dict[str, Tensor]
    bank: dict[str, Tensor]


@dataclasses.dataclass
class StepOutputs:
    """One training step's loss and its parts (the golden tests read them)."""

    loss: Tensor
    logs: dict[str, float]
    views: ViewOutputs
    view_losses: dict[str, Tensor]
    """Per modality: its InfoNCE (stage one) or its cross-view loss (+ IKEM's exchange)."""
    cross: dict[str, MinedViewLoss] | None = None
    """Stage two, ``cross_view_loss: reference``: per view u its logits and terms, listed in the
    order of the other modalities."""
    masks: dict[str, Tensor] | None = None
    """Stage two, ``cross_view_loss: reference``: the positive mask each view mines."""
    exchange_logits: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    exchange_losses: dict[str, Tensor] = dataclasses.field(default_factory=dict)


class CrosSCLR(Method):
    name: ClassVar[str] = "crossclr"
    Config: ClassVar[type[MethodConfig]] = CrosSCLRConfig
    input_kind: ClassVar[str] = "fixed"
    unit_axis: bool = True
    """The hinge axis fed to an ``axis`` encoder is the unit one (IKEM's reference: raw)."""

    def __init__(self, cfg: CrosSCLRConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.behaviour = cfg.behaviour()
        self.encoder_args = {**cfg.encoder_args,
                             **stgcn_switch_args(cfg.encoder, self.behaviour)}
        self.modalities = tuple(cfg.modalities)
        self.branches = nn.ModuleDict({m: self._make_branch(
            cfg.encoder, self.encoder_args, cfg.feature_dim, cfg.queue_size, cfg.momentum,
            cfg.mlp) for m in self.modalities})
        if self.behaviour.init == "normal":
            normal_init_(self.branches)  # after the key copies: keys start independent

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        return derive(x, modality, gamma, self.layout, unit_axis=self.unit_axis)

    def cross_view_stage(self, epoch: int) -> bool:
        """True from the configured epoch on: stage two, cross-view knowledge mining."""
        return epoch >= self.cfg.cross_view_epoch

    def stage_two_frozen_keys(self) -> tuple[str, ...]:
        """Modalities whose key encoder skips the momentum update in stage two."""
        return tuple(m for m in self.behaviour.stage_two_frozen_keys if m in self.modalities)

    # --- shared by CrosSCLR and IKEM ---------------------------------------------------------

    def encode_views(self, q: Tensor, k: Tensor, gamma: Tensor,
                     frozen_keys: Iterable[str] = ()) -> ViewOutputs:
        """Query and key embeddings of every modality; the key branches of ``frozen_keys`` skip
        their momentum update (stage two) but still run, in the module's mode."""
        frozen = set(frozen_keys)
        out = ViewOutputs({}, {}, {}, {})
        for m in self.modalities:
            out.z_q[m], out.h_q[m] = self.branch(m).query(self.derive_input(q, gamma, m))
        with torch.no_grad():
            for m in self.modalities:
                if m not in frozen:
                    self.branch(m).momentum_update()
                out.z_k[m], _ = self.branch(m).key(self.derive_input(k, gamma, m))
                # Cloned: the enqueue after the step writes in place into a tensor autograd saved.
                out.bank[m] = self.branch(m).queue.keys.clone()
        return out

    def view_loss(self, views: ViewOutputs, epoch: int) -> StepOutputs:
        """Stage one: per-view InfoNCE (Eq. 1). Stage two: the cross-view loss of
        ``cross_view_loss`` per view u (paper: sum_{v != u} L_{v->u} of Eq. 6, summed as
        Eq. 8). The total is the sum over views."""
        cfg: CrosSCLRConfig = self.cfg  # type: ignore[assignment]
        mods = self.modalities
        out = StepOutputs(views.z_q[mods[0]].new_zeros((), dtype=torch.float32), {}, views, {})
        if not self.cross_view_stage(epoch):
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
            out.logs[f"contrast/{u}"] = float(out.view_losses[u].detach())
        return out

    def enqueue(self, views: ViewOutputs) -> None:
        for m in self.modalities:
            self.branch(m).queue.enqueue(views.z_k[m])

    def step(self, batch: dict[str, Tensor], epoch: int) -> StepOutputs:
        """One training step with its parts: momentum update, loss, enqueue."""
        q, k, gamma = batch_views(batch)
        stage_two = self.cross_view_stage(epoch)
        views = self.encode_views(q, k, gamma, self.stage_two_frozen_keys() if stage_two else ())
        out = self.view_loss(views, epoch)
        self.enqueue(views)
        out.logs.update({"loss": float(out.loss.detach()), "stage": 2.0 if stage_two else 1.0})
        return out

    # --- engine-facing -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        out = self.step(batch, epoch)
        return out.loss, out.logs
