"""CMD's released pre-training checkpoints (maoyunyao/CMD ``pretrain_moco_cmd.py``) as skelkit state.

The reference saves its DDP-wrapped MoCo (``moco/builder_cmd.py``): names ``module.encoder_q``,
``module.encoder_k`` (joint), ``..._motion``, ``..._bone``, each a BIGRU (``moco/GRU.py``) with
``encoder.gru.*`` (an ``nn.GRU``, bidirectional layout), ``input_norm.*`` and the head ``fc.*``
(``fc.0``/``fc.2`` with ``--mlp``); the queues ``queue{sfx}`` stored (D, K), one key per column,
and their pointers ``queue_ptr{sfx}`` of shape (1,).

skelkit keeps the same tensors under ``branches.<modality>.{encoder,head}_{q,k}`` with the queue
as (K, D) rows and a 0-d pointer. Nothing else changes: the GRU's parameter layout is the same
(``skelkit.train.encoders.bigru``), so the mapping is a renaming plus the queue transpose.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

REFERENCE_SUFFIX = {"joint": "", "motion": "_motion", "bone": "_bone"}
_MODALITY_OF_SUFFIX = {sfx: m for m, sfx in REFERENCE_SUFFIX.items()}
_ENCODER = re.compile(r"^encoder_(?P<side>[qk])(?P<sfx>_motion|_bone)?\.(?P<rest>.+)$")
_QUEUE = re.compile(r"^queue(?P<sfx>_motion|_bone)?$")
_POINTER = re.compile(r"^queue_ptr(?P<sfx>_motion|_bone)?$")


class ReferenceFormatError(ValueError):
    """A reference state dict that does not have the expected names or shapes (one line)."""


def strip_module_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop DDP's ``module.`` prefix (the released checkpoints carry it; the goldens do not)."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def our_encoder_name(rest: str, side: str) -> str | None:
    """``encoder.gru.weight_ih_l0`` / ``input_norm.weight`` / ``fc.0.weight`` of one reference
    BIGRU -> the name inside our MoCo branch (``encoder_q.gru.weight_ih_l0``, ``head_q.net.0.weight``)."""
    if rest.startswith("encoder.gru."):
        return f"encoder_{side}.gru.{rest[len('encoder.gru.'):]}"
    if rest.startswith("input_norm."):
        return f"encoder_{side}.{rest}"
    if rest.startswith("fc."):
        return f"head_{side}.net.{rest[len('fc.'):]}"
    return None


def convert_cmd(reference_state: dict[str, Tensor], method: Any) -> dict[str, Tensor]:
    """CMD's MoCo state dict (with or without ``module.``) -> ``method.state_dict()`` names."""
    out: dict[str, Tensor] = {}
    unknown: list[str] = []
    for name, value in strip_module_prefix(reference_state).items():
        if m := _ENCODER.match(name):
            modality = _MODALITY_OF_SUFFIX[m["sfx"] or ""]
            inner = our_encoder_name(m["rest"], m["side"])
            if inner is None:
                unknown.append(name)
                continue
            out[f"branches.{modality}.{inner}"] = value
        elif m := _QUEUE.match(name):
            if value.ndim != 2:
                raise ReferenceFormatError(f"{name}: expected a (D, K) queue, got shape "
                                           f"{tuple(value.shape)}")
            out[f"branches.{_MODALITY_OF_SUFFIX[m['sfx'] or '']}.queue.keys"] = (
                value.t().contiguous())
        elif m := _POINTER.match(name):
            out[f"branches.{_MODALITY_OF_SUFFIX[m['sfx'] or '']}.queue.ptr"] = (
                value.reshape(()).to(torch.long))
        else:
            unknown.append(name)
    if unknown:
        raise ReferenceFormatError(f"not a CMD MoCo state dict: unknown entries "
                                   f"{', '.join(sorted(unknown)[:5])}"
                                   f"{' ...' if len(unknown) > 5 else ''}")
    return out


def cmd_settings(reference_state: dict[str, Tensor]) -> dict[str, Any]:
    """The model settings the checkpoint's shapes fix (``model.<key>`` values): GRU width and
    depth, embedding size, MLP head, queue size and the modalities present."""
    state = strip_module_prefix(reference_state)
    layers = sorted({int(m[1]) for k in state
                     if (m := re.match(r"^encoder_q\.encoder\.gru\.weight_hh_l(\d+)$", k))})
    if not layers or "queue" not in state:
        raise ReferenceFormatError("not a CMD MoCo state dict: no encoder_q.encoder.gru "
                                   "weights or no queue")
    mlp = "encoder_q.fc.0.weight" in state
    head_out = state["encoder_q.fc.2.weight" if mlp else "encoder_q.fc.weight"]
    modalities = [m for m, sfx in REFERENCE_SUFFIX.items() if f"encoder_q{sfx}.input_norm.weight"
                  in state]
    return {
        "modalities": modalities,
        "encoder": "bigru",
        "encoder_args": {"hidden_size": int(state["encoder_q.encoder.gru.weight_hh_l0"].shape[1]),
                         "num_layers": len(layers)},
        "feature_dim": int(head_out.shape[0]),
        "queue_size": int(state["queue"].shape[1]),
        "mlp": mlp,
    }


CONVERTERS = {"cmd": convert_cmd}
SETTINGS = {"cmd": cmd_settings}
"""Optional: the model settings a checkpoint's shapes imply (merged over the config on import)."""
