"""CrosSCLR's CVC-KM (Eq. 4-8) against direct per-sample implementations of the equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skelkit.train.losses.crossview import cross_view_mining, knowledge_mining, mine_topk


def _unit(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=1).float()


def _direct_eq6(z_u, zhat_u, bank_u, z_v, bank_v, k, tau, weighted=True) -> float:
    """CrosSCLR Eq. 6 sample by sample, in float64, with its own top-k by sorting."""
    z_u, zhat_u, bank_u = (np.asarray(t, np.float64) for t in (z_u, zhat_u, bank_u))
    z_v, bank_v = np.asarray(z_v, np.float64), np.asarray(bank_v, np.float64)
    losses = []
    for n in range(z_u.shape[0]):
        s_u = [float(z_u[n] @ m) for m in bank_u]
        s_v = [float(z_v[n] @ m) for m in bank_v]
        mined = sorted(range(len(s_v)), key=lambda i: -s_v[i])[:k]
        pos = math.exp(float(z_u[n] @ zhat_u[n]) / tau)
        term = [math.exp((s_u[i] * (s_v[i] if weighted else 1.0)) / tau) for i in range(len(s_u))]
        losses.append(-math.log((pos + sum(term[i] for i in mined)) / (pos + sum(term))))
    return float(np.mean(losses))


@pytest.mark.parametrize(("n", "bank", "dim", "k"), [(5, 7, 4, 1), (3, 16, 8, 3), (4, 9, 6, 0)])
@pytest.mark.parametrize("weighted", [True, False])
def test_cross_view_mining_matches_direct_eq6(n, bank, dim, k, weighted):
    z_u, zhat_u, z_v = _unit(n, dim, seed=1), _unit(n, dim, seed=2), _unit(n, dim, seed=3)
    bank_u, bank_v = _unit(bank, dim, seed=4), _unit(bank, dim, seed=5)
    tau = 0.2
    got = cross_view_mining(z_u, zhat_u, bank_u, z_v, bank_v, k, tau, embedding_context=weighted)
    want = _direct_eq6(z_u, zhat_u, bank_u, z_v, bank_v, k, tau, weighted)
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_mined_index_comes_from_the_other_view():
    # Bank row 2 is the best match in view v, row 0 the best in view u: mining must take row 2.
    z_u = torch.tensor([[1.0, 0.0]])
    z_v = torch.tensor([[0.0, 1.0]])
    bank_u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    bank_v = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    assert mine_topk(z_v @ bank_v.t(), 1).tolist() == [[2]]
    tau = 0.5
    got = cross_view_mining(z_u, z_u, bank_u, z_v, bank_v, k=1, temperature=tau)
    s = [1.0 * 0.0, 0.0 * 0.8, 0.6 * 1.0]  # s_i^u s_i^v
    pos = math.exp(1.0 / tau)
    want = -math.log((pos + math.exp(s[2] / tau)) / (pos + sum(math.exp(x / tau) for x in s)))
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_k0_and_unit_weights_reduce_to_infonce():
    from skelkit.train.losses.contrastive import info_nce

    z_u, zhat_u, bank_u = _unit(6, 8, seed=7), _unit(6, 8, seed=8), _unit(20, 8, seed=9)
    z_v, bank_v = _unit(6, 8, seed=10), _unit(20, 8, seed=11)
    got = cross_view_mining(z_u, zhat_u, bank_u, z_v, bank_v, k=0, temperature=0.07,
                            embedding_context=False)
    assert got.item() == pytest.approx(info_nce(z_u, zhat_u, bank_u, 0.07).item(), rel=1e-5)
    # The single-view Eq. 5 with K = 0 is InfoNCE too.
    km = knowledge_mining(z_u, zhat_u, bank_u, k=0, temperature=0.07)
    assert km.item() == pytest.approx(info_nce(z_u, zhat_u, bank_u, 0.07).item(), rel=1e-5)


def test_knowledge_mining_eq5_pulls_in_own_topk():
    z, zhat, bank = _unit(4, 5, seed=12), _unit(4, 5, seed=13), _unit(10, 5, seed=14)
    tau = 0.3
    got = knowledge_mining(z, zhat, bank, k=2, temperature=tau).item()
    # Eq. 5 is Eq. 6 with v = u and no weighting.
    assert got == pytest.approx(_direct_eq6(z, zhat, bank, z, bank, 2, tau, weighted=False),
                                rel=1e-5)


def test_gradient_reaches_only_view_u():
    z_u = _unit(3, 4, seed=20).requires_grad_()
    z_v = _unit(3, 4, seed=21).requires_grad_()
    bank_u = _unit(8, 4, seed=22).requires_grad_()
    bank_v = _unit(8, 4, seed=23).requires_grad_()
    cross_view_mining(z_u, _unit(3, 4, seed=24), bank_u, z_v, bank_v, k=1).backward()
    assert z_u.grad is not None and z_u.grad.abs().sum() > 0
    assert z_v.grad is None and bank_u.grad is None and bank_v.grad is None


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="bank size"):
        cross_view_mining(_unit(2, 4, seed=1), _unit(2, 4, seed=2), _unit(5, 4, seed=3),
                          _unit(2, 4, seed=4), _unit(6, 4, seed=5))
    with pytest.raises(ValueError, match="K <= bank size"):
        mine_topk(torch.zeros(2, 3), 4)


# --- the method ---------------------------------------------------------------------------------

def _crossclr(**extra):
    from skelkit.store.layout import NTU25
    from skelkit.train.methods.crossclr import CrosSCLR

    torch.manual_seed(0)
    cfg = CrosSCLR.Config.from_dict({"encoder_args": {"channel_multiplier": 0.0625},
                                     "queue_size": 16, "feature_dim": 8, **extra})
    return CrosSCLR(cfg, NTU25)


def _batch(n: int = 4, t: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"q": torch.randn(n, 3, t, 25, 2, generator=g),
            "k": torch.randn(n, 3, t, 25, 2, generator=g),
            "gamma": torch.rand(n, generator=g) + 0.5}


@pytest.mark.parametrize("switch", [1, 3])
def test_stage_switch_happens_at_the_configured_epoch(switch):
    from skelkit.train.losses.contrastive import info_nce

    # momentum 1: the key branches never move, so the reference can re-encode the same views.
    model = _crossclr(cross_view_epoch=switch, momentum=1.0, topk=2)
    model.eval()  # batch-independent BN: the reference and the step see identical encoders
    mods = model.modalities
    for epoch in range(switch - 1, switch + 1):
        batch = _batch(seed=epoch)
        with torch.no_grad():
            z_q = [model.branch(m).query(model.derive_input(batch["q"], batch["gamma"], m))[0]
                   for m in mods]
            z_k = [model.branch(m).key(model.derive_input(batch["k"], batch["gamma"], m))[0]
                   for m in mods]
            banks = [model.branch(m).queue.keys.clone() for m in mods]
            loss, logs = model.training_step(batch, epoch)
        if epoch < switch:
            want = sum(info_nce(q, k, b, 0.07).item() for q, k, b in zip(z_q, z_k, banks))
            assert logs["stage"] == 1.0
        else:
            # L_cross, CrosSCLR Eq. 8: Eq. 6 summed over every ordered pair of views.
            want = sum(_direct_eq6(z_q[u], z_k[u], banks[u], z_q[v], banks[v], 2, 0.07)
                       for u in range(len(mods)) for v in range(len(mods)) if u != v)
            assert logs["stage"] == 2.0
        assert loss.item() == pytest.approx(want, rel=1e-5)
        for m, k in zip(mods, z_k):  # every bank got this batch's keys at the same rows
            ptr = (int(model.branch(m).queue.ptr) - 4) % 16
            assert torch.allclose(model.branch(m).queue.keys[ptr:ptr + 4], k)


def test_modalities_are_derived_from_the_augmented_joints():
    from skelkit.store.layout import NTU25
    from skelkit.train.modalities import derive

    model = _crossclr()
    seen: dict[str, torch.Tensor] = {}
    for m in model.modalities:
        model.branch(m).encoder_q.register_forward_pre_hook(
            lambda _mod, args, m=m: seen.__setitem__(m, args[0].clone()))
    batch = _batch(seed=5)
    model.training_step(batch, epoch=0)
    for m in model.modalities:
        assert torch.equal(seen[m], derive(batch["q"], m, batch["gamma"], NTU25)), m
    assert not torch.equal(seen["motion"], seen["joint"])


def test_crossclr_config_rejects_bad_values():
    from skelkit.train.methods.crossclr import CrosSCLR

    with pytest.raises(ValueError, match="topk"):
        CrosSCLR.Config.from_dict({"queue_size": 4, "topk": 5})
    with pytest.raises(ValueError, match="modalities"):
        CrosSCLR.Config.from_dict({"modalities": ["joint"]})
    with pytest.raises(ValueError, match="unknown key"):
        CrosSCLR.Config.from_dict({"cross_epoch": 3})


@pytest.mark.parametrize("method", ["crossclr", "ikem", "ikem-student"])
@pytest.mark.parametrize("dataset", ["ntu60", "ntu120", "pku2", "tiny"])
def test_packaged_configs_resolve_to_the_published_settings(method, dataset):
    from skelkit.train.config import resolve_run_config
    from skelkit.train.methods.crossclr import CrosSCLR
    from skelkit.train.methods.ikem import IKEM
    from skelkit.train.methods.ikem_student import IKEMStudent

    cls = {"crossclr": CrosSCLR, "ikem": IKEM, "ikem-student": IKEMStudent}[method]
    overrides = ["model.teacher=runs/teacher"] if method == "ikem-student" else []
    cfg = resolve_run_config(method, cls, f"{method}/{dataset}", overrides)
    # Every config trains the reference; the tiny ones set the three switches that stop learning
    # at their widths to the paper's value (measured, see tiny.yaml), and the student's tiny
    # config its distillation loss (too thin a margin at this size), nothing else.
    assert cfg.model.fidelity == "reference"
    tiny = {"init": "default", "dropout": 0.0, "graph": "layout"}
    if method == "ikem-student":
        tiny["distill_loss"] = "paper"
    assert cfg.model.switches == (tiny if dataset == "tiny" else {})
    behaviour = vars(cfg.model.behaviour())
    if method != "ikem-student":
        assert behaviour["cross_view_loss"] == "reference"
    if dataset == "tiny":
        assert (behaviour["init"], behaviour["dropout"], behaviour["graph"]) == (
            "default", 0.0, "layout")
    assert cfg.model.temperature == 0.07
    assert cfg.data.augment[0] == {"name": "shear", "amplitude": 0.5}
    assert cfg.data.augment[1]["padding_ratio"] == 6
    if dataset == "tiny":
        return
    assert (cfg.optim.lr, cfg.engine.batch_size) == (0.1, 128)
    assert cfg.model.encoder_args == {"channel_multiplier": 0.25}
    if method == "ikem-student":
        assert cfg.engine.epochs == 150 and cfg.model.modalities == ("joint", "motion", "bone")
        assert len(cfg.model.teacher_modalities) == 6
        return
    assert cfg.engine.epochs == 300 and cfg.schedule.milestones == [250]
    assert cfg.model.cross_view_epoch == 150 and cfg.model.topk == 1
    assert len(cfg.model.modalities) == (3 if method == "crossclr" else 6)
    if method == "ikem":
        assert cfg.model.frozen_key_modalities == ("joint", "bone", "axis")



# --- fidelity: reference ------------------------------------------------------------------------

def test_reference_init_draws_query_and_key_independently():
    """The authors' weights_init after the key copy: N(0, 0.02) Conv/Linear, N(1, 0.02) BN
    weights, zero biases, so query and key encoders differ; paper mode keeps exact copies."""
    from torch import nn

    model = _crossclr(fidelity="reference")
    branch = model.branch("joint")
    convs = [m for m in branch.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(m.bias is None or not m.bias.any() for m in convs)
    norms = [m for m in branch.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    gammas = torch.cat([m.weight for m in norms])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.01)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.2)
    assert not any(m.bias.any() for m in norms)
    q, k = branch.encoder_q.blocks[3].gcn.conv.weight, branch.encoder_k.blocks[3].gcn.conv.weight
    assert not torch.equal(q, k)
    paper = _crossclr().branch("joint")
    assert torch.equal(paper.encoder_q.blocks[3].gcn.conv.weight,
                       paper.encoder_k.blocks[3].gcn.conv.weight)


def test_reference_stage_two_is_the_codes_loss_and_freezes_joint_and_bone_keys():
    from skelkit.train.losses.crossview import cross_view_reference

    model = _crossclr(fidelity="reference", cross_view_epoch=1, momentum=0.5,
                      switches={"dropout": 0.0})
    model.eval()  # batch-independent BN, so the recomputation below sees the same encoders
    mods = model.modalities

    def first_key_weight(m):
        return model.branch(m).encoder_k.blocks[0].gcn.conv.weight.clone()

    for epoch in (0, 1):
        before = {m: first_key_weight(m) for m in mods}
        batch = _batch(seed=epoch)
        with torch.no_grad():
            out = model.step(batch, epoch)
            z_q = [model.branch(m).query(model.derive_input(batch["q"], batch["gamma"], m))[0]
                   for m in mods]
        moved = {m for m in mods if not torch.equal(before[m], first_key_weight(m))}
        assert moved == ({"joint", "motion", "bone"} if epoch == 0 else {"motion"})
    views = out.views
    losses, _ = cross_view_reference(z_q, [views.z_k[m] for m in mods],
                                     [views.bank[m] for m in mods], k=1, temperature=0.07)
    assert out.loss.item() == pytest.approx(sum(x.loss.item() for x in losses), rel=1e-5)
    assert out.logs["stage"] == 2.0 and out.cross is not None


def test_switches_override_one_difference_and_encoder_args_cannot():
    model = _crossclr(fidelity="reference", switches={"graph": "layout"})
    from skelkit.store.layout import NTU25
    from skelkit.train.encoders.graph import spatial_partitions

    encoder = model.branch("joint").encoder_q
    assert torch.equal(encoder.adjacency, torch.from_numpy(spatial_partitions(NTU25)))
    assert encoder.blocks[1].tcn[4].p == 0.5  # the other switches keep their reference values
    with pytest.raises(ValueError, match=r"encoder_args\.dropout: set by the fidelity switch"):
        _crossclr(encoder_args={"channel_multiplier": 0.0625, "dropout": 0.3})
    with pytest.raises(ValueError, match="unknown bogus"):
        _crossclr(switches={"bogus": 1})
