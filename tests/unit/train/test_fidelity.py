"""The fidelity switches of CMD (and what I²MD shares of them): presets, per-switch overrides,
older configs, CMD's reference initialisation, and the shared MoCo step's order."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from skelkit.store.layout import NTU25
from skelkit.train.config import ConfigError, resolve_run_config
from skelkit.train.fidelity import REGISTRY
from skelkit.train.methods import CMD, I2MD

SMALL = {"encoder_args": {"hidden_size": 64, "num_layers": 2}, "feature_dim": 16,
         "queue_size": 32, "topk": 8}


def cmd(**values) -> CMD:
    return CMD(CMD.Config.from_dict({**SMALL, **values}), NTU25)


def test_presets_and_overrides() -> None:
    ref = CMD.Config.from_dict({"fidelity": "reference"}).behaviour()
    assert vars(ref) == {"gru_directions": "forward", "pool": "last",
                         "init": "xavier_children", "eval_view": "centre_crop"}
    paper = CMD.Config.from_dict({}).behaviour()
    assert vars(paper) == {"gru_directions": "bidirectional", "pool": "final",
                           "init": "xavier_gru", "eval_view": "resize"}
    mixed = CMD.Config.from_dict({"fidelity": "reference", "switches": {"pool": "mean"}})
    assert mixed.behaviour().pool == "mean" and mixed.behaviour().gru_directions == "forward"
    for bad in ({"switches": {"pool": "max"}}, {"switches": {"nope": 1}},
                {"fidelity": "authors"}, {"encoder_args": {"directions": "forward"}}):
        with pytest.raises(ValueError):
            CMD.Config.from_dict(bad)
    assert vars(I2MD.Config.from_dict({}).behaviour()) == {"eval_view": "resize"}
    assert {"cmd", "i2md"} <= set(REGISTRY)


def test_older_configs_with_encoder_args_pool_still_load() -> None:
    """Run directories written before the switches hold ``encoder_args.pool``."""
    cfg = CMD.Config.from_dict({"encoder_args": {"hidden_size": 8, "num_layers": 1,
                                                 "pool": "mean"}})
    assert cfg.switches == {"pool": "mean"} and "pool" not in cfg.encoder_args
    with pytest.raises(ValueError, match="disagree"):
        CMD.Config.from_dict({"encoder_args": {"pool": "mean"}, "switches": {"pool": "last"}})


def test_switches_reach_the_encoder() -> None:
    ref, paper = cmd(fidelity="reference"), cmd()
    enc_r, enc_p = ref.encoder("joint"), paper.encoder("joint")
    assert (enc_r.directions, enc_r.pool) == ("forward", "last")
    assert (enc_p.directions, enc_p.pool) == ("bidirectional", "final")
    assert ref.state_dict().keys() == paper.state_dict().keys()  # one parameter layout


def _xavier_bound(w: torch.Tensor) -> float:
    return math.sqrt(6.0 / (w.shape[0] + w.shape[1]))


def test_reference_init_is_xavier_on_the_heads_last_linear_only() -> None:
    """moco/builder_cmd.py lines 13-20: Xavier on the GRU and the head's last Linear; the MLP's
    first Linear keeps PyTorch's default (bound 1/sqrt(fan_in)); the key copies the query."""
    torch.manual_seed(0)
    ref = cmd(fidelity="reference", feature_dim=128)
    torch.manual_seed(0)
    paper = cmd(feature_dim=128)
    for method, xavier_last in ((ref, True), (paper, False)):
        branch = method.branch("bone")
        first, last = (m for m in branch.head_q.net if isinstance(m, nn.Linear))
        default_bound = 1.0 / math.sqrt(first.weight.shape[1])
        assert first.weight.abs().max() <= default_bound  # default init in both modes
        bound = _xavier_bound(last.weight) if xavier_last else 1 / math.sqrt(
            last.weight.shape[1])
        # A uniform(-b, b) sample of 16k entries reaches within 1 % of b.
        assert bound * 0.99 < float(last.weight.detach().abs().max()) <= bound
        for p_q, p_k in zip(branch.head_q.parameters(), branch.head_k.parameters(), strict=True):
            assert torch.equal(p_q, p_k)
    assert _xavier_bound(ref.branch("bone").head_q.net[2].weight) > 1.2 / math.sqrt(128)


def test_momentum_update_precedes_the_key_and_the_bank_is_the_old_one() -> None:
    """moco_encode: every key is computed by the already-updated key encoder; the bank each
    loss reads is the queue before this step's enqueue."""
    torch.manual_seed(0)
    method = cmd(fidelity="reference", momentum=0.5).train()
    with torch.no_grad():
        for p in method.branch("joint").encoder_q.parameters():
            p.add_(0.1)
    x = torch.randn(4, 3, 16, 25, 2)
    bank_before = method.branch("joint").queue.keys.clone()
    out = method.moco_encode(x, x, None)
    branch = method.branch("joint")
    for p_q, p_k in zip(branch.encoder_q.parameters(), branch.encoder_k.parameters(), strict=True):
        assert not torch.equal(p_q, p_k)
    # The key came from the updated key encoder: recomputing it now (same BN batch) agrees.
    with torch.no_grad():
        again, _ = branch.key(method.derive_input(x, None, "joint"))
    assert torch.allclose(again, out.z_k["joint"], atol=1e-6)
    assert torch.equal(out.bank["joint"], bank_before)
    method.moco_enqueue(out)
    assert torch.equal(branch.queue.keys[:4], out.z_k["joint"])
    assert int(branch.queue.ptr) == 4


def test_published_and_tiny_configs() -> None:
    tiny = resolve_run_config("cmd", CMD, "cmd/tiny")
    assert tiny.model.fidelity == "reference"
    assert vars(tiny.model.behaviour())["pool"] == "mean"  # measured: see the config
    assert resolve_run_config("cmd", CMD, "cmd/utd-mhad").model.fidelity == "paper"
    with pytest.raises(ConfigError):
        resolve_run_config("cmd", CMD, "cmd/tiny", ["model.switches.pool=max"])


def test_the_readme_lists_every_switch() -> None:
    """Reproducing the papers: one row per CMD switch with its two values."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    for switch in REGISTRY["cmd"].switches.values():
        row = f"| `{switch.name}` | `{switch.reference}` | `{switch.paper}` |"
        assert row in readme, row
