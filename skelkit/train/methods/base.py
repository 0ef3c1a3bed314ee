"""The method interface the engine drives, and the validated ``model:`` config base.

A method owns its encoders, heads and memory banks; the engine only calls ``training_step``
(or ``forward``, which is the same, so DDP's gradient hooks fire), ``embed`` and ``encoder``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from skelkit.store.layout import Layout
from skelkit.train.encoders import ENCODERS, build_encoder
from skelkit.train.fidelity import FIDELITIES, SwitchTable
from skelkit.train.moco import MoCoBranch


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
        values = {k: _coerce(k, v, hints[k]) for k, v in d.items()}
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


def check_moco_settings(cfg: Any) -> None:
    """Checks shared by every MoCo-based config: encoder name, sizes, momentum, temperature."""
    if cfg.encoder not in ENCODERS:
        raise ValueError(f"encoder: {cfg.encoder!r} is not one of {', '.join(ENCODERS)}")
    if cfg.feature_dim <= 0 or cfg.queue_size <= 0:
        raise ValueError("feature_dim and queue_size must be positive")
    if not 0.0 <= cfg.momentum <= 1.0:
        raise ValueError(f"momentum: must lie in [0, 1], got {cfg.momentum}")
    if cfg.temperature <= 0:
        raise ValueError(f"temperature: must be positive, got {cfg.temperature}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected true/false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        return tuple(_coerce(key, v, typing.get_args(hint)[0]) for v in value)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        return value
    return value


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


class Method(nn.Module):
    """A self-supervised method: see the class attributes and the three engine-facing calls."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]]
    input_kind: ClassVar[str]
    """``sequence``: CMD-style views cropped/resized from raw joints; ``fixed``: 50-frame joints."""
    modalities: tuple[str, ...]

    def __init__(self, cfg: MethodConfig, layout: Layout, num_bodies: int = 2) -> None:
        super().__init__()
        self.cfg, self.layout, self.num_bodies = cfg, layout, num_bodies
        self.behaviour = cfg.behaviour()

    # --- engine-facing -----------------------------------------------------------------------

    def training_step(self, batch: dict[str, Tensor], epoch: int) -> tuple[Tensor, dict[str, float]]:
        """batch["q"], batch["k"]: two augmented joint views (N, 3, T, V, M); batch["gamma"] (N,).
        Returns the loss to backpropagate and scalar logs; momentum update and enqueue inside."""
        raise NotImplementedError

    def forward(self, batch: dict[str, Tensor], epoch: int = 0) -> tuple[Tensor, dict[str, float]]:
        return self.training_step(batch, epoch)

    def derive_input(self, x: Tensor, gamma: Tensor | None, modality: str) -> Tensor:
        """The encoder input of ``modality`` from joints (N, 3, T, V, M); the method's own rules
        (bone tree, time scale). Fine-tuning applies it before ``encoder(modality)``."""
        raise NotImplementedError

    def branch(self, modality: str) -> MoCoBranch:
        self._check_modality(modality)
        return self.branches[modality]  # type: ignore[return-value]

    def encoder(self, modality: str) -> nn.Module:
        """The query encoder of ``modality`` (with ``.out_dim``), e.g. for fine-tuning."""
        return self.branch(modality).encoder_q

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
            from skelkit.train.augment import resize_linear

            return functools.partial(resize_linear, length=window)
        return stored_frames

    # --- the MoCo step (MoCo v2: He et al. 2020, Algorithm 1) ------------------------------------

    def moco_encode(self, q: Tensor, k: Tensor, gamma: Tensor | None, *,
                    modalities: Iterable[str] | None = None, frozen_keys: Iterable[str] = (),
                    encode_query: Encode = _query, encode_key: Encode = _key) -> MoCoOutputs:
        """The queries of every modality, then, without gradient, per modality: the momentum
        update of its key branch (skipped for ``frozen_keys``), its key, and a copy of its bank.

        This is the order of every reference (CMD ``moco/builder_cmd.py`` lines 150-190, IKEM
        ``net/crossclr_6views.py``): the key encoder is updated before it encodes, its BatchNorm
        runs in train mode on the key view's batch (no shuffled BatchNorm), and the bank read by
        the losses is the one before this step's enqueue (``moco_enqueue``)."""
        mods = tuple(self.modalities if modalities is None else modalities)
        frozen = set(frozen_keys)
        out = MoCoOutputs()
        for m in mods:
            out.z_q[m], out.h_q[m] = encode_query(m, self.branch(m), self.derive_input(q, gamma, m))
        with torch.no_grad():
            for m in mods:
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

    # --- shared helpers ----------------------------------------------------------------------

    def _check_modality(self, modality: str) -> None:
        if modality not in self.modalities:
            raise ValueError(f"{self.name} trains {', '.join(self.modalities)}; "
                             f"no {modality!r} encoder")

    def _build_branches(self, modalities: tuple[str, ...]) -> None:
        """One MoCo branch (query/key encoder, head, queue) per modality, from the config."""
        cfg: Any = self.cfg
        self.modalities = tuple(modalities)
        self.branches = nn.ModuleDict({m: self._make_branch(
            cfg.encoder, cfg.encoder_args, cfg.feature_dim, cfg.queue_size, cfg.momentum, cfg.mlp)
            for m in self.modalities})

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
