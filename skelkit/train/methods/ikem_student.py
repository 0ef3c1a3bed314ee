"""IKEM's student: three streams distilled from a frozen six-modality IKEM teacher (IKEM §2.3).

Each student stream u (joint, motion, bone) is an encoder plus an MLP g~'_u into the teacher's
concatenated embedding space. The teacher run (``model.teacher``: its run directory) is loaded
from ``config.yaml`` + ``checkpoints/last.pt`` (``weights_only=True``) and kept outside the module
tree (never trained, never saved with the student); it encodes the key view, the student the
query view (the authors' code: teacher view 1, students view 2; the two views are drawn alike).
Two FIFO banks, written together: the teacher's unit concatenated embeddings z^t and, per teacher
modality, its unit embedding. L_ts (IKEM Eq. 8) sums the relational distillation L_{v->u}
(Eq. 7) over student streams u and teacher modalities v. The teacher's embedding of modality v
is its query branch's projection (the representation it was trained to produce).

With ``fidelity: reference`` one step equals the authors' code (golden ``student_step.npz``,
``net/crossclr_6views.py`` lines 765-915, ``processor/pretrain_student_6views.py`` lines 27-92);
the switches (``STUDENT_SWITCHES``) say where it departs from the paper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.store.reader import StoreError, open_store
from skelkit.store.rundir import RunDir, RunDirError
from skelkit.train.checkpoint import CheckpointError, load_checkpoint
from skelkit.train.config import ConfigError
from skelkit.train.encoders import ENCODERS, build_encoder
from skelkit.train.encoders.stgcn import (
    DROPOUT_SWITCH,
    GRAPH_SWITCH,
    check_no_switched_args,
    stgcn_switch_args,
)
from skelkit.train.fidelity import Switch, SwitchTable
from skelkit.train.heads import ProjectionHead
from skelkit.train.losses.crossview import MinedViewLoss, bank_similarities, mined_view_loss, positive_mask
from skelkit.train.losses.ikem import relational_distillation
from skelkit.train.methods.base import Method, MethodConfig, StepResult
from skelkit.train.methods.crossclr import INIT_SWITCH, normal_init_
from skelkit.train.methods.ikem import IKEM, IKEMConfig
from skelkit.train.moco import FeatureQueue
from skelkit.train.modalities import MODALITY_NAMES

DISTILL_LOSS_SWITCH = Switch(
    "distill_loss", "reference", "paper",
    "per teacher view x and student y: logits [s_y.t, s_y.Q_t, (q_x.Q_x)*(s_y.Q_t)]/T, positives "
    "[1, onehot(top-1 of q_x.Q_x), same], term = mean of -log p over the positives; per student "
    "the mean over the batch of sum_x term / 6 (net/crossclr_6views.py lines 765-915, "
    "processor/pretrain_student_6views.py lines 27-92); paper: IKEM Eq. 7 summed as Eq. 8")
HEAD_HIDDEN_SWITCH = Switch(
    "head_hidden_factor", 3, 1,
    "student heads Linear(hidden, 3*hidden)-ReLU-Linear(3*hidden, 3*hidden) "
    "(net/crossclr_6views.py lines 231-349); the output stays 6*teacher_feature_dim, which is "
    "3*hidden at the published sizes; paper: hidden width = the encoder's")
TEACHER_MODE_SWITCH = Switch(
    "teacher_mode", "train", "eval",
    "the frozen teacher runs under no_grad but in train mode, as the processor sets the whole "
    "model to train mode: BatchNorm batch statistics (running ones updated), dropout active "
    "(processor/pretrain_student_6views.py train(), golden student_step README)")
OMEGA_CONTEXT_SWITCH = Switch(
    "omega_context_queue", "bone", "own",
    "the omega teacher view is compared with the bone queue, q_o.Q_bone, for both its context "
    "columns and its mined positive (net/crossclr_6views.py line 804, a quirk the published "
    "numbers include); paper: its own queue")

STUDENT_SWITCHES = SwitchTable("ikem-student", GRAPH_SWITCH, DROPOUT_SWITCH, INIT_SWITCH,
                               DISTILL_LOSS_SWITCH, HEAD_HIDDEN_SWITCH, TEACHER_MODE_SWITCH,
                               OMEGA_CONTEXT_SWITCH)


class TeacherError(ConfigError):
    """The teacher run (``model.teacher``) cannot serve as an IKEM teacher; the message is one
    line. A ConfigError, so ``skeltrain run`` reports it and exits 2."""


@dataclasses.dataclass
class IKEMStudentConfig(MethodConfig):
    SWITCHES: ClassVar[SwitchTable | None] = STUDENT_SWITCHES
    teacher: str = ""
    """Run directory of a six-modality ``ikem`` run (``skeltrain run ikem-student --teacher``)."""
    modalities: tuple[str, ...] = ("joint", "motion", "bone")
    teacher_modalities: tuple[str, ...] = MODALITY_NAMES
    """The modalities the teacher must have trained (checked when it is loaded)."""
    teacher_feature_dim: int = 128
    """The teacher's embedding width per modality (checked when it is loaded)."""
    encoder: str = "stgcn"
    encoder_args: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"channel_multiplier": 0.25})
    queue_size: int = 32768
    temperature: float = 0.07

    def __post_init__(self) -> None:
        # Absolute, so the resolved config of the run names the teacher from anywhere.
        if self.teacher:
            self.teacher = str(Path(self.teacher).resolve())

    def validate(self) -> None:
        if not self.teacher:
            raise ValueError("teacher: the student needs a teacher run directory "
                             "(--teacher RUN_DIR, or model.teacher: RUN_DIR in the config)")
        for key in ("modalities", "teacher_modalities"):
            names = getattr(self, key)
            bad = [m for m in names if m not in MODALITY_NAMES]
            if bad or not names or len(set(names)) != len(names):
                raise ValueError(f"{key}: distinct names from {MODALITY_NAMES}, got {list(names)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: {self.encoder!r} is not one of {', '.join(ENCODERS)}")
        check_no_switched_args(self.encoder_args)
        if self.teacher_feature_dim <= 0 or self.queue_size <= 0:
            raise ValueError("teacher_feature_dim and queue_size must be positive")
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be positive, got {self.temperature}")


@dataclasses.dataclass
class StudentEncodings:
    """One batch through the frozen teacher (key side) and the student (query side), with the
    teacher queues as they were before this step's enqueue."""

    teacher_views: list[Tensor]
    """z^t_v per teacher modality, in config order."""
    teacher_concat: Tensor
    """z^t, the unit concatenation of the teacher views."""
    bank: Tensor
    view_banks: dict[str, Tensor]
    students: dict[str, Tensor]
    """s_u per student stream (with gradient)."""


@dataclasses.dataclass
class StudentStepOutputs(StepResult):
    """One student step's loss and its parts (the golden tests read them)."""

    stream_losses: dict[str, Tensor]
    """Per student stream u: its distillation loss."""
    students: dict[str, MinedViewLoss]
    """``distill_loss: reference``: per student stream its logits and terms, in the order of the
    teacher modalities."""
    masks: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    """``distill_loss: reference``: the positive mask of each teacher modality."""


def load_teacher(run_dir: str | Path, layout: Layout, num_bodies: int,
                 modalities: tuple[str, ...] = MODALITY_NAMES,
                 feature_dim: int = 128) -> IKEM:
    """The frozen IKEM of ``run_dir`` (eval mode, no gradients), checked against the student's
    expectations and the store's layout; raises :class:`TeacherError` with the reason."""
    rundir = RunDir(run_dir)
    run_dir, config_path = rundir.path, rundir.config
    if not rundir.is_run():
        raise TeacherError(f"teacher {run_dir}: not a run directory (no config.yaml)")
    try:
        tree = rundir.read_config()
    except RunDirError as exc:
        raise TeacherError(f"teacher {exc}") from None
    method = tree.get("method")
    if method != IKEM.name:
        raise TeacherError(f"teacher {run_dir}: a {method!r} run; the student needs an "
                           f"{IKEM.name!r} run with the modalities {', '.join(modalities)}")
    try:
        teacher_cfg = IKEMConfig.from_dict(tree.get("model"))
    except (TypeError, ValueError) as exc:
        raise TeacherError(f"teacher {config_path}: model: {exc}") from None
    if set(teacher_cfg.modalities) != set(modalities):
        raise TeacherError(f"teacher {run_dir} trains {', '.join(teacher_cfg.modalities)}; the "
                           f"student needs a teacher of {', '.join(modalities)}")
    if teacher_cfg.feature_dim != feature_dim:
        raise TeacherError(f"teacher {run_dir} has feature_dim {teacher_cfg.feature_dim}, the "
                           f"student config says teacher_feature_dim {feature_dim}")
    _check_teacher_layout(run_dir, tree, layout)
    try:
        ckpt = load_checkpoint(rundir.last_checkpoint)
    except CheckpointError as exc:
        raise TeacherError(f"teacher: {exc}") from None
    if ckpt.get("method") != IKEM.name:
        raise TeacherError(f"teacher {run_dir}: checkpoint of {ckpt.get('method')!r}, not ikem")
    stored_layout = (ckpt.get("extra") or {}).get("layout")
    if stored_layout is not None and stored_layout != layout.to_attrs():
        raise TeacherError(f"teacher {run_dir} was trained on layout "
                           f"{stored_layout.get('name')!r}; this store has layout {layout.name!r}")
    teacher = IKEM(teacher_cfg, layout, num_bodies)
    _check_state_matches(run_dir, teacher.state_dict(), ckpt["model"])
    unexpected = sorted(set(ckpt["model"]) - set(teacher.state_dict()))
    if unexpected:  # e.g. an IKEM run of an older skelkit (its separate concatenation queue)
        raise TeacherError(f"teacher {run_dir}: checkpoint has {unexpected[0]} (and "
                           f"{len(unexpected) - 1} more) that this IKEM does not: retrain it")
    teacher.load_state_dict(ckpt["model"])
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def _check_teacher_layout(run_dir: Path, tree: dict[str, Any], layout: Layout) -> None:
    """The teacher's store layout (when its store is still readable) must equal this one."""
    store_path = (tree.get("data") or {}).get("store")
    if not store_path or not Path(store_path).exists():
        return  # the state-dict check below still compares the layout-derived graph
    try:
        teacher_layout = open_store(store_path).layout
    except StoreError:
        return
    if teacher_layout.to_attrs() != layout.to_attrs():
        raise TeacherError(f"teacher {run_dir} was trained on layout {teacher_layout.name!r} "
                           f"({teacher_layout.num_joints} joints) of {store_path}; this store "
                           f"has layout {layout.name!r} ({layout.num_joints} joints)")


def _check_state_matches(run_dir: Path, expected: dict[str, Tensor],
                         stored: dict[str, Tensor]) -> None:
    """Same parameter names and shapes, and the same layout-derived (non-trainable) graphs."""
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise TeacherError(f"teacher {run_dir}: checkpoint lacks {missing[0]} "
                           f"(and {len(missing) - 1} more): not this IKEM architecture")
    for key, value in expected.items():
        if tuple(stored[key].shape) != tuple(value.shape):
            raise TeacherError(f"teacher {run_dir}: {key} has shape {tuple(stored[key].shape)}, "
                               f"this store's layout needs {tuple(value.shape)} (different "
                               "layout or body count)")
        if key.endswith("adjacency") and not torch.equal(stored[key].float(), value.float()):
            raise TeacherError(f"teacher {run_dir}: its skeleton graph ({key}) differs from this "
                               "store's layout")


class IKEMStudent(Method[IKEMStudentConfig]):
    name: ClassVar[str] = "ikem-student"
    Config: ClassVar[type[MethodConfig]] = IKEMStudentConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: IKEMStudentConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.modalities = tuple(cfg.modalities)
        n_teacher, width = len(cfg.teacher_modalities), cfg.teacher_feature_dim
        encoder_args = {**cfg.encoder_args, **stgcn_switch_args(cfg.encoder, self.behaviour)}
        self.encoders = nn.ModuleDict({
            m: build_encoder(cfg.encoder, 3, layout, num_bodies, **encoder_args)
            for m in self.modalities})
        factor = self.behaviour.head_hidden_factor
        self.heads = nn.ModuleDict({  # g~'_u into the teacher's concatenated space
            m: ProjectionHead(self.encoders[m].out_dim, n_teacher * width, mlp=True,
                              hidden_dim=self.encoders[m].out_dim * factor)
            for m in self.modalities})
        if self.behaviour.init == "normal":
            normal_init_(self.encoders)
            normal_init_(self.heads)
        # The teacher's unit concatenations z^t (IKEM Eq. 7's M) and, row for row, its unit
        # embeddings per modality (M^v): written together, so row i holds one sample everywhere.
        self.queue = FeatureQueue(cfg.queue_size, n_teacher * width)
        self.teacher_queues = nn.ModuleDict({
            v: FeatureQueue(cfg.queue_size, width) for v in cfg.teacher_modalities})
        # A tuple keeps the teacher out of the module tree: not in state_dict, not in
        # parameters(), not switched to train mode by the engine.
        self._teacher: tuple[IKEM, ...]
        # Checked and loaded now, so a wrong --teacher fails before anything is written (a
        # student run therefore needs its teacher run also to embed).
        if not Path(cfg.teacher).is_dir():
            raise TeacherError(f"teacher {cfg.teacher}: no such run directory")
        self._teacher = (load_teacher(cfg.teacher, layout, num_bodies,
                                      tuple(cfg.teacher_modalities), cfg.teacher_feature_dim),)

    @property
    def teacher(self) -> IKEM:
        """The frozen teacher."""
        return self._teacher[0]

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality)
        return self.encoders[modality]

    def student_embedding(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        """s_u = unit(g~'_u(f_u)) of student stream ``modality`` from joints."""
        hidden = self.encoders[modality](self.derive_input(x, gamma, modality))
        return F.normalize(self.heads[modality](hidden), dim=1)

    @torch.no_grad()
    def teacher_views(self, x: Tensor, gamma: Tensor) -> list[Tensor]:
        """The teacher's unit embeddings z^t_v of every teacher modality, in config order, each
        from the teacher's own derivation of its input. ``teacher_mode: train`` runs it in the
        student's mode (the authors' processor sets the whole model to train mode: batch
        statistics, running statistics updated, dropout active), else in eval mode."""
        teacher = self.teacher
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        teacher.train(self.training and self.behaviour.teacher_mode == "train")
        return [teacher.branch(v).query(teacher.derive_input(x, gamma, v))[0].float()
                for v in self.cfg.teacher_modalities]

    def context_queue_of(self, modality: str) -> str:
        """The teacher queue whose similarities weight (and mine for) teacher ``modality``."""
        teacher_modalities = self.cfg.teacher_modalities
        if (modality == "angular_velocity" and self.behaviour.omega_context_queue == "bone"
                and "bone" in teacher_modalities):
            return "bone"
        return modality

    def encode(self, q: Tensor, k: Tensor, gamma: Tensor, epoch: int = 0) -> StudentEncodings:
        """The teacher's views of ``k`` and their unit concatenation, the queue snapshots, then
        the student streams of ``q``."""
        views = self.teacher_views(k, gamma)
        return StudentEncodings(
            teacher_views=views,
            teacher_concat=F.normalize(torch.cat(views, dim=1), dim=1),  # z^t
            bank=self.queue.keys.clone(),
            view_banks={v: self.teacher_queues[v].keys.clone() for v in self.cfg.teacher_modalities},
            students={u: self.student_embedding(q, gamma, u) for u in self.modalities})

    def loss(self, encoded: StudentEncodings, epoch: int) -> StudentStepOutputs:
        """Per student stream: the authors' mined form (``distill_loss: reference``) or IKEM
        Eq. 7 summed over the teacher modalities as Eq. 8; the total sums the streams."""
        cfg, enc = self.cfg, encoded
        teacher_names = tuple(cfg.teacher_modalities)
        out = StudentStepOutputs(enc.teacher_concat.new_zeros(()), {}, {}, {})
        miners: list[tuple[Tensor, Tensor]] = []  # (q_x . Q_x, positive mask of x)
        if self.behaviour.distill_loss == "reference":
            for v, view in zip(teacher_names, enc.teacher_views, strict=True):
                sims_v = bank_similarities(view, enc.view_banks[self.context_queue_of(v)])
                out.masks[v] = positive_mask(sims_v, 1)
                miners.append((sims_v, out.masks[v]))
        for u, student in enc.students.items():
            if self.behaviour.distill_loss == "reference":
                positive = (student.float() * enc.teacher_concat).sum(dim=1)
                out.students[u] = mined_view_loss(positive, bank_similarities(student, enc.bank),
                                                  miners, cfg.temperature)
                stream = out.students[u].loss
            else:
                stream = out.loss.new_zeros(())
                for v, view in zip(teacher_names, enc.teacher_views, strict=True):
                    stream = stream + relational_distillation(  # IKEM Eq. 7, summed as Eq. 8
                        student, enc.teacher_concat, enc.bank, view,
                        enc.view_banks[self.context_queue_of(v)], cfg.temperature)
            out.stream_losses[u] = stream
            out.loss = out.loss + stream
            out.logs[f"ts/{u}"] = stream.detach()
        out.logs["loss"] = out.loss.detach()
        return out

    def enqueue(self, encoded: StudentEncodings) -> None:
        self.queue.enqueue(encoded.teacher_concat)
        for v, view in zip(self.cfg.teacher_modalities, encoded.teacher_views, strict=True):
            self.teacher_queues[v].enqueue(view)
