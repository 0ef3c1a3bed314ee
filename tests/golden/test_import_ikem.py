"""The CrosSCLR / IKEM / IKEM-student converters round-trip: a checkpoint under the authors'
state-dict names, assembled from the golden ST-GCN (``stgcn.npz``), loads into our method and
its features equal the golden's expected features; wrong checkpoints are refused clearly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from skelkit.store.layout import NTU25
from skelkit.train.checkpoint import save_checkpoint
from skelkit.train.importers.ikem import (
    CONVERTERS,
    MODALITY_LETTER,
    MODALITY_SUFFIX,
    ConversionError,
    convert_student_teacher,
)
from skelkit.train.methods.crossclr import CrosSCLR
from skelkit.train.methods.ikem import IKEM
from skelkit.train.methods.ikem_student import IKEMStudent
from tests.golden.ikem_helpers import SIX, assert_forward, group, load_golden, tensors

K = 16
FEATURE_DIM = 8  # the golden fc's width: it serves as a one-layer head (mlp: false)


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("stgcn")


def _encoder(golden) -> dict[str, torch.Tensor]:
    """The golden ST-GCN's state under the reference's names, fc included."""
    return tensors(group(golden, "weights/"))


def _linear(prefix: str, out_dim: int, in_dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"{prefix}.weight": torch.randn(out_dim, in_dim, generator=g) * 0.1,
            f"{prefix}.bias": torch.randn(out_dim, generator=g) * 0.1}


def _queue(name: str, dim: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"queue{name}": F.normalize(torch.randn(dim, K, generator=g), dim=0),
            f"queue_ptr{name}": torch.tensor([8])}


def moco_checkpoint(golden, modalities, exchange: bool) -> dict[str, torch.Tensor]:
    """A CrosSCLR/IKEM reference state: every query and key encoder is the golden ST-GCN,
    saved by DataParallel (``module.`` prefix)."""
    encoder, state = _encoder(golden), {}
    hidden = int(golden["config/hidden_dim"])
    for i, m in enumerate(modalities):
        sfx = MODALITY_SUFFIX[m]
        for side in "qk":
            state.update({f"encoder_{side}{sfx}.{k}": v for k, v in encoder.items()})
        state.update(_queue(sfx, FEATURE_DIM, seed=i))
        if exchange:
            concat = FEATURE_DIM * len(modalities)
            state.update(_linear(f"mlp2{MODALITY_LETTER[m]}.0", 3 * hidden, hidden, seed=10 + i))
            state.update(_linear(f"mlp2{MODALITY_LETTER[m]}.2", concat, 3 * hidden, seed=20 + i))
    return {f"module.{k}": v for k, v in state.items()}


def _model_config(golden, modalities, **extra) -> dict:
    return {"fidelity": "reference", "modalities": list(modalities), "mlp": False,
            "feature_dim": FEATURE_DIM, "queue_size": K,
            "encoder_args": {"channel_multiplier": int(golden["config/hidden_channels"]) / 64,
                             "hidden_dim": int(golden["config/hidden_dim"])}, **extra}


def _features_equal_golden(where: str, method, modalities, golden) -> None:
    x = torch.from_numpy(golden["input/x"])
    gamma = torch.ones(x.shape[0])
    method.eval()
    assert_forward(f"import {where} joint", method.embed(x, gamma, "joint"),
                   golden["expect/eval/feature"])
    for m in modalities:  # every modality's encoder got the golden weights
        assert_forward(f"import {where} {m}", method.encoder(m)(x), golden["expect/eval/feature"])


@pytest.mark.parametrize("name", ["crossclr", "ikem"])
def test_moco_formats_round_trip(golden, name):
    modalities = ("joint", "motion", "bone") if name == "crossclr" else SIX
    cls = {"crossclr": CrosSCLR, "ikem": IKEM}[name]
    method = cls(cls.Config.from_dict(_model_config(golden, modalities)), NTU25)
    checkpoint = moco_checkpoint(golden, modalities, exchange=name == "ikem")
    if name == "crossclr":  # IKEM's 3-view variant carries exchange MLPs: dropped
        checkpoint.update({f"module.{k}": v for k, v in _linear("mlp2j.0", 4, 4, 0).items()})
    state = CONVERTERS[name](checkpoint, method)
    method.load_state_dict(state)
    _features_equal_golden(name, method, modalities, golden)
    # Queues arrive transposed, pointers as scalars; key encoders are the reference's.
    queue = method.branch("motion").queue
    assert torch.equal(queue.keys, checkpoint["module.queue_motion"].t())
    assert int(queue.ptr) == 8
    assert torch.equal(method.branch("bone").head_k.net.weight,
                       checkpoint["module.encoder_k_bone.fc.weight"])


def _write_teacher(folder: Path, teacher: IKEM) -> Path:
    text = yaml.safe_dump({"method": "ikem", "model": teacher.cfg.to_dict(),
                           "data": {"store": None}})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(text)
    save_checkpoint(folder / "checkpoints" / "last.pt", method="ikem", epoch=1,
                    model=teacher.state_dict(), optimizer=None, scheduler=None, scaler=None,
                    config_text=text)
    return folder


def test_student_format_round_trips_with_its_teacher(golden, tmp_path):
    encoder, hidden = _encoder(golden), int(golden["config/hidden_dim"])
    concat = FEATURE_DIM * len(SIX)
    checkpoint: dict[str, torch.Tensor] = {}
    body = {k: v for k, v in encoder.items() if not k.startswith("fc.")}
    for i, m in enumerate(SIX):  # the frozen teacher: golden ST-GCN + an MLP head
        sfx = MODALITY_SUFFIX[m]
        checkpoint.update({f"encoder_q{sfx}.{k}": v for k, v in body.items()})
        checkpoint.update(_linear(f"encoder_q{sfx}.fc.0", hidden, hidden, seed=30 + i))
        checkpoint.update(_linear(f"encoder_q{sfx}.fc.2", FEATURE_DIM, hidden, seed=40 + i))
        checkpoint.update(_queue(sfx, FEATURE_DIM, seed=50 + i))
    for i, m in enumerate(("joint", "motion", "bone")):
        prefix = f"encoder_student_{MODALITY_LETTER[m]}"
        checkpoint.update({f"{prefix}.{k}": v for k, v in body.items()})
        checkpoint.update(_linear(f"{prefix}.fc.0", 3 * hidden, hidden, seed=60 + i))
        checkpoint.update(_linear(f"{prefix}.fc.2", concat, 3 * hidden, seed=70 + i))
    checkpoint.update(_queue("_teacher", concat, seed=80))

    teacher_cfg = _model_config(golden, SIX, mlp=True)
    teacher = IKEM(IKEM.Config.from_dict(teacher_cfg), NTU25)
    teacher.load_state_dict(convert_student_teacher(checkpoint, teacher))
    _features_equal_golden("ikem-student teacher", teacher, SIX, golden)
    run = _write_teacher(tmp_path / "teacher", teacher)

    student_cfg = {k: v for k, v in _model_config(golden, ("joint", "motion", "bone")).items()
                   if k not in ("mlp", "feature_dim")}
    student = IKEMStudent(IKEMStudent.Config.from_dict(
        {**student_cfg, "teacher": str(run), "teacher_feature_dim": FEATURE_DIM}), NTU25)
    student.load_state_dict(CONVERTERS["ikem-student"](checkpoint, student))
    _features_equal_golden("ikem-student", student, ("joint", "motion", "bone"), golden)
    assert torch.equal(student.queue.keys, checkpoint["queue_teacher"].t())
    assert torch.equal(student.teacher_queues["axis"].keys, checkpoint["queue_rotation_axis"].t())


def test_wrong_checkpoints_are_refused_with_one_line(golden):
    modalities = ("joint", "motion", "bone")
    checkpoint = moco_checkpoint(golden, modalities, exchange=False)
    paper = CrosSCLR(CrosSCLR.Config.from_dict(
        _model_config(golden, modalities, fidelity="paper")), NTU25)
    with pytest.raises(ConversionError, match=r"graph differs.*fidelity: reference"):
        CONVERTERS["crossclr"](checkpoint, paper)
    method = CrosSCLR(CrosSCLR.Config.from_dict(_model_config(golden, modalities)), NTU25)
    missing = dict(checkpoint)
    del missing["module.encoder_k_bone.data_bn.weight"]
    with pytest.raises(ConversionError, match=r"lacks branches\.bone\.encoder_k\.data_bn\.weight"):
        CONVERTERS["crossclr"](missing, method)
    with pytest.raises(ConversionError, match=r"encoder_q\.bogus: not an ST-GCN entry"):
        CONVERTERS["crossclr"]({**checkpoint, "module.encoder_q.bogus": torch.zeros(1)}, method)
    with pytest.raises(ConversionError, match="no such entry"):  # a modality this config lacks
        CONVERTERS["crossclr"]({**checkpoint, "module.queue_omega": torch.zeros(8, K)}, method)
    with pytest.raises(ConversionError, match="shape"):
        CONVERTERS["crossclr"]({**checkpoint, "module.queue": torch.zeros(4, K)}, method)
