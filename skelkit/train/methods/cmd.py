"""CMD: cross-modal mutual distillation between joint, motion and bone (I²MD Sections 3.1-3.2).

Per modality MoCo v2 (SCL, Eq. 1) plus, for every ordered pair (teacher a, student b), the
neighbour distillation KL(p(z_k^a, tau_t) || p(z_q^b, tau_s)) over the top-K_c anchors of a's key
in a's bank (Eq. 2-3); both directions of every pair make Eq. 4, all pairs Eq. 5.

Modalities follow CMD's code, derived from the augmented 64-frame joints: motion is the plain
frame difference x_{t+1} - x_t (zero last frame, no time scale: views are crop-resized from
variable-length sequences, so no gamma applies); bone is x_v - x_parent(v) on CMD's own tree
(``bone_tree: cmd``: the NTU tree with hand joints (22,23) (23,8) (24,25) (25,12), and a zero
self-loop at joint 21) or on the store layout's tree with its torso normal (``bone_tree: layout``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar

import torch
from torch import Tensor

from skelkit.store.layout import Layout
from skelkit.train.losses import info_nce, neighbour_distillation
from skelkit.train.methods.base import Method, MethodConfig, batch_views, check_moco_settings
from skelkit.train.modalities import bones, temporal_difference

CMD_MODALITIES = ("joint", "motion", "bone")
# CMD's bone list, 1-based (child, parent); differs from DESIGN.md §3 at the hand joints.
_CMD_NTU_BONES = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12),
)


def cmd_bone_parents(layout: Layout) -> tuple[int, ...]:
    """CMD's 0-based parent per joint; only defined for the 25-joint NTU layout."""
    if layout.name != "ntu25" or layout.num_joints != len(_CMD_NTU_BONES):
        raise ValueError(f"bone_tree 'cmd' is CMD's NTU-25 tree; layout {layout.name!r} needs "
                         "bone_tree: layout")
    return tuple(p - 1 for _, p in _CMD_NTU_BONES)


@dataclasses.dataclass
class CMDConfig(MethodConfig):
    modalities: tuple[str, ...] = CMD_MODALITIES
    encoder: str = "bigru"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"hidden_size": 1024, "num_layers": 3})
    feature_dim: int = 128
    queue_size: int = 16384
    momentum: float = 0.999
    temperature: float = 0.07
    teacher_temperature: float = 0.05
    student_temperature: float = 0.1
    topk: int = 8192
    """K_c: anchors per teacher key."""
    cmd_weight: float = 1.0
    mlp: bool = True
    bone_tree: str = "cmd"

    def validate(self) -> None:
        check_moco_settings(self)
        bad = [m for m in self.modalities if m not in CMD_MODALITIES]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: distinct names from {CMD_MODALITIES}, got "
                             f"{list(self.modalities)}")
        if not 0 < self.topk <= self.queue_size:
            raise ValueError(f"topk: need 0 < topk <= queue_size ({self.queue_size}), "
                             f"got {self.topk}")
        if self.teacher_temperature <= 0 or self.student_temperature <= 0:
            raise ValueError("teacher_temperature and student_temperature must be positive")
        if self.bone_tree not in ("cmd", "layout"):
            raise ValueError(f"bone_tree: 'cmd' or 'layout', got {self.bone_tree!r}")


def cross_modal_distillation_terms(
    keys: dict[str, Tensor], queries: dict[str, Tensor], banks: dict[str, Tensor], cfg: CMDConfig,
) -> dict[str, Tensor]:
    """``md/a->b``: neighbour distillation teacher a -> student b for every ordered pair of
    modalities; both directions of a pair make I²MD Eq. 4, their sum Eq. 5 (L_CMD)."""
    return {
        f"md/{teacher}->{student}": neighbour_distillation(
            keys[teacher], banks[teacher], queries[student], banks[student], cfg.topk,
            cfg.teacher_temperature, cfg.student_temperature)
        for teacher, student in itertools.permutations(keys, 2)
    }


class CMD(Method):
    name: ClassVar[str] = "cmd"
    Config: ClassVar[type[MethodConfig]] = CMDConfig
    input_kind: ClassVar[str] = "sequence"

    def __init__(self, cfg: CMDConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        if cfg.bone_tree == "cmd":
            self.bone_parents, self.torso_normal = cmd_bone_parents(layout), None
        else:
            self.bone_parents, self.torso_normal = layout.parents, layout.torso_normal
        self._build_branches(tuple(cfg.modalities))

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        if modality == "motion":
            return temporal_difference(x)
        if modality == "bone":
            return bones(x, self.bone_parents, self.torso_normal)
        return x

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        q, k, gamma = batch_views(batch)
        cfg: CMDConfig = self.cfg  # type: ignore[assignment]
        z_q, z_k, bank = {}, {}, {}
        for m in self.modalities:
            z_q[m], _ = self.branch(m).query(self.derive_input(q, gamma, m))
        with torch.no_grad():
            for m in self.modalities:
                self.branch(m).momentum_update()
                z_k[m], _ = self.branch(m).key(self.derive_input(k, gamma, m))
                # Cloned: the enqueue below writes in place into a tensor autograd saved.
                bank[m] = self.branch(m).queue.keys.clone()
        logs: dict[str, float] = {}
        scl = z_q[self.modalities[0]].new_zeros((), dtype=torch.float32)
        for m in self.modalities:  # I²MD Eq. 1 per modality
            term = info_nce(z_q[m], z_k[m], bank[m], cfg.temperature)
            scl = scl + term
            logs[f"scl/{m}"] = float(term.detach())
        md_terms = cross_modal_distillation_terms(z_k, z_q, bank, cfg)  # I²MD Eq. 4-5
        distill = sum(md_terms.values(), scl.new_zeros(()))
        logs.update({name: float(t.detach()) for name, t in md_terms.items()})
        loss = scl + cfg.cmd_weight * distill
        for m in self.modalities:
            self.branch(m).queue.enqueue(z_k[m])
        logs.update({"loss": float(loss.detach()), "scl": float(scl.detach()),
                     "cmd": float(distill.detach())})
        return loss, logs
