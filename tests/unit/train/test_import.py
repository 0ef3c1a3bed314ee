"""``skeltrain import``: released checkpoints are read as data only (a pickle that would run code
is refused, exit 2, and nothing runs), both checkpoint wrappers load, and a checkpoint that does
not fit the config says which tensor differs."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from skelkit.store.layout import NTU25
from skelkit.train.checkpoint import load_checkpoint
from skelkit.train.cli import main
from skelkit.train.importers import converters, read_reference_checkpoint
from skelkit.train.importers.cmd import REFERENCE_SUFFIX
from skelkit.train.methods import CMD

SMALL = ["--set", "model.topk=4"]


class _CreatesAFile:
    """Unpickling this calls ``open(path, "w")``: a file appears if the loader runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def reference_cmd_state(hidden: int = 4, layers: int = 1, dim: int = 8, queue: int = 16,
                        prefix: str = "module.") -> dict[str, torch.Tensor]:
    """A CMD MoCo state dict under the reference's names, built from our own (reversed names)."""
    cfg = CMD.Config.from_dict({"encoder_args": {"hidden_size": hidden, "num_layers": layers},
                                "feature_dim": dim, "queue_size": queue, "topk": 4})
    ours = CMD(cfg, NTU25).state_dict()
    out = {}
    for name, value in ours.items():
        _, modality, rest = name.split(".", 2)
        sfx = REFERENCE_SUFFIX[modality]
        side = rest.split(".", 1)[0][-1]
        if rest == "queue.keys":
            out[f"{prefix}queue{sfx}"] = value.t().contiguous()
        elif rest == "queue.ptr":
            out[f"{prefix}queue_ptr{sfx}"] = value.reshape(1)
        elif rest.startswith("encoder_"):
            inner = rest.split(".", 1)[1]
            inner = inner.replace("gru.", "encoder.gru.", 1) if inner.startswith("gru.") else inner
            out[f"{prefix}encoder_{side}{sfx}.{inner}"] = value.clone()
        else:  # head_q.net.0.weight -> encoder_q.fc.0.weight
            out[f"{prefix}encoder_{side}{sfx}.fc.{rest.split('.', 2)[2]}"] = value.clone()
    return out


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for kind in ("torch", "plain"):
        path = tmp_path / f"evil-{kind}.pth.tar"
        payload = {"epoch": 1, "state_dict": {"x": torch.zeros(1)}, "hook": _CreatesAFile(marker)}
        if kind == "torch":
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload, protocol=2))
        assert not marker.exists()
        result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path),
                                           "--run-dir", str(tmp_path / f"run-{kind}")])
        assert result.exit_code == 2, result.output
        assert not marker.exists(), "the checkpoint's code ran"
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and "refused" in lines[0] and str(path) in lines[0], lines
        assert not (tmp_path / f"run-{kind}" / "checkpoints").exists()


@pytest.mark.parametrize("wrapped", [True, False])
def test_both_checkpoint_forms_import_and_round_trip(tmp_path: Path, wrapped: bool) -> None:
    """CMD's ``{'epoch', 'state_dict', 'optimizer'}`` with ``module.`` names, and a bare state
    dict without the prefix: every tensor lands at its skelkit name, queues transposed."""
    reference = reference_cmd_state(prefix="module." if wrapped else "")
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"epoch": 7, "arch": "BIGRU", "state_dict": reference,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01}]}}
               if wrapped else reference, path)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path), "--run-dir",
                                       str(run), *SMALL])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["method"] == "cmd" and ckpt["epoch"] == (7 if wrapped else 0)
    assert ckpt["extra"]["imported_from"]["format"] == "cmd"
    assert "imported cmd checkpoint" in (run / "train.log").read_text()
    state = ckpt["model"]
    prefix = "module." if wrapped else ""
    assert torch.equal(state["branches.motion.queue.keys"], reference[f"{prefix}queue_motion"].t())
    assert torch.equal(state["branches.bone.head_k.net.2.weight"],
                       reference[f"{prefix}encoder_k_bone.fc.2.weight"])
    assert torch.equal(state["branches.joint.encoder_q.gru.weight_hh_l0_reverse"],
                       reference[f"{prefix}encoder_q.encoder.gru.weight_hh_l0_reverse"])
    assert len(state) == len(reference)
    config = (run / "config.yaml").read_text()
    assert "fidelity: reference" in config and "hidden_size: 4" in config


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path: Path) -> None:
    reference = reference_cmd_state()
    path = tmp_path / "ckpt.pth"
    torch.save(reference, path)
    # The shapes fix the sizes; a forced width that disagrees is reported, not loaded.
    result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path), "--run-dir",
                                       str(tmp_path / "run"), *SMALL,
                                       "--set", "model.encoder_args.hidden_size=5"])
    assert result.exit_code == 2 and "encoder_q.gru" in result.output, result.output
    del reference["module.queue_bone"]
    torch.save(reference, path)
    result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path), "--run-dir",
                                       str(tmp_path / "run2"), *SMALL])
    assert result.exit_code == 2 and "branches.bone.queue.keys" in result.output, result.output


def test_not_a_state_dict_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(Exception, match="not a state dict"):
        read_reference_checkpoint(path)
    assert "cmd" in converters()


def test_an_imported_run_embeds_on_the_centre_crop_view(tmp_path: Path) -> None:
    """import -> ``skeltrain embed``: the embeddings are the imported encoder's features of CMD's
    downstream view (reference fidelity), computed here by hand from the store's sequences."""
    import numpy as np

    from skelkit.store.embeddings import read_embeddings
    from skelkit.train.augment import cmd_eval_view
    from skelkit.train.data import SkeletonDataset, write_random_walk_store

    store = write_random_walk_store(tmp_path / "rw.zarr", classes=2, per_class=4,
                                    frames=(20, 90))
    path = tmp_path / "ckpt.pth"
    torch.save(reference_cmd_state(), path)
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["import", "--from", "cmd", str(path), "--run-dir",
                                       str(run), *SMALL, "--store", str(store),
                                       "--protocol", "xsub"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "e.h5"
    result = CliRunner().invoke(main, ["embed", "--run", str(run), "--out", str(out),
                                       "--workers", "0", "--no-progress", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    groups, _ = read_embeddings(out)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    cfg = CMD.Config.from_dict({"fidelity": "reference", "feature_dim": 8, "queue_size": 16,
                                "topk": 4, "encoder_args": {"hidden_size": 4, "num_layers": 1}})
    method = CMD(cfg, NTU25)
    method.load_state_dict(ckpt["model"])
    method.eval()
    raw = SkeletonDataset(store, "xsub", "test", kind="sequence", mode="train")
    sequences = [item["q"] for item in raw.__getitems__([(i, 0) for i in range(len(raw))])]
    x = torch.from_numpy(np.stack([cmd_eval_view(s, s.shape[1]) for s in sequences]))
    expected = method.embed(x, torch.ones(len(x)), "joint").numpy()
    assert np.allclose(groups["test"].embedding, expected, atol=1e-5)
