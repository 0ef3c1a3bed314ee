"""CMD: cross-modal mutual distillation between joint, motion and bone (I²MD Sections 3.1-3.2).

Per modality MoCo v2 (SCL, Eq. 1) plus, for every ordered pair (teacher a, student b), the
neighbour distillation KL(p(z_k^a, tau_t) || p(z_q^b, tau_s)) over the top-K_c anchors of a's key
in a's bank (Eq. 2-3); both directions of every pair make Eq. 4, all pairs Eq. 5.

Modalities follow CMD's code, derived from the augmented 64-frame joints: motion is the plain
frame difference x_{t+1} - x_t (zero last frame, no time scale: views are crop-resized from
variable-length sequences, so no gamma applies); bone is x_v - x_parent(v) on CMD's own tree
(``bone_tree: cmd``: the NTU tree with hand joints (22,23) (23,8) (24,25) (25,12), and a zero
self-loop at joint 21) or on the store layout's tree with its torso normal (``bone_tree: layout``).

Where the authors' code (maoyunyao/CMD) computes something else than the paper's text, the
difference is a switch of ``CMD_SWITCHES`` (``fidelity: reference`` takes the code's side): the
encoder's directions and pooling, the initialisation, the downstream view. The step itself (keys
after the momentum update, InfoNCE against the queue before the enqueue, the six KL terms on the
teacher's top-k, the unweighted sum) is the same in both and is checked against the goldens.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.augment import CMDEvalView
from skelkit.train.fidelity import Switch, SwitchTable
from skelkit.train.losses.contrastive import info_nce
from skelkit.train.losses.distillation import neighbour_distillation
from skelkit.train.methods.base import (
    MethodConfig,
    MoCoConfig,
    MoCoMethod,
    MoCoOutputs,
    StepResult,
    View,
)
from skelkit.train.moco import MoCoBranch
from skelkit.train.modalities import bones, temporal_difference

CMD_MODALITIES = ("joint", "motion", "bone")
# CMD's bone list, 1-based (child, parent); differs from the layout tree at the hand joints.
_CMD_NTU_BONES = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (21, 21), (22, 23), (23, 8), (24, 25), (25, 12),
)

GRU_DIRECTIONS = Switch(
    "gru_directions", reference="forward", paper="bidirectional",
    doc="the GRU is called once per frame on a length-1 sequence (moco/GRU.py lines 30-49), so "
        "the reverse weights of every layer also run forward in time; here both run forward "
        "over the whole sequence (fused, no per-frame loop); paper: a true bidirectional GRU",
    choices=("forward", "bidirectional"))
POOL = Switch(
    "pool", reference="last", paper="final",
    doc="the feature is the top layer's output at the last frame (moco/GRU.py BIGRU, lines "
        "52-76); paper: the final state of each direction. `mean`: mean over frames",
    choices=("last", "final", "mean"))
INIT = Switch(
    "init", reference="xavier_children", paper="xavier_gru",
    doc="Xavier-uniform on every 2-D parameter of the encoder's children, the head's last "
        "Linear included (moco/builder_cmd.py lines 13-20, applied before the MLP's first "
        "Linear is added, which keeps PyTorch's default); paper: the GRU's matrices only",
    choices=("xavier_children", "xavier_gru"))
EVAL_VIEW = Switch(
    "eval_view", reference="centre_crop", paper="resize",
    doc="downstream input: the first 300 frames, the centre 95 % of them resized to the "
        "window (feeder/feeder_downstream.py lines 70-98, feeder/augmentations.py lines "
        "99-113); paper: the whole sequence resized",
    choices=("centre_crop", "resize"))
CMD_SWITCHES = SwitchTable("cmd", GRU_DIRECTIONS, POOL, INIT, EVAL_VIEW)


def cmd_bone_parents(layout: Layout) -> tuple[int, ...]:
    """CMD's 0-based parent per joint; only defined for the 25-joint NTU layout."""
    if layout.name != "ntu25" or layout.num_joints != len(_CMD_NTU_BONES):
        raise ValueError(f"bone_tree 'cmd' is CMD's NTU-25 tree; layout {layout.name!r} needs "
                         "bone_tree: layout")
    return tuple(p - 1 for _, p in _CMD_NTU_BONES)


def uses_cmd_bone_tree(bone_tree: str, layout: Layout) -> bool:
    """Whether ``bone_tree`` means CMD's NTU-25 tree on ``layout`` (``auto``: when it is NTU-25)."""
    if bone_tree == "auto":
        return layout.name == "ntu25" and layout.num_joints == len(_CMD_NTU_BONES)
    return bone_tree == "cmd"


@dataclasses.dataclass
class CMDConfig(MoCoConfig):
    SWITCHES: ClassVar[SwitchTable | None] = CMD_SWITCHES
    modalities: tuple[str, ...] = CMD_MODALITIES
    encoder: str = "bigru"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"hidden_size": 1024, "num_layers": 3})
    teacher_temperature: float = 0.05
    student_temperature: float = 0.1
    topk: int = 8192
    """K_c: anchors per teacher key."""
    cmd_weight: float = 1.0
    bone_tree: str = "cmd"
    """``cmd``: CMD's NTU-25 tree (the published configs); ``layout``: the store layout's tree;
    ``auto``: CMD's tree on an NTU-25 store, the layout's on any other (the tiny config)."""

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """``encoder_args.pool`` of older CMD configs is now the ``pool`` switch."""
        args = d.get("encoder_args")
        if isinstance(args, dict) and "pool" in args and d.get("encoder", "bigru") == "bigru":
            args = dict(args)
            pool = args.pop("pool")
            switches = dict(d.get("switches") or {})
            if switches.get("pool", pool) != pool:
                raise ValueError(f"encoder_args.pool {pool!r} and switches.pool "
                                 f"{switches['pool']!r} disagree; set switches.pool only")
            switches["pool"] = pool
            d = {**d, "encoder_args": args, "switches": switches}
        return d

    def validate(self) -> None:
        super().validate()
        bad = [m for m in self.modalities if m not in CMD_MODALITIES]
        if bad or not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"modalities: distinct names from {CMD_MODALITIES}, got "
                             f"{list(self.modalities)}")
        if not 0 < self.topk <= self.queue_size:
            raise ValueError(f"topk: need 0 < topk <= queue_size ({self.queue_size}), "
                             f"got {self.topk}")
        if self.teacher_temperature <= 0 or self.student_temperature <= 0:
            raise ValueError("teacher_temperature and student_temperature must be positive")
        if self.bone_tree not in ("cmd", "layout", "auto"):
            raise ValueError(f"bone_tree: 'cmd', 'layout' or 'auto', got {self.bone_tree!r}")
        if self.encoder == "bigru" and {"pool", "directions"} & set(self.encoder_args):
            raise ValueError("encoder_args: CMD sets the BiGRU's pool and directions from its "
                             "switches; use model.switches.pool / model.switches.gru_directions")


def cross_modal_distillation_terms(
    keys: dict[str, Tensor], queries: dict[str, Tensor], banks: dict[str, Tensor], cfg: CMDConfig,
) -> dict[str, Tensor]:
    """``md/a->b``: neighbour distillation teacher a -> student b for every ordered pair of
    modalities; both directions of a pair make I²MD Eq. 4, their sum Eq. 5 (L_CMD). The order
    (joint->motion, joint->bone, motion->joint, ...) is the reference's summation order
    (``moco/builder_cmd.py`` lines 239-248)."""
    return {
        f"md/{teacher}->{student}": neighbour_distillation(
            keys[teacher], banks[teacher], queries[student], banks[student], cfg.topk,
            cfg.teacher_temperature, cfg.student_temperature)
        for teacher, student in itertools.permutations(keys, 2)
    }


@torch.no_grad()
def xavier_children(branch: MoCoBranch) -> None:
    """CMD's ``weights_init_gru`` (``moco/builder_cmd.py`` lines 13-20): Xavier-uniform on every
    2-D parameter of the encoder's children. Its children are the GRU and the head's Linear,
    which the MLP head then keeps as its last layer; the MLP's first Linear, added afterwards,
    keeps PyTorch's default. The key copy is taken after the init, as the reference's is."""
    for name, p in branch.encoder_q.named_parameters():
        if p.dim() == 2 and name.startswith("gru."):
            nn.init.xavier_uniform_(p)
    last_linear = [m for m in branch.head_q.modules() if isinstance(m, nn.Linear)][-1]
    nn.init.xavier_uniform_(last_linear.weight)
    branch.sync_key()


CC = TypeVar("CC", bound=CMDConfig)


class CMD(MoCoMethod[CC]):
    name: ClassVar[str] = "cmd"
    Config: ClassVar[type[MethodConfig]] = CMDConfig
    input_kind: ClassVar[str] = "sequence"

    def __init__(self, cfg: CC, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        if uses_cmd_bone_tree(cfg.bone_tree, layout):
            self.bone_parents, self.torso_normal = cmd_bone_parents(layout), None
        else:
            self.bone_parents, self.torso_normal = layout.parents, layout.torso_normal
        if getattr(self.behaviour, "init", "xavier_gru") == "xavier_children":
            for m in self.modalities:
                xavier_children(self.branch(m))

    def _make_branch(self, encoder: str, encoder_args: dict[str, Any], feature_dim: int,
                     queue_size: int, momentum: float, mlp: bool) -> MoCoBranch:
        if encoder == "bigru":
            encoder_args = {**encoder_args, "pool": self.behaviour.pool,
                            "directions": self.behaviour.gru_directions}
        return super()._make_branch(encoder, encoder_args, feature_dim, queue_size, momentum,
                                    mlp)

    @classmethod
    def evaluation_view(cls, cfg: MethodConfig, window: int) -> View:
        if getattr(cfg.behaviour(), "eval_view", "resize") == "centre_crop":
            return CMDEvalView(window=window)
        return super().evaluation_view(cfg, window)

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        if modality == "motion":
            return temporal_difference(x)
        if modality == "bone":
            return bones(x, self.bone_parents, self.torso_normal)
        return x

    def loss_terms(self, out: MoCoOutputs) -> dict[str, Tensor]:
        """``scl/m``: InfoNCE per modality (I²MD Eq. 1); ``md/a->b``: the six KL terms
        (I²MD Eq. 2-5)."""
        cfg = self.cfg
        terms = {f"scl/{m}": info_nce(out.z_q[m], out.z_k[m], out.bank[m], cfg.temperature)
                 for m in self.modalities}
        terms.update(cross_modal_distillation_terms(out.z_k, out.z_q, out.bank, cfg))
        return terms

    within_log: ClassVar[str] = "scl"
    """Log name of the sum of the within-modality terms (everything but the ``md/`` terms)."""

    def objective(self, terms: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Sum of the within-modality terms + cmd_weight x sum of the KL terms: CMD's total
        (``pretrain_moco_cmd.py`` line 246), I²MD Eq. 10 with its Eq. 9 terms."""
        cfg = self.cfg
        zero = next(iter(terms.values())).new_zeros((), dtype=torch.float32)
        within = sum((t for n, t in terms.items() if not n.startswith("md/")), zero)
        distill = sum((t for n, t in terms.items() if n.startswith("md/")), zero)
        loss = within + cfg.cmd_weight * distill
        logs = {name: t.detach() for name, t in terms.items()}
        logs.update({"loss": loss.detach(), self.within_log: within.detach(),
                     "cmd": distill.detach()})
        return loss, logs

    def loss(self, encoded: MoCoOutputs, epoch: int) -> StepResult:
        return StepResult(*self.objective(self.loss_terms(encoded)))
