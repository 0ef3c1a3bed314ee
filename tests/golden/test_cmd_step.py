"""One CMD pre-training step against ``cmd_step.npz`` (the authors' ``pretrain_moco_cmd.py`` with
``moco/builder_cmd.py``): derived inputs, InfoNCE logits and losses, top-k anchors, the six KL
terms and their inputs, the total, every query-side gradient, and the state after the step
(momentum-updated key encoders, BatchNorm buffers of all six encoders, queues and pointers)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from skelkit.store.layout import NTU25
from skelkit.train.importers.cmd import REFERENCE_SUFFIX, convert_cmd
from skelkit.train.losses.contrastive import info_nce_logits
from skelkit.train.losses.distillation import mine_anchors
from skelkit.train.methods import CMD
from skelkit.train.methods.base import MoCoOutputs
from tests.golden.load import (
    assert_exact,
    assert_forward,
    assert_grad,
    load_golden,
    max_diff,
    section,
)

MODALITIES = ("joint", "motion", "bone")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("cmd_step")


def reference_state(golden: dict[str, np.ndarray], group: str = "weights") -> dict[str, torch.Tensor]:
    """The reference's state dict before the step: weights plus the input queues/pointers."""
    state = {k: torch.from_numpy(v.copy()) for k, v in section(golden, group).items()}
    for k, v in section(golden, "input").items():
        if k.startswith("queue"):
            state[k] = torch.from_numpy(v.copy())
    return state


def build(golden: dict[str, np.ndarray], fidelity: str = "reference") -> CMD:
    c = {k: golden[f"config/{k}"].item() for k in ("hidden_size", "num_layers", "feature_dim",
                                                    "K", "topk", "m", "T_contrast", "teacher_T",
                                                    "student_T", "cmd_weight")}
    cfg = CMD.Config.from_dict({
        "fidelity": fidelity, "encoder_args": {"hidden_size": c["hidden_size"],
                                               "num_layers": c["num_layers"]},
        "feature_dim": c["feature_dim"], "queue_size": c["K"], "topk": c["topk"],
        # The reference's Python doubles (0.999, 0.07, ...), not the float32 config copies.
        "momentum": 0.999, "temperature": 0.07, "teacher_temperature": 0.05,
        "student_temperature": 0.1, "cmd_weight": 1.0, "mlp": True})
    assert (c["m"], c["T_contrast"], c["teacher_T"], c["student_T"]) == pytest.approx(
        (cfg.momentum, cfg.temperature, cfg.teacher_temperature, cfg.student_temperature))
    method = CMD(cfg, NTU25).train()
    method.load_state_dict(convert_cmd(reference_state(golden), method), strict=True)
    return method


@pytest.fixture(scope="module")
def step(golden: dict[str, np.ndarray]) -> tuple[CMD, MoCoOutputs, dict[str, torch.Tensor],
                                                 torch.Tensor]:
    method = build(golden)
    q, k = (torch.from_numpy(golden[f"input/{v}"]) for v in ("view1", "view2"))
    out = method.moco_encode(q, k, None)
    terms = method.loss_terms(out)
    loss, _ = method.objective(terms)
    method.zero_grad(set_to_none=True)
    loss.backward()
    method.moco_enqueue(out)
    return method, out, terms, loss


REPORT: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def report() -> None:
    yield
    if REPORT:
        groups: dict[str, float] = {}
        for name, diff in REPORT.items():
            group = name.split(":")[0] if not name.startswith("after") else name.split("/")[0]
            groups[group] = max(groups.get(group, 0.0), diff)
        print("\ncmd_step max|diff| per group:", {k: f"{v:.1e}" for k, v in groups.items()})


def test_encoder_inputs(golden, step) -> None:
    method = step[0]
    q = torch.from_numpy(golden["input/view1"])
    for m in MODALITIES:
        frames = method.encoder(m).frames(method.derive_input(q, None, m))
        REPORT[f"encoder_input:{m}"] = assert_forward(
            frames, golden[f"expect/encoder_input/encoder_q{REFERENCE_SUFFIX[m]}"], m)


def test_infonce_logits_and_losses(golden, step) -> None:
    method, out, terms, _ = step
    for m in MODALITIES:
        logits = info_nce_logits(out.z_q[m], out.z_k[m], out.bank[m], method.cfg.temperature)
        REPORT[f"logits:{m}"] = assert_forward(logits, golden[f"expect/logits/{m}"], m)
        REPORT[f"loss:infonce/{m}"] = assert_forward(
            terms[f"scl/{m}"], golden[f"expect/loss/infonce/{m}"], m)


def test_topk_anchors_kl_inputs_and_terms(golden, step) -> None:
    method, out, terms, _ = step
    cfg = method.cfg
    for a in MODALITIES:
        values, index = mine_anchors(out.z_k[a], out.bank[a], cfg.topk)
        assert_exact(index, golden[f"expect/topk_index/{a}"], f"top-k of {a}")
        for b in MODALITIES:
            if a == b:
                continue
            pair = f"{a}->{b}"
            student = (out.z_q[b] @ out.bank[b].t()).gather(1, index) / cfg.student_temperature
            REPORT[f"kl_input:{pair}"] = max(
                assert_forward(values / cfg.teacher_temperature,
                               golden[f"expect/kl_input/{pair}/teacher_logits"], pair),
                assert_forward(student, golden[f"expect/kl_input/{pair}/student_logits"], pair))
            REPORT[f"loss:kl/{pair}"] = assert_forward(
                terms[f"md/{pair}"], golden[f"expect/loss/kl/{pair}"], pair)
    assert [n for n in terms if n.startswith("md/")] == [
        f"md/{a}->{b}" for a, b in itertools.permutations(MODALITIES, 2)]


def test_total_loss(golden, step) -> None:
    _, _, terms, loss = step
    cmd = sum(t for n, t in terms.items() if n.startswith("md/"))
    REPORT["loss:cmd"] = assert_forward(cmd, golden["expect/loss/cmd"], "cmd")
    REPORT["loss:total"] = assert_forward(loss, golden["expect/loss/total"], "total")


def test_every_gradient(golden, step) -> None:
    method = step[0]
    expected = section(golden, "expect/grad")
    names = convert_cmd({k: torch.empty(0) for k in expected}, None)
    params = dict(method.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert set(names) == trainable, "the reference's query-side parameters are ours"
    assert golden["expect/grad_none"].size == 0
    for ref_name, ours in zip(expected, names, strict=True):
        REPORT[f"grad:{ref_name}"] = assert_grad(params[ours].grad, expected[ref_name], ref_name)
    assert all(p.grad is None for n, p in params.items() if n not in trainable)


def test_state_after_the_step(golden, step) -> None:
    """Key encoders after the momentum update, every BatchNorm buffer, queues and pointers; every
    other entry unchanged (no optimiser step)."""
    method = step[0]
    after = section(golden, "expect/after")
    ours = method.state_dict()
    mapped = convert_cmd({k: torch.from_numpy(v) for k, v in after.items()}, method)
    for name, expected in mapped.items():
        group = "after:queue" if ".queue." in name else (
            "after:bn" if "running" in name or "batches" in name
            else "after:key")
        if expected.dtype == torch.int64:
            assert_exact(ours[name], expected.numpy(), name)
        else:
            REPORT[f"{group}/{name}"] = assert_forward(ours[name], expected.numpy(), name)
    before = convert_cmd(reference_state(golden), method)
    for name in set(ours) - set(mapped):
        assert torch.equal(ours[name], before[name]), f"{name} changed"


def test_paper_mode_gives_another_step(golden) -> None:
    """The same weights and views in paper mode (bidirectional GRU, final states): the golden
    total is out of reach, so the reference switches are what the match above rests on."""
    method = build(golden, "paper")
    q, k = (torch.from_numpy(golden[f"input/{v}"]) for v in ("view1", "view2"))
    loss, _ = method.training_step({"q": q, "k": k, "gamma": torch.ones(len(q))}, 0)
    assert max_diff(loss, golden["expect/loss/total"]) > 1e-2
