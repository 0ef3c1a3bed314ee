"""Methods: configs, modality derivation, and the CMD / SkeletonCLR losses against the equations."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch

from skelkit.store import NTU25, Layout
from skelkit.train.methods import CMD, METHODS, Method, SkeletonCLR
from skelkit.train.methods.cmd import cmd_bone_parents

CHAIN = Layout(name="chain4", joint_names=("a", "b", "c", "d"), parents=(0, 0, 1, 2),
               hinges=((0, 0), (1, 0), (2, 1), (3, 2)), z_axis=(0, 1), x_axis=(2, 3))


def slow_info_nce(q, k, bank, tau):
    """I²MD Eq. 1, one sample at a time."""
    losses = []
    for n in range(q.shape[0]):
        pos = torch.exp(q[n] @ k[n] / tau)
        neg = sum(torch.exp(q[n] @ bank[i] / tau) for i in range(bank.shape[0]))
        losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def slow_md(key_a, bank_a, query_b, bank_b, kc, tau_t, tau_s):
    """I²MD Eq. 2-3, one sample at a time, teacher a -> student b."""
    losses = []
    for n in range(key_a.shape[0]):
        sims = torch.stack([key_a[n] @ bank_a[i] for i in range(bank_a.shape[0])])
        anchors = torch.argsort(sims, descending=True)[:kc]
        p_t = torch.softmax(sims[anchors] / tau_t, dim=0)
        p_s = torch.softmax(torch.stack([query_b[n] @ bank_b[i] for i in anchors]) / tau_s, dim=0)
        losses.append((p_t * (p_t / p_s).log()).sum())
    return torch.stack(losses).mean()


def tiny_cmd(**overrides) -> CMD:
    values = {"encoder_args": {"hidden_size": 16, "num_layers": 2}, "queue_size": 40,
              "topk": 12, **overrides}
    return CMD(CMD.Config.from_dict(values), NTU25)


def _batch(n=4, t=10, v=25, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"q": torch.randn(n, 3, t, v, 2, generator=g),
            "k": torch.randn(n, 3, t, v, 2, generator=g),
            "gamma": torch.rand(n, generator=g) + 0.5}


def test_registry_and_class_attributes():
    assert METHODS["skeletonclr"] is SkeletonCLR and METHODS["cmd"] is CMD
    assert CMD.input_kind == "sequence" and SkeletonCLR.input_kind == "fixed"
    for cls in METHODS.values():
        assert issubclass(cls, Method) and dataclasses.is_dataclass(cls.Config)


def test_cmd_defaults_are_the_published_settings():
    cfg = CMD.Config.from_dict({})
    assert (cfg.queue_size, cfg.topk, cfg.momentum) == (16384, 8192, 0.999)
    assert (cfg.temperature, cfg.teacher_temperature, cfg.student_temperature) == (0.07, 0.05, 0.1)
    assert cfg.encoder == "bigru" and cfg.encoder_args == {"hidden_size": 1024, "num_layers": 3}
    assert cfg.modalities == ("joint", "motion", "bone") and cfg.feature_dim == 128
    assert CMD.Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(("values", "message"), [
    ({"tau": 0.1}, "unknown key"),
    ({"topk": "8"}, "topk: expected an integer"),
    ({"topk": 100, "queue_size": 50}, "topk"),
    ({"bone_tree": "ntu"}, "bone_tree"),
    ({"modalities": ["joint", "angle"]}, "modalities"),
    ({"teacher_temperature": 0}, "temperature"),
    ({"encoder": "lstm"}, "encoder"),
    ({"mlp": 1}, "mlp: expected true/false"),
])
def test_cmd_config_rejects_bad_values(values, message):
    with pytest.raises(ValueError, match=message):
        CMD.Config.from_dict(values)


def test_cmd_loss_is_scl_plus_every_ordered_pair_of_distillations():
    torch.manual_seed(0)
    model = tiny_cmd(cmd_weight=0.7)
    twin = copy.deepcopy(model)
    batch = _batch()
    loss, logs = model.training_step(batch, epoch=0)

    z_q, z_k, bank = {}, {}, {}
    for m in twin.modalities:
        branch = twin.branch(m)
        z_q[m], _ = branch.query(twin.derive_input(batch["q"], batch["gamma"], m))
        branch.momentum_update()
        z_k[m], _ = branch.key(twin.derive_input(batch["k"], batch["gamma"], m))
        bank[m] = branch.queue.keys.clone()
    scl = sum(slow_info_nce(z_q[m], z_k[m], bank[m], 0.07) for m in twin.modalities)
    md = {(a, b): slow_md(z_k[a], bank[a], z_q[b], bank[b], 12, 0.05, 0.1)
          for a, b in itertools.permutations(twin.modalities, 2)}
    assert len(md) == 6
    want = scl + 0.7 * sum(md.values())
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)
    for (a, b), value in md.items():
        assert logs[f"md/{a}->{b}"] == pytest.approx(value.item(), rel=1e-4, abs=1e-6)
    # The direction matters: student anchors would give different numbers.
    swapped = slow_md(z_k["motion"], bank["motion"], z_q["joint"], bank["joint"], 12, 0.05, 0.1)
    assert abs(swapped.item() - md[("joint", "motion")].item()) > 1e-4


def test_cmd_modalities_follow_cmd_code():
    model = tiny_cmd()
    x = torch.randn(2, 3, 6, 25, 2)
    gamma = torch.full((2,), 3.0)  # ignored: CMD's motion has no time scale
    motion = model.derive_input(x, gamma, "motion")
    assert torch.allclose(motion[:, :, :-1], x[:, :, 1:] - x[:, :, :-1])
    assert torch.all(motion[:, :, -1] == 0)
    bone = model.derive_input(x, gamma, "bone")
    # 1-based CMD pairs (22, 23), (23, 8), (24, 25), (25, 12), (4, 3); (21, 21) is zero.
    for child, parent in [(22, 23), (23, 8), (24, 25), (25, 12), (4, 3)]:
        assert torch.allclose(bone[:, :, :, child - 1], x[:, :, :, child - 1] - x[:, :, :, parent - 1])
    assert torch.all(bone[:, :, :, 20] == 0)
    assert torch.equal(model.derive_input(x, gamma, "joint"), x)
    # bone_tree: layout uses the store's tree and torso normal instead.
    layout_bone = tiny_cmd(bone_tree="layout").derive_input(x, gamma, "bone")
    assert torch.allclose(layout_bone[:, :, :, 21], x[:, :, :, 21] - x[:, :, :, 7])
    assert torch.allclose(layout_bone[:, :, :, 20].norm(dim=1), torch.ones(2, 6, 2), atol=1e-5)


def test_cmd_bone_tree_needs_ntu_but_layout_tree_works_anywhere():
    with pytest.raises(ValueError, match="bone_tree"):
        cmd_bone_parents(CHAIN)
    cfg = CMD.Config.from_dict({"encoder_args": {"hidden_size": 8, "num_layers": 1},
                                "queue_size": 16, "topk": 4, "bone_tree": "layout"})
    model = CMD(cfg, CHAIN, num_bodies=1)
    loss, _ = model.training_step(_batch(n=4, t=5, v=4)
                                  | {"q": torch.randn(4, 3, 5, 4, 1),
                                     "k": torch.randn(4, 3, 5, 4, 1)}, 0)
    assert torch.isfinite(loss)


def test_embed_is_the_query_encoders_pooled_feature():
    torch.manual_seed(1)
    model = tiny_cmd().eval()
    x, gamma = torch.randn(3, 3, 9, 25, 2), torch.ones(3)
    for m in ("joint", "motion", "bone"):
        out = model.embed(x, gamma, m)
        assert out.shape == (3, 32) and model.encoder(m).out_dim == 32
        assert torch.allclose(out, model.encoder(m)(model.derive_input(x, gamma, m)))
        assert model.encoder(m) is model.branch(m).encoder_q
    with pytest.raises(ValueError, match="no 'axis'"):
        model.embed(x, gamma, "axis")


def test_skeletonclr_step_matches_equation_1_and_uses_gamma():
    torch.manual_seed(2)
    cfg = SkeletonCLR.Config.from_dict({"modality": "motion", "queue_size": 20,
                                        "encoder_args": {"channel_multiplier": 0.125,
                                                         "hidden_dim": 32, "dropout": 0.0}})
    model = SkeletonCLR(cfg, NTU25)
    assert model.modalities == ("motion",) and model.encoder("motion").out_dim == 32
    twin = copy.deepcopy(model)
    batch = _batch(n=3, t=8)
    loss, logs = model(batch, 0)  # forward == training_step (DDP's entry point)
    branch = twin.branch("motion")
    z_q, _ = branch.query(twin.derive_input(batch["q"], batch["gamma"], "motion"))
    branch.momentum_update()
    z_k, _ = branch.key(twin.derive_input(batch["k"], batch["gamma"], "motion"))
    want = slow_info_nce(z_q, z_k, branch.queue.keys, 0.07)
    assert loss.item() == pytest.approx(want.item(), rel=1e-4)
    assert logs["loss"] == pytest.approx(loss.item())
    assert int(model.branch("motion").queue.ptr) == 3
    x = batch["q"]
    motion = model.derive_input(x, batch["gamma"], "motion")
    assert torch.allclose(motion[0, :, 0], (x[0, :, 1] - x[0, :, 0]) / batch["gamma"][0])


def test_training_step_rejects_incomplete_batches():
    with pytest.raises(KeyError, match="gamma"):
        tiny_cmd().training_step({"q": torch.zeros(2, 3, 4, 25, 2),
                                  "k": torch.zeros(2, 3, 4, 25, 2)}, 0)


def test_partial_encoder_args_keep_the_other_defaults():
    cfg = CMD.Config.from_dict({"encoder_args": {"hidden_size": 64}})
    assert cfg.encoder_args == {"hidden_size": 64, "num_layers": 3}
    cfg = CMD.Config.from_dict({"encoder": "stgcn", "encoder_args": {"channel_multiplier": 0.5}})
    assert cfg.encoder_args == {"channel_multiplier": 0.5}
    clr = SkeletonCLR.Config.from_dict({"encoder_args": {"hidden_dim": 32}})
    assert clr.encoder_args == {"channel_multiplier": 0.25, "hidden_dim": 32, "dropout": 0.5}
