"""One IKEM step in ``fidelity: reference`` equals the authors' step (golden ``ikem_step.npz``),
stage one and stage two: derived inputs, logits, masks, terms, exchange logits, every loss,
every gradient, the parameters without gradient, and every key parameter, BatchNorm statistic,
queue and pointer after the step. The weights reach our modules through the importer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skelkit.store.layout import NTU25
from skelkit.train.importers.ikem import MODALITY_LETTER, MODALITY_SUFFIX, convert_ikem, rename_moco
from skelkit.train.losses.contrastive import info_nce_logits
from skelkit.train.methods.ikem import IKEM
from tests.golden.ikem_helpers import (
    REFERENCE_NAME,
    SIX,
    assert_exact,
    assert_forward,
    assert_grad,
    group,
    load_golden,
    no_grad_names,
    print_max_diffs,
    tensors,
)

STAGE_EPOCH = {"stage1": 149, "stage2": 150}
"""Our 0-based epochs of the two stored steps: the reference's epochs 150 and 151 (1-based,
stage one while epoch <= cross_epoch = 150), with cross_view_epoch 150."""


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("ikem_step")


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print_max_diffs("ikem_step.npz", "ikem")


def ikem_config(golden: dict[str, np.ndarray], **switches: object) -> dict:
    """Our IKEM config of the golden's sizes (dropout 0 as the golden was run)."""
    return {"fidelity": "reference", "modalities": list(SIX),
            "encoder_args": {"channel_multiplier": int(golden["config/hidden_channels"]) / 64,
                             "hidden_dim": int(golden["config/hidden_dim"])},
            "feature_dim": int(golden["config/feature_dim"]),
            "queue_size": int(golden["config/queue_size"]),
            "momentum": float(golden["config/momentum"]),
            "temperature": float(golden["config/Temperature"]), "topk": 1,
            "cross_view_epoch": 150, "switches": {"dropout": 0.0, **switches}}


def reference_state(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The reference model's full state before the step: weights plus the input queues."""
    queues = {k: v for k, v in group(golden, "input/").items() if k.startswith("queue")}
    return tensors({**group(golden, "weights/"), **queues})


def loaded_ikem(golden: dict[str, np.ndarray], **switches: object) -> IKEM:
    method = IKEM(IKEM.Config.from_dict(ikem_config(golden, **switches)), NTU25)
    method.load_state_dict(convert_ikem(reference_state(golden), method))
    return method


def batch(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    frame = torch.from_numpy(golden["input/frame"])
    return {"q": torch.from_numpy(golden["input/view1"]),
            "k": torch.from_numpy(golden["input/view2"]), "gamma": frame.float() / 50}


def check_grads_and_state(where: str, method: torch.nn.Module, expect: dict[str, np.ndarray],
                          rename) -> None:
    """Every stored gradient, the parameters without one, and every stored after-state."""
    params = dict(method.named_parameters())
    grads = {k[len("grad/"):]: v for k, v in expect.items() if k.startswith("grad/")}
    for name, want in grads.items():
        assert_grad(f"{where} grad", name, params[rename(name)].grad, want)
    trainable = {n for n, p in params.items() if p.requires_grad}
    assert {rename(n) for n in grads} == trainable - no_grad_names(method.named_parameters())
    assert no_grad_names(method.named_parameters()) == {rename(str(n))
                                                         for n in expect["grad_none"]}
    state = method.state_dict()
    after = {k[len("after/"):]: v for k, v in expect.items() if k.startswith("after/")}
    for name, want in after.items():
        ours = state[rename(name)]
        if name.startswith("queue") and not name.startswith("queue_ptr"):
            ours = ours.t()
        elif name.startswith("queue_ptr"):
            ours = ours.reshape(1)
        if want.dtype == np.int64:
            assert_exact(f"{where} after: {name}", ours, want)
        else:
            assert_forward(f"{where} after: {name}", ours, want)


def test_derived_inputs_are_the_references(golden):
    method = loaded_ikem(golden)
    b = batch(golden)
    for m in SIX:
        want = golden[f"expect/encoder_input/encoder_q{MODALITY_SUFFIX[m]}"]
        assert_forward(f"ikem encoder_input: {m}", method.derive_input(b["q"], b["gamma"], m),
                       want)


def test_stage_one(golden):
    method = loaded_ikem(golden)
    method.train()
    out = method.step(batch(golden), STAGE_EPOCH["stage1"])
    assert out.logs["stage"] == 1.0
    expect = group(golden, "expect/stage1/")
    for m in SIX:
        v = out.views
        logits = info_nce_logits(v.z_q[m], v.z_k[m], v.bank[m], method.cfg.temperature)
        assert_forward(f"ikem stage1 logits: {m}", logits, expect[f"logits/{REFERENCE_NAME[m]}"])
        assert_forward(f"ikem stage1 loss: {m}", out.view_losses[m],
                       expect[f"loss/{REFERENCE_NAME[m]}"])
    assert_forward("ikem stage1 loss: total", out.loss, expect["loss/total"])
    out.loss.backward()
    check_grads_and_state("ikem stage1", method, expect, rename_moco)


def test_stage_two(golden):
    method = loaded_ikem(golden)
    method.train()
    out = method.step(batch(golden), STAGE_EPOCH["stage2"])
    assert out.logs["stage"] == 2.0 and out.cross is not None and out.masks is not None
    expect = group(golden, "expect/stage2/")
    for u in SIX:
        lu = MODALITY_LETTER[u]
        others = [v for v in SIX if v != u]
        for i, v in enumerate(others):
            pair = lu + MODALITY_LETTER[v]
            assert_forward(f"ikem stage2 logits: {pair}", out.cross[u].logits[i],
                           expect[f"logits/{pair}"])
            assert_forward(f"ikem stage2 term: {pair}", out.cross[u].terms[i],
                           expect[f"term/{pair}"])
        assert_exact(f"ikem stage2 mask: {lu}", out.masks[u], expect[f"mask/{lu}"])
        assert_forward(f"ikem stage2 exchange_logits: {lu}", out.exchange_logits[u],
                       expect[f"exchange_logits/{lu}"])
        assert_forward(f"ikem stage2 loss: exchange {u}", out.exchange_losses[u],
                       expect[f"loss/exchange/{REFERENCE_NAME[u]}"])
        assert_forward(f"ikem stage2 loss: {u}", out.view_losses[u],
                       expect[f"loss/{REFERENCE_NAME[u]}"])
    assert_forward("ikem stage2 loss: total", out.loss, expect["loss/total"])
    out.loss.backward()
    check_grads_and_state("ikem stage2", method, expect, rename_moco)
    # The frozen keys (joint, bone, axis) kept the weights they started from.
    start = reference_state(golden)
    for m in ("joint", "bone", "axis"):
        key = f"encoder_k{MODALITY_SUFFIX[m]}.st_gcn_networks.0.gcn.conv.weight"
        assert torch.equal(method.state_dict()[rename_moco(key)], start[key])


def test_paper_mode_would_fail_the_golden(golden):
    """The comparisons above can fail: paper mode's loss is far from the reference's."""
    method = loaded_ikem(golden, cross_view_loss="paper")
    method.train()
    out = method.step(batch(golden), STAGE_EPOCH["stage2"])
    assert abs(out.loss.item() - float(golden["expect/stage2/loss/total"])) > 1.0
