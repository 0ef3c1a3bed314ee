"""``skeltrain import --from cmd`` on checkpoints assembled from the goldens' reference-named
weights: the imported run's features are the golden's expected features, and one training step
of the imported run is the golden step (so every encoder, head, queue and pointer landed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner

from skelkit.store.layout import Layout
from skelkit.train.checkpoint import load_checkpoint
from skelkit.train.cli import main
from skelkit.train.runs import load_run_config, method_class
from tests.golden.load import assert_forward, load_golden, section
from tests.golden.test_cmd_step import reference_state


def imported_method(run: Path) -> torch.nn.Module:
    """The method of an imported run directory, as ``skeltrain embed`` builds it (the layout
    comes from the checkpoint: these runs name no store)."""
    cfg = load_run_config(run)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    method = method_class(cfg.method)(cfg.model, Layout.from_attrs(ckpt["extra"]["layout"]))
    method.load_state_dict(ckpt["model"])
    return method


def run_import(path: Path, run: Path, *extra: str) -> None:
    result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path), "--run-dir",
                                       str(run), *extra])
    assert result.exit_code == 0, result.output


def test_imported_features_are_the_golden_features(tmp_path: Path) -> None:
    """cmd_bigru's encoder (3 layers, head without MLP) as every encoder of a CMD checkpoint:
    the imported run's eval-mode joint embedding is expect/eval/feature."""
    golden = load_golden("cmd_bigru")
    encoder = {k[len("encoder_q."):]: torch.from_numpy(v)
               for k, v in section(golden, "weights").items()}
    state: dict[str, torch.Tensor] = {}
    for sfx in ("", "_motion", "_bone"):
        for side in "qk":
            state.update({f"module.encoder_{side}{sfx}.{k}": v.clone() for k, v in encoder.items()})
        state[f"module.queue{sfx}"] = torch.nn.functional.normalize(torch.randn(8, 16), dim=0)
        state[f"module.queue_ptr{sfx}"] = torch.zeros(1, dtype=torch.long)
    path = tmp_path / "checkpoint_0400.pth.tar"
    torch.save({"epoch": 400, "arch": "BIGRU", "state_dict": state}, path)
    run = tmp_path / "run"
    run_import(path, run, "--set", "model.topk=8")
    method = imported_method(run).eval()
    assert method.cfg.encoder_args == {"hidden_size": 16, "num_layers": 3}
    assert (method.cfg.feature_dim, method.cfg.mlp) == (8, False)
    x = torch.from_numpy(golden["input/x"])
    diff = assert_forward(method.embed(x, torch.ones(len(x)), "joint"),
                          golden["expect/eval/feature"], "imported feature")
    print(f"\nimported run, joint feature max|diff| {diff:.1e}")


def test_imported_run_takes_the_golden_step(tmp_path: Path) -> None:
    golden = load_golden("cmd_step")
    state = {f"module.{k}": v for k, v in reference_state(golden).items()}
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 3, "state_dict": state}, path)
    run = tmp_path / "run"
    run_import(path, run, "--set", "model.topk=8")
    method = imported_method(run).train()
    q, k = (torch.from_numpy(golden[f"input/{v}"]) for v in ("view1", "view2"))
    loss, _ = method.training_step({"q": q, "k": k, "gamma": torch.ones(len(q))}, 0)
    diff = assert_forward(loss, golden["expect/loss/total"], "total loss")
    after = {k: v for k, v in section(golden, "expect/after").items() if k.startswith("queue")}
    assert np.allclose(method.branch("bone").queue.keys.t().numpy(), after["queue_bone"],
                       atol=1e-5)
    print(f"\nimported run, golden step total loss max|diff| {diff:.1e}")
