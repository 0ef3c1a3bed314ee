"""CrosSCLR: one SkeletonCLR (MoCo v2) per view plus cross-view knowledge mining (CrosSCLR §3).

Stage one (epochs before ``cross_view_epoch``) trains every view alone with InfoNCE (Eq. 1);
stage two replaces it by L_cross (Eq. 8): each view's top-K neighbours and similarities guide the
other views (Eq. 4-7). The views are the 50-frame store joints, augmented (shear, temporal
pad-crop), with every modality derived from the augmented joints by the torch twins, so the
modalities of one sample stay consistent with each other. All banks are written together, so
row i of every bank holds the same sample (what Eq. 6 indexes across views).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor

from skelkit.store.layout import Layout
from skelkit.train.losses import info_nce
from skelkit.train.losses_crossview import cross_view_mining
from skelkit.train.methods.base import Method, MethodConfig, batch_views, check_moco_settings
from skelkit.train.modalities import MODALITY_NAMES, derive


@dataclasses.dataclass
class CrosSCLRConfig(MethodConfig):
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


class CrosSCLR(Method):
    name: ClassVar[str] = "crossclr"
    Config: ClassVar[type[MethodConfig]] = CrosSCLRConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: CrosSCLRConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self._build_branches(tuple(cfg.modalities))

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        return derive(x, modality, gamma, self.layout)

    def cross_view_stage(self, epoch: int) -> bool:
        """True from the configured epoch on: stage two, cross-view knowledge mining."""
        return epoch >= self.cfg.cross_view_epoch

    # --- shared by CrosSCLR and IKEM ---------------------------------------------------------

    def encode_views(self, q: Tensor, k: Tensor, gamma: Tensor,
                     frozen_keys: Iterable[str] = ()) -> ViewOutputs:
        """Query and key embeddings of every modality; the key branches of ``frozen_keys`` skip
        their momentum update (IKEM stage two)."""
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

    def view_loss(self, views: ViewOutputs, epoch: int) -> tuple[Tensor, dict[str, float]]:
        """Stage one: sum of per-view InfoNCE (Eq. 1). Stage two: L_cross (Eq. 8), logged per
        view u as sum_{v != u} L_{v->u}."""
        cfg: CrosSCLRConfig = self.cfg  # type: ignore[assignment]
        total = views.z_q[self.modalities[0]].new_zeros((), dtype=torch.float32)
        logs: dict[str, float] = {}
        # One log key per view in both stages (metrics.csv keeps the first epoch's columns).
        stage_two = self.cross_view_stage(epoch)
        for u in self.modalities:
            if not stage_two:
                term = info_nce(views.z_q[u], views.z_k[u], views.bank[u], cfg.temperature)
            else:
                term = sum((cross_view_mining(views.z_q[u], views.z_k[u], views.bank[u],
                                              views.z_q[v], views.bank[v], cfg.topk,
                                              cfg.temperature, cfg.embedding_context)
                            for v in self.modalities if v != u), start=total.new_zeros(()))
            total = total + term
            logs[f"contrast/{u}"] = float(term.detach())
        return total, logs

    def enqueue(self, views: ViewOutputs) -> None:
        for m in self.modalities:
            self.branch(m).queue.enqueue(views.z_k[m])

    # --- engine-facing -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        q, k, gamma = batch_views(batch)
        views = self.encode_views(q, k, gamma)
        loss, logs = self.view_loss(views, epoch)
        self.enqueue(views)
        logs.update({"loss": float(loss.detach()),
                     "stage": 2.0 if self.cross_view_stage(epoch) else 1.0})
        return loss, logs
