"""The method interface the engine drives, the MoCo base every contrastive method builds on, and
the validated ``model:`` config bases.

A method owns its encoders, heads and memory banks; the engine only calls ``training_step``
(or ``forward``, which is the same, so DDP's gradient hooks fire), ``embed`` and ``encoder``.
The order of one step is written once, in :meth:`Method.step`: the two views, ``encode`` (the
queries; then, without gradient, the momentum update, the keys and the bank snapshots),
``loss``, ``enqueue``. A MoCo-based method (:class:`MoCoMethod`) only writes its ``loss``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np
import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.augment import resize_linear
from skelkit.train.config import coerce
from skelkit.train.encoders import ENCODERS, build_encoder
from skelkit.train.fidelity import FIDELITIES, SwitchTable
from skelkit.train.moco import MoCoBranch
from skelkit.train.modalities import derive


@dataclasses.dataclass
class MethodConfig:
    """Base for each method's ``Config``: ``from_dict`` rejects unknown keys and wrong types,
    then ``validate`` checks values; messages are one line naming the key.

    ``fidelity`` picks the preset of the method's ``SWITCHES`` (see ``skelkit.train.fidelity``);
    ``switches`` overrides single switches by name."""

    SWITCHES: ClassVar[SwitchTable | None] = None
    fidelity: str = "paper"
    switches: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> MethodConfig:
        d = cls.upgrade(dict(d or {}))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        hints = typing.get_type_hints(cls)
        try:
            values = {k: coerce(k, v, hints[k]) for k, v in d.items()}
        except ValueError as err:  # a plain ValueError: the caller names the section (model:)
            raise ValueError(str(err)) from None
        defaults = cls()
        same_encoder = getattr(defaults, "encoder", None) == values.get("encoder", None) or (
            "encoder" not in values)
        if "encoder_args" in values and hasattr(defaults, "encoder_args") and same_encoder:
            # A partial override (``--set model.encoder_args.hidden_size=64``) keeps the other
            # published defaults of the same encoder; another encoder starts from its own.
            values["encoder_args"] = {**defaults.encoder_args, **values["encoder_args"]}
        cfg = cls(**values)
        if cfg.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity: one of {', '.join(FIDELITIES)}, got {cfg.fidelity!r}")
        cfg.behaviour()  # unknown switch names fail here, at config time
        cfg.validate()
        return cfg

    @classmethod
    def upgrade(cls, d: dict[str, Any]) -> dict[str, Any]:
        """Rewrite keys of older configs (a run directory's config.yaml) into today's form."""
        return d

    def behaviour(self) -> types.SimpleNamespace:
        """The resolved switch values (attributes named after the switches)."""
        if self.SWITCHES is None:
            if self.switches:
                raise ValueError(f"switches: this method has none, got {', '.join(self.switches)}")
            return types.SimpleNamespace()
        return self.SWITCHES.resolve(self.fidelity, self.switches)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:
        """Value checks beyond types; raise ValueError naming the key."""

    def trained_modalities(self) -> tuple[str, ...]:
        """The modalities the method trains (its ``modalities`` setting)."""
        return tuple(getattr(self, "modalities", ("joint",)))


@dataclasses.dataclass
class MoCoConfig(MethodConfig):
    """The settings every MoCo-based method shares (MoCo v2: He et al. 2020): the encoder and its
    arguments, the projection width, the bank size, the key momentum, the InfoNCE temperature and
    the MLP head. A method's config subclasses it and may change the defaults."""

    encoder: str = "stgcn"
    encoder_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    feature_dim: int = 128
    queue_size: int = 16384
    momentum: float = 0.999
    temperature: float = 0.07
    mlp: bool = True

    def validate(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder: {self.encoder!r} is not one of {', '.join(ENCODERS)}")
        if self.feature_dim <= 0 or self.queue_size <= 0:
            raise ValueError("feature_dim and queue_size must be positive")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum: must lie in [0, 1], got {self.momentum}")
        if self.temperature <= 0:
            raise ValueError(f"temperature: must be positive, got {self.temperature}")


@dataclasses.dataclass
class MoCoOutputs:
    """One MoCo step, per modality: the query embedding z_q (with gradient) and pooled hidden
    h_q; the key embedding z_k and hidden h_k (no gradient); the bank as it was before this
    step's enqueue (a copy: the enqueue writes in place into a tensor autograd may have saved)."""

    z_q: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    h_q: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    z_k: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    h_k: dict[str, Tensor] = dataclasses.field(default_factory=dict)
    bank: dict[str, Tensor] = dataclasses.field(default_factory=dict)


Encode = Callable[[str, MoCoBranch, Tensor], tuple[Tensor, Tensor]]
"""(modality, branch, derived input) -> (L2-normalised embedding, pooled hidden)."""
View = Callable[[np.ndarray], np.ndarray]
"""One un-augmented sample (3, T, V, M) -> the encoder's evaluation input."""


def _query(modality: str, branch: MoCoBranch, x: Tensor) -> tuple[Tensor, Tensor]:
    return branch.query(x)


def _key(modality: str, branch: MoCoBranch, x: Tensor) -> tuple[Tensor, Tensor]:
    return branch.key(x)


def stored_frames(x: np.ndarray) -> np.ndarray:
    """The evaluation view of fixed-length methods: the store's frames as they are."""
    return x


LogValue = Tensor | float
"""A log term: a detached 0-d tensor left on the device (the engine reads them back once per log
interval, not per step: each read is a host synchronisation), or a host constant (a stage)."""


@dataclasses.dataclass
class StepResult:
    """What one training step returns to the engine: the loss to backpropagate and scalar logs.
    Methods extend it with the parts their golden tests read."""

    loss: Tensor
    logs: dict[str, LogValue]


C = TypeVar("C", bound=MethodConfig)
MC = TypeVar("MC", bound=MoCoConfig)


class Method(nn.Module, Generic[C]):
    """A self-supervised method: see the class attributes and the three engine-facing calls."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]]
    input_kind: ClassVar[str]
    """``sequence``: CMD-style views cropped/resized from raw joints; ``fixed``: 50-frame joints."""
    unit_axis: bool = True
    """The hinge axis fed to an ``axis`` encoder is the unit one (IKEM's reference: raw)."""
    modalities: tuple[str, ...]
    cfg: C

    def __init__(self, cfg: C, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__()
        self.cfg, self.layout, self.num_bodies = cfg, layout, num_bodies
        self.behaviour = cfg.behaviour()

    # --- engine-facing -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], epoch: int
                      ) -> tuple[Tensor, dict[str, LogValue]]:
        """batch["q"], batch["k"]: two augmented joint views (N, 3, T, V, M); batch["gamma"] (N,).
        Returns the loss to backpropagate and scalar logs; momentum update and enqueue inside."""
        out = self.step(batch, epoch)
        return out.loss, out.logs

    def forward(self, batch: dict[str, Tensor], epoch: int = 0
                ) -> tuple[Tensor, dict[str, LogValue]]:
        return self.training_step(batch, epoch)

    def step(self, batch: dict[str, Tensor], epoch: int) -> StepResult:
        """One training step with its parts, in the order of every reference (CMD
        ``moco/builder_cmd.py`` lines 150-190, IKEM ``net/crossclr_6views.py``): encode both views
        (the bank snapshots taken before this step writes), the loss, then the enqueue."""
        q, k, gamma = batch_views(batch)
        encoded = self.encode(q, k, gamma, epoch)
        out = self.loss(encoded, epoch)
        self.enqueue(encoded)
        return out

    def encode(self, q: Tensor, k: Tensor, gamma: Tensor, epoch: int = 0) -> Any:
        """Everything the loss needs from the two views, banks read but not written."""
        raise NotImplementedError

    def loss(self, encoded: Any, epoch: int) -> StepResult:
        raise NotImplementedError

    def enqueue(self, encoded: Any) -> None:
        """Write this step's keys into the banks (after the loss read them)."""
        raise NotImplementedError

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        """The encoder input of ``modality`` from joints (N, 3, T, V, M) by the torch twins of the
        store's modality formulas (``skelkit.train.modalities``); a method with its own rules
        (CMD's bone tree and untimed motion) overrides it. Fine-tuning applies it before
        ``encoder(modality)``."""
        self._check_modality(modality)
        return derive(x, modality, gamma, self.layout, unit_axis=self.unit_axis)

    def encoder(self, modality: str) -> nn.Module:
        """The query encoder of ``modality`` (with ``.out_dim``), e.g. for fine-tuning."""
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, x: Tensor, gamma: Tensor, modality: str) -> Tensor:
        """Un-augmented joints (N, 3, T, V, M) -> (N, D) pooled hidden features of the query
        encoder of ``modality`` (not the projection head). The caller sets eval mode."""
        return self.encoder(modality)(self.derive_input(x, gamma, modality))

    @classmethod
    def evaluation_view(cls, cfg: MethodConfig, window: int) -> View:
        """The un-augmented input ``embed``, the KNN monitor and fine-tuning feed the encoder,
        as a picklable function of one sample (3, T, V, M) (data workers call it): the whole
        valid sequence resized to ``window`` frames for sequence methods, the stored frames for
        fixed-length ones. A method whose reference evaluates another view overrides this."""
        if cls.input_kind == "sequence":
            return functools.partial(resize_linear, length=window)
        return stored_frames

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"{self.name} trains {', '.join(self.modalities)}; "
                             f"no {modality!r} encoder")


class MoCoMethod(Method[MC]):
    """One MoCo branch (query/key encoder, head, bank) per modality; owns the MoCo step (MoCo
    v2: He et al. 2020, Algorithm 1). A subclass builds its branches and writes ``loss``."""

    def __init__(self, cfg: MC, layout: Layout, num_bodies: int = 2,
                 encoder_args: dict[str, Any] | None = None) -> None:
        super().__init__(cfg, layout, num_bodies)
        self.modalities = cfg.trained_modalities()
        args = cfg.encoder_args if encoder_args is None else encoder_args
        self.branches = nn.ModuleDict({m: self._make_branch(
            cfg.encoder, args, cfg.feature_dim, cfg.queue_size, cfg.momentum, cfg.mlp)
            for m in self.modalities})

    def branch(self, modality: str) -> MoCoBranch:
        self._check_modality(modality)
        return cast(MoCoBranch, self.branches[modality])

    def encoder(self, modality: str) -> nn.Module:
        return self.branch(modality).encoder_q

    def frozen_keys(self, epoch: int) -> tuple[str, ...]:
        """Modalities whose key encoder skips the momentum update at ``epoch`` (none here)."""
        return ()

    def encode(self, q: Tensor, k: Tensor, gamma: Tensor, epoch: int = 0) -> MoCoOutputs:
        return self.moco_encode(q, k, gamma, frozen_keys=self.frozen_keys(epoch))

    def enqueue(self, encoded: MoCoOutputs) -> None:
        self.moco_enqueue(encoded)

    def moco_encode(self, q: Tensor, k: Tensor, gamma: Tensor | None, *,
                    frozen_keys: Iterable[str] = (), encode_query: Encode = _query,
                    encode_key: Encode = _key) -> MoCoOutputs:
        """The queries of every modality, then, without gradient, per modality: the momentum
        update of its key branch (skipped for ``frozen_keys``), its key, and a copy of its bank.

        The key encoder is updated before it encodes, its BatchNorm runs in train mode on the key
        view's batch (no shuffled BatchNorm), and the bank read by the losses is the one before
        this step's enqueue (``moco_enqueue``)."""
        frozen = set(frozen_keys)
        out = MoCoOutputs()
        for m in self.modalities:
            out.z_q[m], out.h_q[m] = encode_query(m, self.branch(m), self.derive_input(q, gamma, m))
        with torch.no_grad():
            for m in self.modalities:
                branch = self.branch(m)
                if m not in frozen:
                    branch.momentum_update()
                out.z_k[m], out.h_k[m] = encode_key(m, branch, self.derive_input(k, gamma, m))
                out.bank[m] = branch.queue.keys.clone()
        return out

    @torch.no_grad()
    def moco_enqueue(self, out: MoCoOutputs) -> None:
        """Write every modality's keys (with their hidden features, for a queue that keeps
        values) over the oldest bank entries; pointer <- (pointer + N) mod K."""
        for m, z_k in out.z_k.items():
            queue = self.branch(m).queue
            queue.enqueue(z_k, out.h_k[m] if queue.value_dim else None)

    def _make_branch(self, encoder: str, encoder_args: dict[str, Any], feature_dim: int,
                     queue_size: int, momentum: float, mlp: bool) -> MoCoBranch:
        enc = build_encoder(encoder, 3, self.layout, self.num_bodies, **encoder_args)
        return MoCoBranch(enc, feature_dim, queue_size, momentum, mlp)


def batch_views(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """(q, k, gamma) of a training batch, with a clear error when a key is missing."""
    missing = [k for k in ("q", "k", "gamma") if k not in batch]
    if missing:
        raise KeyError(f"training batch lacks {', '.join(missing)}; has {', '.join(batch)}")
    q, k, gamma = batch["q"], batch["k"], batch["gamma"]
    if q.shape != k.shape or q.ndim != 5:
        raise ValueError(f"views must be two equal (N, 3, T, V, M) tensors, got "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")
    return q, k, gamma
