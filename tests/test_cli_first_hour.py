"""Issue 17, items 1-10: what a new user meets in the first hour with the three commands.

Each test runs a command the way a user would (click's runner, or a fresh interpreter where the
exit code of the real entry point matters) and checks the exit code and the one line it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from skelkit import __version__
from skelkit.eval.cli import main as skeleval
from skelkit.prep.cli import main as skelprep
from skelkit.train.cli import known_methods
from skelkit.train.cli import main as skeltrain

COMMANDS = {"skelprep": skelprep, "skeltrain": skeltrain, "skeleval": skeleval}


def invoke(prog: str, *args: str) -> tuple[int, str]:
    """Exit code and stdout+stderr of ``prog args`` through the real ``main`` (its one-line error
    convention included: ``SkelkitGroup.main`` exits with ``sys.exit``)."""
    result = CliRunner().invoke(COMMANDS[prog], list(args), prog_name=prog)
    return result.exit_code, result.output


# --- item 9: one convention for the three commands --------------------------------------------

@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_version_on_all_three(prog: str) -> None:
    code, out = invoke(prog, "--version")
    assert code == 0 and out.strip() == f"{prog}, version {__version__}"


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_short_help_on_all_three(prog: str) -> None:
    code, out = invoke(prog, "-h")
    assert code == 0 and out.startswith(f"Usage: {prog} ")


def test_run_help_lists_methods_and_defaults() -> None:
    code, out = invoke("skeltrain", "run", "--help")
    assert code == 0
    assert f"METHOD: {', '.join(known_methods())}." in " ".join(out.split())
    flat = " ".join(out.split())
    for option, default in [("--epochs", "engine.epochs"), ("--batch-size", "engine.batch_size"),
                            ("--device", "engine.device, auto"), ("--seed", "engine.seed"),
                            ("--run-dir", "runs/METHOD")]:
        assert re.search(re.escape(option) + r" .*?\[default: [^]]*" + re.escape(default), flat), \
            option


@pytest.mark.parametrize("prog, args", [
    ("skeltrain", ["run", "cmd", "--config", "tiny", "--store", "/nonexistent.zarr"]),
    ("skeltrain", ["embed", "--run", "/nonexistent", "--out", "x.h5"]),
    ("skeleval", ["knn", "--emb", "/nonexistent.h5"]),
])
def test_device_cuda_index_accepted_by_both(prog: str, args: list[str]) -> None:
    """``--device cuda:1`` passes the option check of skeltrain and skeleval alike (the error
    that follows is the missing input, or on a machine without CUDA that CUDA is missing); a
    misspelling is refused by both as a usage error."""
    code, out = invoke(prog, *args, "--device", "cuda:1")
    assert code == 2 and "Invalid value" not in out, out
    code, out = invoke(prog, *args, "--device", "cuda1")
    assert code == 2 and "Invalid value for '--device'" in out and len(out.splitlines()) == 1


@pytest.mark.parametrize("prog, args", [
    ("skelprep", ["verify", "{folder}"]),
    ("skelprep", ["info", "{folder}"]),
    ("skelprep", ["build", "--dataset", "ntu90", "--raw", "{folder}", "--out", "{folder}/s"]),
    ("skeltrain", ["run", "nosuch"]),
    ("skeltrain", ["embed", "--run", "{folder}", "--out", "x.h5"]),
    ("skeleval", ["knn", "--emb", "{folder}/missing.h5"]),
])
def test_one_error_prefix_and_exit_2(tmp_path: Path, prog: str, args: list[str]) -> None:
    """Already so on main (the renovation): `<prog> <command>: error: ...`, one line, exit 2,
    verify on a folder that is not a store included."""
    code, out = invoke(prog, *[a.format(folder=tmp_path) for a in args])
    assert code == 2 and len(out.splitlines()) == 1, out
    assert out.startswith(f"{prog} {args[0]}: error: "), out


def test_needs_a_teacher_names_the_option(tmp_path: Path) -> None:
    from skelkit.train.methods.ikem_student import IKEMStudentConfig

    with pytest.raises(ValueError, match="--teacher RUN_DIR"):
        IKEMStudentConfig().validate()


# --- item 1: embed --out never replaces a foreign file -----------------------------------------

def _fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: cmd\n", encoding="utf-8")
    return run


@pytest.mark.parametrize("content", [b"my notes\n", b"", b"\x89PNG\r\n\x1a\n...."])
def test_embed_refuses_to_replace_a_non_hdf5_file(tmp_path: Path, content: bytes) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    code, out = invoke("skeltrain", "embed", "--run", str(_fake_run(tmp_path)), "--out",
                       str(notes))
    assert code == 2 and len(out.splitlines()) == 1, out
    assert out.startswith("skeltrain embed: error: --out") and "refusing to replace" in out
    assert notes.read_bytes() == content


def test_embed_refuses_a_directory(tmp_path: Path) -> None:
    code, out = invoke("skeltrain", "embed", "--run", str(_fake_run(tmp_path)), "--out",
                       str(tmp_path))
    assert code == 2 and "a directory" in out


def test_embed_out_replaces_only_embedding_files(tmp_path: Path) -> None:
    """An HDF5 file without the train/test groups is someone else's data; a file written by
    ``write_embeddings`` may be replaced (re-running embed is the normal case)."""
    import h5py
    import numpy as np

    from skelkit.store.embeddings import EmbeddingGroup, write_embeddings
    from skelkit.train.embed import refuse_foreign_out
    from skelkit.train.runs import TrainInputError

    foreign = tmp_path / "other.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(TrainInputError, match="refusing to replace"):
        refuse_foreign_out(foreign)
    group = EmbeddingGroup(np.ones((2, 4), np.float32), np.array([0, 1]), np.array(["a", "b"]))
    ours = tmp_path / "emb.h5"
    write_embeddings(ours, {"train": group, "test": group}, {"method": "cmd"})
    refuse_foreign_out(ours)  # no error
    refuse_foreign_out(tmp_path / "new.h5")


# --- item 2: a figure's --out extension is checked before any work ----------------------------

@pytest.mark.parametrize("args", [["tsne", "--emb", "{emb}"], ["curves", "--run", "{run}"]])
@pytest.mark.parametrize("name", ["x.txt", "x"])
def test_figure_out_unsupported_extension(tmp_path: Path, args: list[str], name: str) -> None:
    """One line, exit 2, and before the input is even read: the inputs here do not exist, so a
    command that did any work first would complain about them instead."""
    args = [a.format(emb=tmp_path / "missing.h5", run=tmp_path / "missing-run") for a in args]
    code, out = invoke("skeleval", *args, "--out", str(tmp_path / name))
    assert code == 2 and len(out.splitlines()) == 1, out
    assert out.startswith(f"skeleval {args[0]}: error: --out") and ".png" in out
    assert not (tmp_path / name).exists()


def test_figure_formats_are_ones_matplotlib_writes() -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    from skelkit.eval.cli import FIGURE_FORMATS

    assert set(FIGURE_FORMATS) <= set(FigureCanvasBase.get_supported_filetypes())


# --- item 3: build --out on an existing folder that is not a store: advice that works ---------

@pytest.mark.parametrize("flag", [[], ["--resume"], ["--overwrite"]])
def test_build_into_a_foreign_folder_gives_working_advice(tmp_path: Path,
                                                          flag: list[str]) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("keep me", encoding="utf-8")
    code, out = invoke("skelprep", "build", "--dataset", "ntu60", "--raw", str(tmp_path / "raw"),
                       "--out", str(folder), *flag)
    assert code == 2 and len(out.splitlines()) == 1, out
    assert "not a skelkit store" in out and "pick a new --out" in out
    # The advice names neither option that would refuse too.
    assert "--resume" not in out and "--overwrite" not in out
    assert [p.name for p in folder.iterdir()] == ["a.txt"]


@pytest.mark.parametrize("flag, advice", [([], "--overwrite builds into it"),
                                          (["--resume"], "drop --resume")])
def test_build_into_an_empty_folder_says_how(tmp_path: Path, flag: list[str],
                                             advice: str) -> None:
    code, out = invoke("skelprep", "build", "--dataset", "ntu60", "--raw", str(tmp_path / "raw"),
                       "--out", str(tmp_path), *flag)
    assert code == 2 and advice in out, out


# --- item 6: synth lists what it makes and does not mix old and new files --------------------

def test_synth_help_lists_only_what_synth_makes() -> None:
    from skelkit.prep.cli import SYNTH_DATASETS
    from skelkit.synth.plan import SPECS

    assert list(SYNTH_DATASETS) == list(SPECS)
    code, out = invoke("skelprep", "synth", "--help")
    assert code == 0 and "[ntu60|ntu120|pku2]" in out
    assert "utd-mhad" not in out and "generic" not in out
    code, out = invoke("skelprep", "synth", "--dataset", "utd-mhad", "--out", "x")
    assert code == 2 and "Invalid value for '--dataset'" in out and len(out.splitlines()) == 1


def _synth(out: Path, *extra: str) -> tuple[int, str]:
    return invoke("skelprep", "synth", "--dataset", "ntu60", "--out", str(out), "--classes", "1",
                  "--performers", "1", *extra)


def test_synth_into_a_non_empty_folder(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    assert _synth(raw)[0] == 0
    first = sorted(p.name for p in raw.iterdir())
    stale = raw / "S099C001P001R001A001.skeleton"  # an old file the new set would not rewrite
    stale.write_text("old", encoding="utf-8")
    code, out = _synth(raw, "--seed", "1")
    assert code == 2 and "not empty" in out and "--overwrite" in out, out
    assert stale.exists()
    code, out = _synth(raw, "--seed", "1", "--overwrite")
    assert code == 0, out
    assert sorted(p.name for p in raw.iterdir()) == first  # the stale file is gone


def test_synth_overwrite_never_empties_a_folder_of_other_files(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("keep me", encoding="utf-8")
    code, out = _synth(tmp_path, "--overwrite")
    assert code == 2 and "thesis.tex" in out and "refusing" in out, out
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]


# --- item 4: Ctrl-C during training ------------------------------------------------------------

@pytest.fixture(scope="module")
def walk_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skelkit.train.data import write_random_walk_store

    return write_random_walk_store(tmp_path_factory.mktemp("walk") / "walk.zarr", classes=2,
                                   per_class=8, modalities=("joint", "motion", "bone"))


def _train_args(store: Path, run: Path, *extra: str) -> list[str]:
    return ["run", "skeletonclr", "--config", "tiny", "--store", str(store), "--protocol",
            "xsub", "--batch-size", "4", "--device", "cpu", "--workers", "0", "--no-progress",
            "--run-dir", str(run), "--set", "engine.knn_every=0", *extra]


def test_ctrl_c_says_what_is_saved_and_how_to_resume(walk_store: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C in epoch 2 (simulated where the real one lands: inside the epoch's loop): exit
    130, one line naming the saved epoch and the exact --resume command, the same line in
    train.log; and that command then finishes the run."""
    import skelkit.train.engine as engine

    real_epoch = engine._train_epoch
    calls = []

    def interrupted_in_epoch_2(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "_train_epoch", interrupted_in_epoch_2)
    run = tmp_path / "run"
    args = [a for a in _train_args(walk_store, run, "--epochs", "2") if a != "--no-progress"]
    code, out = invoke("skeltrain", *args)
    last = run / "checkpoints" / "last.pt"
    expected = (f"interrupted in epoch 2; epoch 1 is saved in {last}; continue with: "
                f"skeltrain run skeletonclr --resume {run}")
    assert code == 130, out
    assert f"skeltrain run: {expected}" in out.splitlines(), out
    assert expected in (run / "train.log").read_text(encoding="utf-8")
    # Item 5: epoch 1's line stayed in the terminal (bars on), with the loss metrics.csv holds.
    import csv

    [row] = list(csv.DictReader((run / "metrics.csv").open(encoding="utf-8")))
    summary = [line.strip() for line in out.splitlines() if "(epoch mean)" in line]
    assert summary == [f"epoch 1/2: loss {float(row['loss']):.4f} (epoch mean), "
                       f"{float(row['seconds']):.1f} s"], out

    monkeypatch.setattr(engine, "_train_epoch", real_epoch)
    code, out = invoke("skeltrain", "run", "skeletonclr", "--resume", str(run), "--no-progress",
                       "--device", "cpu", "--workers", "0")
    assert code == 0, out
    assert "2 epochs" in out


# --- item 7: runs that never reach stage two say so -------------------------------------------

def _resolved(method: str, *overrides: str) -> object:
    from skelkit.train.config import resolve_run_config
    from skelkit.train.runs import method_class

    return resolve_run_config(method, method_class(method), "tiny", list(overrides))


STAGE_TWO = "stage two (cross-view mining) is never reached"


@pytest.mark.parametrize("method", ["crossclr", "ikem"])
def test_run_shorter_than_cross_view_epoch_warns(method: str) -> None:
    from skelkit.train.cli import _stage_two_warnings

    [line] = _stage_two_warnings(_resolved(method, "engine.epochs=10",
                                           "model.cross_view_epoch=10"))
    assert line.startswith("the run ends after 10 epochs, before model.cross_view_epoch 10: "
                           f"{STAGE_TWO}")
    [line] = _stage_two_warnings(_resolved(method, "engine.epochs=1"))
    assert line.startswith("the run ends after 1 epoch, before")
    assert _stage_two_warnings(_resolved(method, "engine.epochs=11",
                                         "model.cross_view_epoch=10")) == []
    # --epochs 0 is the random-init baseline, not a short run.
    assert _stage_two_warnings(_resolved(method, "engine.epochs=0")) == []


def _fake_teacher(folder: Path, epochs: int, cross_view_epoch: int) -> Path:
    """A run directory with an ikem config and a checkpoint of ``epochs`` completed epochs (no
    weights: the warning is decided before the teacher is loaded)."""
    from skelkit.train.checkpoint import save_checkpoint

    folder.mkdir()
    text = f"method: ikem\nmodel:\n  cross_view_epoch: {cross_view_epoch}\n"
    (folder / "config.yaml").write_text(text, encoding="utf-8")
    save_checkpoint(folder / "checkpoints" / "last.pt", method="ikem", epoch=epochs, model={},
                    optimizer=None, scheduler=None, scaler=None, config_text=text)
    return folder


def test_student_of_a_teacher_without_stage_two_warns(tmp_path: Path) -> None:
    from skelkit.train.cli import _stage_two_warnings

    short = _fake_teacher(tmp_path / "short", epochs=5, cross_view_epoch=10)
    done = _fake_teacher(tmp_path / "done", epochs=11, cross_view_epoch=10)
    [line] = _stage_two_warnings(_resolved("ikem-student", f"model.teacher={short}"))
    assert line == (f"--teacher {short}: trained 5 epochs, never reaching its stage two "
                    "(model.cross_view_epoch 10); the student distils stage-one encoders")
    assert _stage_two_warnings(_resolved("ikem-student", f"model.teacher={done}")) == []


def test_run_prints_the_warning_before_training(walk_store: Path, tmp_path: Path) -> None:
    """Through the command: the warning comes first (the weightless fake teacher is then
    refused by the teacher's own check, which keeps this test from training anything)."""
    short = _fake_teacher(tmp_path / "short", epochs=5, cross_view_epoch=10)
    args = _train_args(walk_store, tmp_path / "student", "--epochs", "0", "--teacher", str(short))
    args[1] = "ikem-student"
    code, out = invoke("skeltrain", *args)
    lines = out.splitlines()
    assert code == 2 and "teacher" in lines[-1], out
    assert lines[0].startswith(f"skeltrain run: warning: --teacher {short}: trained 5 epochs"), out


# --- item 10: the small things a user notices --------------------------------------------------

def test_counts_read_as_english() -> None:
    from skelkit.cli_options import plural

    assert [plural(1, "epoch"), plural(2, "epoch"), plural(0, "epoch")] == \
        ["1 epoch", "2 epochs", "0 epochs"]
    assert [plural(1, "class"), plural(4, "class")] == ["1 class", "4 classes"]


def _info(per_class: tuple[int, int], reasons: dict[str, int]) -> dict[str, object]:
    return {"path": "s.zarr", "complete": True, "dataset": "ntu60", "format": "skelstore",
            "version": 1, "created_by": "skelkit", "layout": {"name": "ntu25", "num_joints": 25},
            "max_bodies": 2, "frames": 50, "num_samples": 96, "classes_present": 4,
            "classes_label_space": 60,
            "samples_per_class": {"min": per_class[0], "max": per_class[1]}, "splits": {},
            "modalities": {}, "raw": {"shape": [9, 3, 25, 2]}, "size_on_disk_bytes": 1e6,
            "report": {"samples_written": 96, "samples_skipped": sum(reasons.values()),
                       "skipped_by_reason": reasons, "seconds": 1.0, "scheduler": "local"}}


def test_info_text_no_empty_braces_nor_equal_range() -> None:
    from skelkit.prep.info import format_info

    text = format_info(_info((24, 24), {}))
    assert "samples    96 in 4 of 60 classes (24 per class)" in text
    assert "build      96 written, 0 skipped, 1.0 s, local" in text and "{}" not in text
    text = format_info(_info((20, 24), {"duplicate": 2, "error": 1}))
    assert "(20-24 per class)" in text and "3 skipped (duplicate 2, error 1)," in text


def test_info_json_counts_present_and_label_space_apart(walk_store: Path) -> None:
    """A store holding some of a dataset's classes: both counts, each named. The random-walk
    store's dataset has no known label space: it is the largest label + 1, and says so."""
    from skelkit.prep.info import LABEL_SPACE, label_space, store_info
    from skelkit.synth.plan import SPECS

    info = store_info(walk_store)
    assert "num_classes" not in info
    assert info["classes_present"] == 2
    assert (info["classes_label_space"], info["classes_label_space_from"]) == \
        (2, "largest label + 1")
    import numpy as np

    assert label_space("ntu60", np.array([0, 57])) == (60, "dataset")
    for name, spec in SPECS.items():  # the generator's numbers of actions agree
        assert LABEL_SPACE[name] == spec.num_actions


def test_report_csv_std_empty_for_one_repeat() -> None:
    from skelkit.eval.report import KINDS, ReportRow, csv_table

    one = ReportRow("cmd", "joint", "ntu60", "xsub", "1", ("0",),
                    {kind: [0.5] for kind in KINDS})
    two = ReportRow("cmd", "joint", "ntu60", "xsub", "1", ("0", "1"),
                    {kind: [0.5, 0.7] for kind in KINDS})
    header, row_one, row_two = [line.split(",") for line in csv_table([one, two]).splitlines()]
    std = header.index(f"{KINDS[0]}_top1_std")
    assert row_one[std] == "" and row_one[std - 1] == "50.00"
    assert row_two[std] == "14.14"


def test_one_epoch_curve_gets_a_unit_x_axis(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import skelkit.eval.plots as plots

    (tmp_path / "metrics.csv").write_text("epoch,lr,loss,knn_top1\n1,0.1,5.0,0.4\n",
                                          encoding="utf-8")
    saved = []
    monkeypatch.setattr(plots, "_save", lambda fig, out: saved.append(fig))
    plots.plot_curves(tmp_path, tmp_path / "c.png")
    for ax in saved[0].axes:
        assert ax.get_xlim() == pytest.approx((0.5, 1.5)), ax.get_title()


# --- item 8: cmd --config tiny on a Kinect v1 (20-joint) store --------------------------------

@pytest.mark.parametrize("method", ["cmd", "i2md"])
def test_tiny_bone_tree_follows_a_non_ntu_layout(method: str) -> None:
    from skelkit.store.layout import KINECT20, NTU25
    from skelkit.train.methods.cmd import cmd_bone_parents
    from skelkit.train.runs import method_class

    cfg = _resolved(method)
    assert cfg.model.bone_tree == "auto"
    cls = method_class(method)
    on_kinect = cls(cfg.model, KINECT20)
    assert on_kinect.bone_parents == KINECT20.parents
    on_ntu = cls(cfg.model, NTU25)  # the published tree where it exists
    assert on_ntu.bone_parents == cmd_bone_parents(NTU25) != NTU25.parents
    with pytest.raises(ValueError, match="bone_tree 'cmd' is CMD's NTU-25 tree"):
        cls(_resolved(method, "model.bone_tree=cmd").model, KINECT20)


def test_cmd_tiny_runs_on_a_kinect20_store(tmp_path: Path) -> None:
    from skelkit.store.layout import KINECT20
    from skelkit.train.data import write_random_walk_store

    store = write_random_walk_store(tmp_path / "k20.zarr", classes=2, per_class=8,
                                    layout=KINECT20, modalities=("joint", "motion", "bone"))
    args = _train_args(store, tmp_path / "run", "--epochs", "0")
    args[1] = "cmd"
    code, out = invoke("skeltrain", *args)
    assert code == 0 and "run " in out, out


# --- item 5: progress ----------------------------------------------------------------------------

def test_loss_shown_is_the_running_mean() -> None:
    """The bar's loss is the mean over the epoch's steps so far: it starts at the first step's
    loss, not near 0 (a sum divided by the epoch's length would climb from there)."""
    import torch

    from skelkit.train.steplog import StepLog

    log = StepLog(torch.device("cpu"))
    log.add(torch.tensor(6.0), {})
    assert log.read().means["loss"] == pytest.approx(6.0)
    log.add(torch.tensor(4.0), {})
    assert log.read().means["loss"] == pytest.approx(5.0)


def test_epoch_summary_line() -> None:
    from skelkit.train.engine import epoch_summary

    row = {"epoch": 5, "loss": 4.25, "knn_top1": 0.4166, "seconds": 3.21}
    assert epoch_summary(row, 25) == "epoch 5/25: loss 4.2500 (epoch mean), knn top-1 41.7 %, 3.2 s"
    assert epoch_summary({**row, "knn_top1": None}, 25) == \
        "epoch 5/25: loss 4.2500 (epoch mean), 3.2 s"


def test_build_says_when_the_kernels_compile(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty numba cache: a line before the bar sits still; a filled one: no line. (The
    build then stops on the missing raw folder, which keeps the test from building.)"""
    cache = tmp_path / "numba-cache"
    cache.mkdir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(cache))
    args = ["build", "--dataset", "ntu60", "--raw", str(tmp_path / "raw"), "--out",
            str(tmp_path / "s.zarr"), "--workers", "1"]
    code, out = invoke("skelprep", *args)
    assert out.splitlines()[0].startswith("skelprep build: compiling the numba kernels on first "
                                          "use"), out
    (cache / "kernels_0").mkdir()
    (cache / "kernels_0" / "normalize._body_empty-27.py311.nbi").write_bytes(b"")
    code, out = invoke("skelprep", *args)
    assert "compiling" not in out and code == 2, out
