"""IKEM's implicit exchange (Eq. 1-2) and relational distillation (Eq. 7-8) against direct
per-sample implementations of the equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelkit.train.losses.ikem import concat_unit, implicit_exchange, relational_distillation


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1).float()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _direct_eq1(z_tilde, zhat_c, bank_c, tau) -> float:
    z_tilde, zhat_c, bank_c = _np(z_tilde), _np(zhat_c), _np(bank_c)
    losses = []
    for n in range(z_tilde.shape[0]):
        pos = math.exp(float(z_tilde[n] @ zhat_c[n]) / tau)
        neg = sum(math.exp(float(z_tilde[n] @ m) / tau) for m in bank_c)
        losses.append(-math.log(pos / (pos + neg)))
    return float(np.mean(losses))


def _direct_eq7(z_u, z_t, bank_t, z_v, bank_v, tau) -> float:
    z_u, z_t, bank_t, z_v, bank_v = (_np(a) for a in (z_u, z_t, bank_t, z_v, bank_v))
    losses = []
    for n in range(z_u.shape[0]):
        s_u = [float(z_u[n] @ m) for m in bank_t]
        s_v = [float(z_v[n] @ m) for m in bank_v]
        j = int(np.argmax(s_v))
        pos = math.exp(float(z_t[n] @ z_u[n]) / tau)
        terms = [math.exp(a * b / tau) for a, b in zip(s_u, s_v)]
        losses.append(-math.log((pos + terms[j]) / (pos + sum(terms))))
    return float(np.mean(losses))


def _teacher(n: int, bank: int, dim: int, views: int, seed: int):
    zs = [_unit(n, dim, seed=seed + i) for i in range(views)]
    banks = [_unit(bank, dim, seed=seed + 100 + i) for i in range(views)]
    return zs, banks


@pytest.mark.parametrize(("n", "bank", "dim", "views"), [(4, 9, 5, 3), (6, 20, 8, 6)])
def test_implicit_exchange_matches_direct_eq1(n, bank, dim, views):
    keys, key_banks = _teacher(n, bank, dim, views, seed=1)
    zhat_c, bank_c = concat_unit(keys), concat_unit(key_banks)
    z_tilde = _unit(n, dim * views, seed=50)
    tau = 0.07
    got = implicit_exchange(z_tilde, zhat_c, bank_c, tau).item()
    assert got == pytest.approx(_direct_eq1(z_tilde, zhat_c, bank_c, tau), rel=1e-5)


def test_concat_unit_is_the_scaled_concatenation():
    a, b = _unit(3, 4, seed=1), _unit(3, 4, seed=2)
    c = concat_unit([a, b])
    assert torch.allclose(c[:, :4] * math.sqrt(2), a) and torch.allclose(c[:, 4:] * math.sqrt(2), b)
    assert torch.allclose(c.norm(dim=1), torch.ones(3), atol=1e-6)


@pytest.mark.parametrize(("n", "bank", "dim", "views"), [(4, 9, 5, 2), (5, 16, 8, 6)])
def test_relational_distillation_matches_direct_eq7(n, bank, dim, views):
    zs, banks = _teacher(n, bank, dim, views, seed=3)
    z_t, bank_t = concat_unit(zs), concat_unit(banks)
    z_u = _unit(n, dim * views, seed=70)
    tau = 0.1
    for v in range(views):
        got = relational_distillation(z_u, z_t, bank_t, zs[v], banks[v], tau).item()
        assert got == pytest.approx(_direct_eq7(z_u, z_t, bank_t, zs[v], banks[v], tau), rel=1e-5)


def test_mined_teacher_index_uses_modality_v():
    # Student and concatenation prefer row 0, modality v prefers row 1: j must be 1.
    z_v = torch.tensor([[0.0, 1.0]])
    bank_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_t = torch.tensor([[1.0, 0.0]])
    bank_t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_u = torch.tensor([[0.8, 0.6]])
    tau = 0.5
    got = relational_distillation(z_u, z_t, bank_t, z_v, bank_v, tau).item()
    pos = math.exp(0.8 / tau)
    terms = [math.exp(0.8 * 0.0 / tau), math.exp(0.6 * 1.0 / tau)]
    assert got == pytest.approx(-math.log((pos + terms[1]) / (pos + sum(terms))), rel=1e-6)


def test_losses_send_no_gradient_to_teacher_tensors():
    zs, banks = _teacher(3, 8, 4, 3, seed=9)
    zs = [z.clone().requires_grad_() for z in zs]
    banks = [b.clone().requires_grad_() for b in banks]
    student = _unit(3, 12, seed=90).requires_grad_()
    sum(relational_distillation(student, concat_unit(zs), concat_unit(banks), z, bank)
        for z, bank in zip(zs, banks, strict=True)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert all(z.grad is None for z in zs) and all(b.grad is None for b in banks)


# --- the methods --------------------------------------------------------------------------------

TINY = {"encoder_args": {"channel_multiplier": 0.0625}, "queue_size": 16, "feature_dim": 8}


def _batch(n: int = 4, t: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"q": torch.randn(n, 3, t, 25, 2, generator=g),
            "k": torch.randn(n, 3, t, 25, 2, generator=g),
            "gamma": torch.rand(n, generator=g) + 0.5}


def _write_run(run_dir, method_name: str, model: torch.nn.Module, model_cfg: dict) -> None:
    import yaml

    from skelkit.train.checkpoint import save_checkpoint

    text = yaml.safe_dump({"method": method_name, "model": model_cfg, "data": {"store": None}})
    (run_dir / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(text)
    save_checkpoint(run_dir / "checkpoints" / "last.pt", method=method_name, epoch=1,
                    model=model.state_dict(), optimizer=None, scheduler=None, scaler=None,
                    config_text=text)


@pytest.fixture
def teacher_run(tmp_path):
    from skelkit.store.layout import NTU25
    from skelkit.train.methods.ikem import IKEM

    torch.manual_seed(0)
    cfg = IKEM.Config.from_dict(dict(TINY))
    teacher = IKEM(cfg, NTU25)
    _write_run(tmp_path / "teacher", "ikem", teacher, cfg.to_dict())
    return tmp_path / "teacher", teacher


def _student(run_dir, **extra):
    from skelkit.store.layout import NTU25
    from skelkit.train.methods.ikem_student import IKEMStudent

    cfg = IKEMStudent.Config.from_dict({
        "teacher": str(run_dir), "teacher_feature_dim": 8, "queue_size": 16,
        "encoder_args": {"channel_multiplier": 0.0625}, **extra})
    return IKEMStudent(cfg, NTU25)


def test_student_loads_teacher_weights_and_teacher_gets_no_gradient(teacher_run):
    run_dir, saved = teacher_run
    student = _student(run_dir)
    teacher = student.teacher
    loaded = teacher.state_dict()
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded[key], value), key
    before = {k: v.clone() for k, v in loaded.items()}
    assert not any(k.startswith("_teacher") for k in student.state_dict())
    assert {id(p) for p in student.parameters()}.isdisjoint(id(p) for p in teacher.parameters())
    student.train()
    assert not teacher.training
    opt = torch.optim.SGD(student.parameters(), lr=0.5)
    for step in range(2):
        loss, logs = student.training_step(_batch(seed=step), epoch=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(logs) == {"ts/joint", "ts/motion", "ts/bone", "loss"}
    assert all(p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        if not key.endswith(("queue.keys", "queue.ptr", "concat_queue.keys", "concat_queue.ptr")):
            assert torch.equal(value, before[key]), f"teacher {key} changed"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_student_loss_is_eq8_of_the_teacher_embeddings(teacher_run):
    """Paper mode: L_ts = sum_u sum_v L_{v->u} (Eq. 7-8) with M the bank of teacher
    concatenations and M^v the bank of the teacher's modality-v embeddings (rows aligned)."""
    run_dir, _ = teacher_run
    student = _student(run_dir)
    student.eval()  # deterministic BN for the reference computation
    batch = _batch(seed=3)
    teacher_views = student.teacher_views(batch["k"], batch["gamma"])
    names = student.cfg.teacher_modalities
    bank = student.queue.keys.clone()
    view_banks = [student.teacher_queues[v].keys.clone() for v in names]
    with torch.no_grad():
        students = [student.student_embedding(batch["q"], batch["gamma"], u)
                    for u in ("joint", "motion", "bone")]
        z_t = concat_unit(teacher_views)
        want = sum(_direct_eq7(s, z_t, bank, z_v, bank_v, 0.07)
                   for s in students for z_v, bank_v in zip(teacher_views, view_banks))
        got, _ = student.training_step(batch, epoch=0)
    assert got.item() == pytest.approx(want, rel=1e-5)
    assert torch.allclose(student.queue.keys[:4], z_t, atol=1e-6)
    for v, z_v in zip(names, teacher_views):  # written at the same rows
        assert torch.allclose(student.teacher_queues[v].keys[:4], z_v, atol=1e-6)


def test_teacher_errors_are_clear(tmp_path, teacher_run):
    from skelkit.store.layout import KINECT20, NTU25
    from skelkit.train.methods.crossclr import CrosSCLR
    from skelkit.train.methods.ikem import IKEM
    from skelkit.train.methods.ikem_student import IKEMStudent, TeacherError

    run_dir, _ = teacher_run
    with pytest.raises(TeacherError, match=r"no config\.yaml"):
        _student(tmp_path)
    with pytest.raises(TeacherError, match="no such run directory"):
        _student(tmp_path / "missing")
    cfg = CrosSCLR.Config.from_dict(dict(TINY))
    _write_run(tmp_path / "cross", "crossclr", CrosSCLR(cfg, NTU25), cfg.to_dict())
    with pytest.raises(TeacherError, match="'crossclr' run"):
        _student(tmp_path / "cross")
    cfg = IKEM.Config.from_dict({**TINY, "modalities": ["joint", "motion", "bone"],
                                 "frozen_key_modalities": ["joint"]})
    _write_run(tmp_path / "three", "ikem", IKEM(cfg, NTU25), cfg.to_dict())
    with pytest.raises(TeacherError, match="needs a teacher of joint, motion, bone, acceleration"):
        _student(tmp_path / "three")
    student_cfg = IKEMStudent.Config.from_dict({"teacher": str(run_dir), "teacher_feature_dim": 8,
                                                "queue_size": 16})
    with pytest.raises(TeacherError, match="layout"):
        IKEMStudent(student_cfg, KINECT20)
    with pytest.raises(ValueError, match="teacher run directory"):
        IKEMStudent.Config.from_dict({})
    old = IKEM(IKEM.Config.from_dict(dict(TINY)), NTU25)  # an older IKEM's extra queue
    state = {**old.state_dict(), "concat_queue.keys": torch.zeros(16, 48)}
    _write_run(tmp_path / "old", "ikem", old, old.cfg.to_dict())
    from skelkit.train.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "old" / "checkpoints" / "last.pt", method="ikem", epoch=1,
                    model=state, optimizer=None, scheduler=None, scaler=None, config_text="")
    with pytest.raises(TeacherError, match=r"concat_queue\.keys .*retrain"):
        _student(tmp_path / "old")


def test_ikem_stage_two_freezes_configured_keys_and_adds_eq2():
    from skelkit.store.layout import NTU25
    from skelkit.train.methods.ikem import IKEM

    torch.manual_seed(0)
    cfg = IKEM.Config.from_dict({**TINY, "momentum": 0.5, "cross_view_epoch": 2,
                                 "frozen_key_modalities": ["joint", "axis"]})
    model = IKEM(cfg, NTU25)
    with torch.no_grad():  # make query and key differ so a momentum update shows
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)

    def keys_snapshot():
        return {m: next(model.branch(m).encoder_k.parameters()).clone() for m in model.modalities}

    for epoch, frozen, stage in ((1, set(), 1.0), (2, {"joint", "axis"}, 2.0)):
        before = keys_snapshot()
        out = model.step(_batch(seed=epoch), epoch)
        after = keys_snapshot()
        assert out.logs["stage"] == stage
        for m in model.modalities:
            assert torch.equal(before[m], after[m]) == (m in frozen), (epoch, m)
        assert len(out.exchange_losses) == (6 if stage == 2.0 else 0)
    # Stage two adds Eq. 2: Eq. 1 of every modality against the unit concatenations.
    views = out.views
    concat_key = concat_unit([views.z_k[m] for m in model.modalities])
    concat_bank = concat_unit([views.bank[m] for m in model.modalities])
    for m in model.modalities:
        want = implicit_exchange(model.mapped_query(m, views.h_q[m]), concat_key, concat_bank)
        assert out.exchange_losses[m].item() == pytest.approx(want.item(), rel=1e-5)
    assert out.logs["ikem"] == pytest.approx(sum(v.item() for v in out.exchange_losses.values()),
                                             rel=1e-6)
    assert out.logs["ikem"] > 0 and "contrast/angular_velocity" in out.logs
