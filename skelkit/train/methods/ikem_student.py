"""IKEM's student: three streams distilled from a frozen six-modality IKEM teacher (IKEM §2.3).

Each student stream u (joint, motion, bone) is an encoder plus an MLP g~'_u into the teacher's
concatenated embedding space. The teacher run (``model.teacher``: its run directory) is loaded
from ``config.yaml`` + ``checkpoints/last.pt`` (``weights_only=True``), kept in eval mode outside
the module tree (never trained, never saved with the student, never switched to train mode) and
encodes the key view; the student encodes the query view. A FIFO bank holds the teacher's unit
concatenated embeddings; L_ts (IKEM Eq. 8) sums the relational distillation L_{v->u} (Eq. 7) over
student streams u and teacher modalities v. The teacher's embedding of modality v is its query
branch's projection (the representation it was trained to produce; no momentum update runs).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.checkpoint import CheckpointError, load_checkpoint
from skelkit.train.config import ConfigError
from skelkit.train.encoders import ENCODERS, build_encoder
from skelkit.train.heads import ProjectionHead
from skelkit.train.losses_crossview import relational_distillation
from skelkit.train.methods.base import Method, MethodConfig, batch_views
from skelkit.train.methods.ikem import IKEM, IKEMConfig
from skelkit.train.moco import FeatureQueue
from skelkit.train.modalities import MODALITY_NAMES, derive


class TeacherError(ConfigError):
    """The teacher run (``model.teacher``) cannot serve as an IKEM teacher; the message is one
    line. A ConfigError, so ``skeltrain run`` reports it and exits 2."""


@dataclasses.dataclass
class IKEMStudentConfig(MethodConfig):
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

    def validate(self) -> None:
        if not self.teacher:
            raise ValueError("teacher: the student needs a teacher run directory "
                             "(model.teacher: RUN_DIR, or --set model.teacher=RUN_DIR)")
        for key in ("modalities", "teacher_modalities"):
            names = getattr(self, key)
            bad = [m for m in names if m not in MODALITY_NAMES]
            if bad or not names or len(set(names)) != len(names):
                raise ValueError(f"{key}: distinct names from {MODALITY_NAMES}, got {list(names)}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: {self.encoder!r} is not one of {', '.join(ENCODERS)}")
        if self.teacher_feature_dim <= 0 or self.queue_size <= 0:
            raise ValueError("teacher_feature_dim and queue_size must be positive")
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be positive, got {self.temperature}")


def load_teacher(run_dir: str | Path, layout: Layout, num_bodies: int,
                 modalities: tuple[str, ...] = MODALITY_NAMES,
                 feature_dim: int = 128) -> IKEM:
    """The frozen IKEM of ``run_dir`` (eval mode, no gradients), checked against the student's
    expectations and the store's layout; raises :class:`TeacherError` with the reason."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise TeacherError(f"teacher {run_dir}: not a run directory (no config.yaml)")
    try:
        tree = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as exc:
        raise TeacherError(f"teacher {config_path}: invalid YAML ({exc})") from None
    method = tree.get("method") if isinstance(tree, dict) else None
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
        ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
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
    teacher.load_state_dict(ckpt["model"])
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def _check_teacher_layout(run_dir: Path, tree: dict[str, Any], layout: Layout) -> None:
    """The teacher's store layout (when its store is still readable) must equal this one."""
    store_path = (tree.get("data") or {}).get("store")
    if not store_path or not Path(store_path).exists():
        return  # the state-dict check below still compares the layout-derived graph
    from skelkit.store.reader import StoreError, open_store

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


class IKEMStudent(Method):
    name: ClassVar[str] = "ikem-student"
    Config: ClassVar[type[MethodConfig]] = IKEMStudentConfig
    input_kind: ClassVar[str] = "fixed"

    def __init__(self, cfg: IKEMStudentConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.modalities = tuple(cfg.modalities)
        n_teacher, width = len(cfg.teacher_modalities), cfg.teacher_feature_dim
        self.encoders = nn.ModuleDict({
            m: build_encoder(cfg.encoder, 3, layout, num_bodies, **cfg.encoder_args)
            for m in self.modalities})
        self.heads = nn.ModuleDict({  # g~'_u into the teacher's concatenated space
            m: ProjectionHead(self.encoders[m].out_dim, n_teacher * width, mlp=True)
            for m in self.modalities})
        self.queue = FeatureQueue(cfg.queue_size, n_teacher * width)
        with torch.no_grad():  # unit slices, as every later entry has
            parts = self.queue.keys.view(cfg.queue_size, n_teacher, width)
            parts.copy_(F.normalize(parts, dim=2) / math.sqrt(n_teacher))
        # A tuple keeps the teacher out of the module tree: not in state_dict, not in
        # parameters(), not switched to train mode by the engine.
        self._teacher: tuple[IKEM, ...]
        # Checked and loaded now, so a wrong --teacher fails before anything is written (a
        # student run therefore needs its teacher run also to embed).
        if not Path(cfg.teacher).is_dir():
            raise TeacherError(f"teacher {cfg.teacher}: no such run directory")
        # Absolute, so the resolved config of the run names the teacher from anywhere.
        cfg.teacher = str(Path(cfg.teacher).resolve())
        self._teacher = (load_teacher(cfg.teacher, layout, num_bodies,
                                      tuple(cfg.teacher_modalities), cfg.teacher_feature_dim),)

    @property
    def teacher(self) -> IKEM:
        """The frozen teacher."""
        return self._teacher[0]

    def encoder(self, modality: str) -> nn.Module:
        self._check_modality(modality)
        return self.encoders[modality]

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        self._check_modality(modality)
        return derive(x, modality, gamma, self.layout)

    @torch.no_grad()
    def teacher_views(self, x: Tensor, gamma: Tensor) -> list[Tensor]:
        """The teacher's unit embeddings z^t_v of every teacher modality, in config order."""
        teacher = self.teacher
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        teacher.eval()
        return [teacher.branch(v).query(derive(x, v, gamma, self.layout))[0].float()
                for v in self.cfg.teacher_modalities]

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        cfg: IKEMStudentConfig = self.cfg  # type: ignore[assignment]
        q, k, gamma = batch_views(batch)
        views = self.teacher_views(k, gamma)
        n_teacher, width = len(views), cfg.teacher_feature_dim
        teacher_concat = torch.cat(views, dim=1) / math.sqrt(n_teacher)  # z^t
        bank = self.queue.keys.clone()
        bank_views = [bank[:, i * width:(i + 1) * width] * math.sqrt(n_teacher)
                      for i in range(n_teacher)]
        loss = teacher_concat.new_zeros(())
        logs: dict[str, float] = {}
        for u in self.modalities:
            student = F.normalize(self.heads[u](self.encoders[u](self.derive_input(q, gamma, u))),
                                  dim=1)
            stream = loss.new_zeros(())
            for view, view_bank in zip(views, bank_views, strict=True):
                stream = stream + relational_distillation(  # IKEM Eq. 7, summed as Eq. 8
                    student, teacher_concat, bank, view, view_bank, cfg.temperature)
            loss = loss + stream
            logs[f"ts/{u}"] = float(stream.detach())
        self.queue.enqueue(teacher_concat)
        logs["loss"] = float(loss.detach())
        return loss, logs
