"""One IKEM-student step in ``fidelity: reference`` equals the authors' (golden
``student_step.npz``), without dropout and with the reference's dropout masks: logits, masks and
terms of the 18 (teacher view, student) pairs, the per-student and total losses, every student
gradient, and after the step the teacher's and the students' BatchNorm statistics (the teacher
runs in train mode), the seven queues and pointers. The teacher is a skelkit IKEM run built
from the student checkpoint's frozen encoders (``convert_student_teacher``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from skelkit.store.layout import NTU25
from skelkit.train.checkpoint import save_checkpoint
from skelkit.train.importers.ikem import (
    MODALITY_LETTER,
    convert_student,
    convert_student_teacher,
    rename_moco,
    rename_student,
)
from skelkit.train.methods.ikem import IKEM
from skelkit.train.methods.ikem_student import IKEMStudent
from tests.golden.ikem_helpers import (
    SIX,
    assert_exact,
    assert_forward,
    assert_grad,
    group,
    load_golden,
    no_grad_names,
    print_max_diffs,
    replay_dropout,
    tensors,
)

STUDENTS = ("joint", "motion", "bone")
DROPOUT = {"nodrop": 0.0, "drop": 0.5}


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("student_step")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print_max_diffs("student_step.npz", "student")


def _sizes(golden: dict[str, np.ndarray]) -> dict:
    return {"encoder_args": {"channel_multiplier": int(golden["config/hidden_channels"]) / 64,
                             "hidden_dim": int(golden["config/hidden_dim"])},
            "queue_size": int(golden["config/queue_size"]),
            "temperature": float(golden["config/Temperature"])}


def reference_state(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    queues = {k: v for k, v in group(golden, "input/").items() if k.startswith("queue")}
    return tensors({**group(golden, "weights/"), **queues})


def teacher_run(folder: Path, golden: dict[str, np.ndarray], dropout: float,
                switches: dict | None = None) -> Path:
    """An ikem run directory whose query encoders are the golden's frozen teacher."""
    model = {"fidelity": "reference", "modalities": list(SIX),
             "feature_dim": int(golden["config/feature_dim"]), **_sizes(golden),
             "switches": {"dropout": dropout, **(switches or {})}}
    teacher = IKEM(IKEM.Config.from_dict(model), NTU25)
    teacher.load_state_dict(convert_student_teacher(reference_state(golden), teacher))
    text = yaml.safe_dump({"method": "ikem", "model": teacher.cfg.to_dict(),
                           "data": {"store": None}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(text)
    save_checkpoint(folder / "checkpoints" / "last.pt", method="ikem", epoch=300,
                    model=teacher.state_dict(), optimizer=None, scheduler=None, scaler=None,
                    config_text=text)
    return folder


def loaded_student(folder: Path, golden: dict[str, np.ndarray], variant: str,
                   **switches: object) -> IKEMStudent:
    dropout = DROPOUT[variant]
    run = teacher_run(folder / "teacher", golden, dropout)
    cfg = IKEMStudent.Config.from_dict({
        "fidelity": "reference", "teacher": str(run), **_sizes(golden),
        "teacher_feature_dim": int(golden["config/feature_dim"]),
        "switches": {"dropout": dropout, **switches}})
    student = IKEMStudent(cfg, NTU25)
    student.load_state_dict(convert_student(reference_state(golden), student))
    if variant == "drop":
        masks = tensors(group(golden, "input/drop/dropout_mask/"))
        teacher_masks = {rename_moco(k): v for k, v in masks.items()
                         if k.startswith("encoder_q")}
        student_masks = {rename_student(k): v for k, v in masks.items()
                         if k.startswith("encoder_student")}
        assert len(teacher_masks) == 54 and len(student_masks) == 27
        replay_dropout(student.teacher, teacher_masks)
        replay_dropout(student, student_masks)
    return student


def batch(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our convention: the teacher encodes the key view, the students the query view; the
    reference's teacher reads view 1 and its students view 2."""
    frame = torch.from_numpy(golden["input/frame"])
    return {"q": torch.from_numpy(golden["input/view2"]),
            "k": torch.from_numpy(golden["input/view1"]), "gamma": frame.float() / 50}


@pytest.mark.parametrize("variant", ["nodrop", "drop"])
def test_student_step(golden, tmp_path, variant):
    student = loaded_student(tmp_path, golden, variant)
    teacher_before = {k: v.clone() for k, v in student.teacher.state_dict().items()}
    student.train()
    out = student.step(batch(golden), epoch=0)
    expect = group(golden, f"expect/{variant}/")
    where = f"student {variant}"
    for x in SIX:
        lx = MODALITY_LETTER[x]
        assert_exact(f"{where} mask: {lx}", out.masks[x], expect[f"mask/{lx}"])
        for y in STUDENTS:
            pair = f"{lx}s{MODALITY_LETTER[y]}"
            i = SIX.index(x)
            assert_forward(f"{where} logits: {pair}", out.students[y].logits[i],
                           expect[f"logits/{pair}"])
            assert_forward(f"{where} term: {pair}", out.students[y].terms[i],
                           expect[f"term/{pair}"])
    for y in STUDENTS:
        assert_forward(f"{where} loss: {y}", out.stream_losses[y],
                       expect[f"loss/student_{y}"])
    assert_forward(f"{where} loss: total", out.loss, expect["loss/total"])
    out.loss.backward()

    params = dict(student.named_parameters())
    grads = {k[len("grad/"):]: v for k, v in expect.items() if k.startswith("grad/")}
    for name, want in grads.items():
        assert_grad(f"{where} grad", name, params[rename_student(name)].grad, want)
    assert {rename_student(n) for n in grads} == set(params)
    assert not no_grad_names(student.named_parameters()) and expect["grad_none"].size == 0
    assert all(p.grad is None for p in student.teacher.parameters())

    after = {k[len("after/"):]: v for k, v in expect.items() if k.startswith("after/")}
    ours_state, teacher_state = student.state_dict(), student.teacher.state_dict()
    for name, want in after.items():
        if name.startswith("encoder_q"):  # the teacher's BatchNorm statistics moved
            got = teacher_state[rename_moco(name)]
        else:
            got = ours_state[rename_student(name)]
            if name.startswith("queue_ptr"):
                got = got.reshape(1)
            elif name.startswith("queue"):
                got = got.t()
        if want.dtype == np.int64:
            assert_exact(f"{where} after: {name}", got, want)
        else:
            assert_forward(f"{where} after: {name}", got, want)
    moved = {rename_moco(n) for n in after if n.startswith("encoder_q")}
    for name, value in student.teacher.state_dict().items():
        if name not in moved and ".queue." not in name:
            assert torch.equal(value, teacher_before[name]), f"teacher {name} changed"


def test_paper_switches_would_fail_the_golden(golden, tmp_path):
    """Each reference switch of the student changes the step's loss beyond the tolerance."""
    want = float(golden["expect/nodrop/loss/total"])
    for i, switch in enumerate([{"omega_context_queue": "own"}, {"teacher_mode": "eval"},
                                {"distill_loss": "paper"}]):
        student = loaded_student(tmp_path / str(i), golden, "nodrop", **switch)
        student.train()
        with torch.no_grad():
            got = student.step(batch(golden), epoch=0).loss.item()
        assert abs(got - want) > 1e-3, switch
