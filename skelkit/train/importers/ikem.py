"""The authors' CrosSCLR / IKEM / IKEM-student weights onto skelkit's modules.

The reference processors save ``model.state_dict()`` (with a ``module.`` prefix under
DataParallel) under the names of ``net/crossclr_6views.py`` (IKEM) and ``net/crossclr_3views.py``
(CrosSCLR), as in the golden ``weights/`` keys:

- ``encoder_{q,k}{sfx}.<ST-GCN>``: one ST-GCN ``Model`` per modality (sfx '', _motion, _bone,
  _acceleration, _rotation_axis, _omega); inside it ``data_bn``, ``st_gcn_networks.i`` (our
  ``blocks.i``), ``edge_importance.i``, the graph buffer ``A`` (our ``adjacency``) and the
  projection head ``fc.0`` / ``fc.2`` (our branch's ``head_{q,k}.net.0`` / ``net.2``);
- ``queue{sfx}`` (D, K) and ``queue_ptr{sfx}`` (1,): our ``queue.keys`` (K, D) and ``queue.ptr``;
- IKEM's exchange MLPs ``mlp2{j,m,b,a,r,o}``: our ``exchange.<modality>.net``;
- the student's ``encoder_student_{j,m,b}`` (its ``fc`` is the student head), the teacher queue
  ``queue_teacher`` (48, K) and the six teacher-view queues; its frozen teacher ``encoder_q{sfx}``
  is not part of a skelkit student (the teacher is the ``model.teacher`` run): see
  ``convert_student_teacher`` to build that run's weights.

Every converter checks names, shapes and the ST-GCN graph against the target method (a config
whose ``graph`` switch is not the reference's has a different adjacency and is refused) and
returns a complete ``state_dict`` for ``method.load_state_dict``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

_SUFFIX_MODALITY = {"": "joint", "_motion": "motion", "_bone": "bone",
                    "_acceleration": "acceleration", "_rotation_axis": "axis",
                    "_omega": "angular_velocity"}
_LETTER_MODALITY = {"j": "joint", "m": "motion", "b": "bone", "a": "acceleration", "r": "axis",
                    "o": "angular_velocity"}
MODALITY_SUFFIX = {m: s for s, m in _SUFFIX_MODALITY.items()}
"""Our modality name -> the reference's buffer/module suffix ('' for joint)."""
MODALITY_LETTER = {m: c for c, m in _LETTER_MODALITY.items()}
"""Our modality name -> the reference's one-letter name (j m b a r o)."""

_ENCODER = re.compile(r"encoder_([qk])(_[a-z_]+)?\.(.+)")
_STUDENT = re.compile(r"encoder_student_([jmb])\.(.+)")
_QUEUE_PTR = re.compile(r"queue_ptr(_[a-z_]+)?")
_QUEUE = re.compile(r"queue(_[a-z_]+)?")
_EXCHANGE = re.compile(r"mlp2([jmbaro])\.(.+)")


class ConversionError(ValueError):
    """The reference state does not fit the target method; the message is one line."""


def _modality(suffix: str | None, key: str) -> str:
    try:
        return _SUFFIX_MODALITY[suffix or ""]
    except KeyError:
        raise ConversionError(f"{key}: unknown modality suffix {suffix!r}") from None


def encoder_path(rest: str, key: str = "") -> str:
    """A name inside one reference ST-GCN ``Model`` (without ``fc``) -> ours."""
    if rest == "A":
        return "adjacency"
    if rest.startswith("st_gcn_networks."):
        return "blocks." + rest[len("st_gcn_networks."):]
    if rest.startswith(("data_bn.", "edge_importance.")):
        return rest
    raise ConversionError(f"{key or rest}: not an ST-GCN entry of the reference")


def _branch_side(side: str, suffix: str | None, rest: str, key: str) -> str:
    branch = f"branches.{_modality(suffix, key)}"
    if rest.startswith("fc."):
        return f"{branch}.head_{side}.net.{rest[3:]}"
    return f"{branch}.encoder_{side}.{encoder_path(rest, key)}"


def rename_moco(key: str) -> str | None:
    """A CrosSCLR / IKEM reference name -> ours (None: not one of these models' entries)."""
    if m := _ENCODER.fullmatch(key):
        return _branch_side(m[1], m[2], m[3], key)
    if m := _QUEUE_PTR.fullmatch(key):
        return f"branches.{_modality(m[1], key)}.queue.ptr"
    if m := _QUEUE.fullmatch(key):
        return f"branches.{_modality(m[1], key)}.queue.keys"
    if m := _EXCHANGE.fullmatch(key):
        return f"exchange.{_LETTER_MODALITY[m[1]]}.net.{m[2]}"
    return None


def rename_student(key: str) -> str | None:
    """An IKEM-student reference name -> ours (None: the teacher's or unknown)."""
    if m := _STUDENT.fullmatch(key):
        modality, rest = _LETTER_MODALITY[m[1]], m[2]
        if rest.startswith("fc."):
            return f"heads.{modality}.net.{rest[3:]}"
        return f"encoders.{modality}.{encoder_path(rest, key)}"
    if key == "queue_teacher":
        return "queue.keys"
    if key == "queue_ptr_teacher":
        return "queue.ptr"
    if m := _QUEUE_PTR.fullmatch(key):
        return f"teacher_queues.{_modality(m[1], key)}.ptr"
    if m := _QUEUE.fullmatch(key):
        return f"teacher_queues.{_modality(m[1], key)}.keys"
    return None


def strip_module_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop DataParallel's ``module.`` prefix where every key has it."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _adapt(key: str, value: Tensor) -> Tensor:
    """The reference's layout of a value -> ours: queues (D, K) -> (K, D), pointers (1,) -> ()."""
    if key.startswith("queue_ptr"):
        return value.reshape(())
    if key.startswith("queue"):
        return value.t().contiguous()
    return value


def _convert(reference_state: dict[str, Tensor], target: nn.Module, what: str,
             rename: Callable[[str], str | None],
             ignore: Callable[[str], bool] = lambda _key: False) -> dict[str, Tensor]:
    ours = target.state_dict()
    out: dict[str, Tensor] = {}
    for key, value in strip_module_prefix(reference_state).items():
        if ignore(key):
            continue
        name = rename(key)
        if name is None:
            raise ConversionError(f"{key}: no counterpart in a skelkit {what}")
        if name not in ours:
            raise ConversionError(f"{key} -> {name}: this {what} config has no such entry "
                                  "(other modalities, heads or encoder?)")
        value = _adapt(key, torch.as_tensor(value))
        want = ours[name]
        if tuple(value.shape) != tuple(want.shape):
            raise ConversionError(f"{key}: shape {tuple(value.shape)}, this {what} config has "
                                  f"{tuple(want.shape)} for {name}")
        if name.endswith("adjacency") and not torch.allclose(value.float(), want.float(),
                                                             atol=1e-6):
            raise ConversionError(f"{key}: the checkpoint's ST-GCN graph differs from this "
                                  "config's (the authors' graph needs fidelity: reference or "
                                  "switches.graph: reference)")
        out[name] = value.to(want.dtype).clone()
    missing = sorted(set(ours) - set(out))
    if missing:
        raise ConversionError(f"the checkpoint lacks {missing[0]} (and {len(missing) - 1} more) "
                              f"of this {what} config")
    return out


def convert_crossclr(reference_state: dict[str, Tensor], method: Any) -> dict[str, Tensor]:
    """CrosSCLR (3 views; IKEM's 3-view variant's exchange MLPs ``mlp2*`` are dropped)."""
    return _convert(reference_state, method, "crossclr", rename_moco,
                    ignore=lambda key: key.startswith("mlp2"))


def convert_ikem(reference_state: dict[str, Tensor], method: Any) -> dict[str, Tensor]:
    """IKEM's six-view model (``net/crossclr_6views.py``, teacher_student off)."""
    return _convert(reference_state, method, "ikem", rename_moco)


def _is_teacher_key(key: str) -> bool:
    return key.startswith(("encoder_q", "encoder_k", "mlp2"))


def convert_student(reference_state: dict[str, Tensor], method: Any) -> dict[str, Tensor]:
    """IKEM's student (``net/crossclr_6views.py`` with teacher_student on): students, heads and
    queues; the teacher's entries are left to the ``model.teacher`` run."""
    return _convert(reference_state, method, "ikem-student", rename_student,
                    ignore=_is_teacher_key)


def convert_student_teacher(reference_state: dict[str, Tensor], teacher: Any
                            ) -> dict[str, Tensor]:
    """The state of an IKEM teacher run from a student checkpoint: its frozen query encoders
    and heads (``encoder_q{sfx}``), copied to the key side as the reference builds its keys;
    queues and exchange MLPs keep ``teacher``'s own values (a student reads neither)."""
    state = strip_module_prefix(reference_state)
    queries = {k: v for k, v in state.items() if k.startswith("encoder_q")}
    full = {**queries, **{"encoder_k" + k[len("encoder_q"):]: v for k, v in queries.items()}}
    for m in teacher.modalities:  # the teacher's own queues and MLPs, in the reference's names
        queue, suffix = teacher.branch(m).queue, MODALITY_SUFFIX[m]
        full[f"queue{suffix}"] = queue.keys.t()
        full[f"queue_ptr{suffix}"] = queue.ptr.reshape(1)
        for name, value in teacher.exchange[m].net.state_dict().items():
            full[f"mlp2{MODALITY_LETTER[m]}.{name}"] = value
    return _convert(full, teacher, "ikem teacher", rename_moco)


CONVERTERS: dict[str, Callable[[dict[str, Tensor], Any], dict[str, Tensor]]] = {
    "crossclr": convert_crossclr,
    "ikem": convert_ikem,
    "ikem-student": convert_student,
}
"""``--from`` name -> fn(reference_state, method) -> our ``state_dict`` for ``method``."""
