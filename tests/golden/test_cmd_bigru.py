"""CMD's BiGRU encoder against ``cmd_bigru.npz`` (the authors' ``moco/GRU.py``): reference mode
(both weight sets forward in time, the last frame's output) gives the golden features, head,
all 28 gradients and the input BatchNorm's statistics; paper mode (a true bidirectional GRU) does
not, by the margin the golden README measured."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skelkit.store.layout import NTU25
from skelkit.train.encoders.bigru import BiGRU, gru_per_frame_calls
from skelkit.train.importers.cmd import convert_cmd
from skelkit.train.methods import CMD
from skelkit.train.moco import MoCoBranch
from tests.golden.load import assert_exact, assert_forward, assert_grad, load_golden, section

PREFIX = "branches.joint."


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    return load_golden("cmd_bigru")


def reference_branch(golden: dict[str, np.ndarray], fidelity: str = "reference") -> MoCoBranch:
    """The joint branch of a CMD built like the golden's downstream model (hidden 16, 3 layers,
    head Linear(32, 8) without MLP), loaded with the golden's weights by the importer's names."""
    cfg = CMD.Config.from_dict({
        "fidelity": fidelity, "modalities": ["joint"], "feature_dim": 8, "mlp": False,
        "encoder_args": {"hidden_size": int(golden["config/hidden_size"]),
                         "num_layers": int(golden["config/num_layers"])},
        "queue_size": 8, "topk": 8})
    method = CMD(cfg, NTU25)
    weights = {k: torch.from_numpy(v) for k, v in section(golden, "weights").items()}
    ours = convert_cmd(weights, method)
    branch = method.branch("joint")
    branch.load_state_dict({**branch.state_dict(), **{k[len(PREFIX):]: v for k, v in ours.items()}})
    return branch


def test_flattening_order_is_the_references(golden: dict[str, np.ndarray]) -> None:
    """Feature index 6 v + 2 c + m (README, input/x_flat): bit-identical."""
    encoder = reference_branch(golden).encoder_q
    assert_exact(encoder.frames(torch.from_numpy(golden["input/x"])), golden["input/x_flat"],
                 "flattened frames")


def test_reference_mode_resolves_to_the_reference_encoder(golden: dict[str, np.ndarray]) -> None:
    encoder: BiGRU = reference_branch(golden).encoder_q
    assert (encoder.directions, encoder.pool) == ("forward", "last")
    paper: BiGRU = reference_branch(golden, "paper").encoder_q
    assert (paper.directions, paper.pool) == ("bidirectional", "final")


def test_train_mode_features_head_gradients_and_statistics(golden: dict[str, np.ndarray]) -> None:
    branch = reference_branch(golden).train()
    x = torch.from_numpy(golden["input/x"])
    feature = branch.encoder_q(x)
    head = branch.head_q(feature)
    diffs = {"feature": assert_forward(feature, golden["expect/train/feature"], "train feature"),
             "head": assert_forward(head, golden["expect/train/head"], "train head")}
    (head * torch.from_numpy(golden["input/grad_weight"])).sum().backward()
    grads = section(golden, "expect/train/grad")
    assert len(grads) == 28
    params = {**{f"encoder_q.{n}": p for n, p in branch.encoder_q.named_parameters()},
              **{f"head_q.{n}": p for n, p in branch.head_q.named_parameters()}}
    mapped = convert_cmd({k: torch.empty(0) for k in grads}, None)
    assert len(mapped) == 28
    for ref_name, our_name in zip(grads, mapped, strict=True):
        diffs[ref_name] = assert_grad(params[our_name[len(PREFIX):]].grad, grads[ref_name],
                                      ref_name)
    after = section(golden, "expect/train/after")
    for name, expected in after.items():
        buffer = branch.encoder_q.input_norm.get_buffer(name.rsplit(".", 1)[1])
        if expected.dtype == np.int64:
            assert_exact(buffer, expected, name)
        else:
            diffs[name] = assert_forward(buffer, expected, name)
    print("cmd_bigru train max|diff|:", {k: f"{v:.1e}" for k, v in diffs.items()})


def test_eval_mode_features_and_head(golden: dict[str, np.ndarray]) -> None:
    branch = reference_branch(golden).eval()
    with torch.no_grad():
        feature = branch.encoder_q(torch.from_numpy(golden["input/x"]))
        d1 = assert_forward(feature, golden["expect/eval/feature"], "eval feature")
        d2 = assert_forward(branch.head_q(feature), golden["expect/eval/head"], "eval head")
    print(f"cmd_bigru eval max|diff|: feature {d1:.1e}, head {d2:.1e}")


def test_the_authors_per_frame_loop_gives_the_same_features(golden: dict[str, np.ndarray]) -> None:
    """The authors' loop itself (one nn.GRU call per frame) on the same weights: what the fused
    reference mode replaces, for the bench and as a second derivation of the golden."""
    encoder = reference_branch(golden).encoder_q.eval()
    with torch.no_grad():
        frames = encoder.flatten(torch.from_numpy(golden["input/x"]))
        loop = gru_per_frame_calls(encoder.gru, frames)
        fused, _ = encoder.run_forward_directions(frames)
    assert_forward(loop[:, -1], golden["expect/eval/feature"], "per-frame loop")
    assert float((loop - fused).abs().max()) < 1e-6


def test_paper_mode_is_the_bidirectional_gru_and_differs(golden: dict[str, np.ndarray]) -> None:
    """Same weights, paper mode: a true bidirectional GRU's final states, 0.78 away from the
    reference feature (golden README), so the switch is what makes the match."""
    branch = reference_branch(golden, "paper").train()
    with torch.no_grad():
        feature = branch.encoder_q(torch.from_numpy(golden["input/x"]))
    diff = float((feature - torch.from_numpy(golden["expect/train/feature"])).abs().max())
    assert diff == pytest.approx(0.78, abs=0.01)
