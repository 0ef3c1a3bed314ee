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


def test_needs_a_teacher_names_the_option(tmp_path: Path) -> None:
    from skelkit.train.methods.ikem_student import IKEMStudentConfig

    with pytest.raises(ValueError, match="--teacher RUN_DIR"):
        IKEMStudentConfig().validate()
