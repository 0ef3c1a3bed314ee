"""The three commands answer ``--help`` and usage errors without importing the heavy libraries.

torch alone takes ~4 s to import here, numba/zarr/dask about a second; a user who mistyped an
option should not wait for them. A wall-time bound would be flaky on a loaded machine, so each
case runs in a fresh interpreter and the check is what it imported (``sys.modules`` at exit).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numba", "zarr", "dask", "pandas", "scipy", "sklearn", "h5py")
COMMANDS = {"skeltrain": "skelkit.train.cli", "skeleval": "skelkit.eval.cli",
            "skelprep": "skelkit.prep.cli"}
WRAPPER = """
import atexit, sys
heavy = {heavy!r}
atexit.register(lambda: print("HEAVY:", *sorted({{m.split(".")[0] for m in sys.modules}}
                                                  & set(heavy)), file=sys.stderr))
from {module} import main
main({args!r}, prog_name={prog!r})
"""


def run_cli(prog: str, *args: str) -> tuple[int, str, list[str]]:
    """Exit code, stderr without the report line, and the heavy top-level packages imported."""
    code = WRAPPER.format(heavy=HEAVY, module=COMMANDS[prog], args=list(args), prog=prog)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    lines = proc.stderr.splitlines()
    report = [line for line in lines if line.startswith("HEAVY:")]
    assert report, proc.stderr
    rest = "\n".join(line for line in lines if not line.startswith("HEAVY:"))
    return proc.returncode, rest, report[-1].split()[1:]


@pytest.mark.parametrize("prog", sorted(COMMANDS))
def test_help_imports_nothing_heavy(prog: str) -> None:
    code, _, heavy = run_cli(prog, "--help")
    assert code == 0 and heavy == []


@pytest.mark.parametrize("prog, args, message", [
    ("skeltrain", ["run", "nosuch"], "unknown method 'nosuch'; known: cmd,"),
    ("skeltrain", ["run", "cmd"], "no --config and no --store"),
    ("skeltrain", ["run", "cmd", "--store", "/nonexistent.zarr"], "no such store"),
    ("skeltrain", ["run", "cmd", "--config", "tiny", "--store", "/nonexistent.zarr"],
     "no such store"),
    ("skeltrain", ["run", "cmd", "--resume", "/nonexistent"], "no such run directory"),
    ("skeltrain", ["run", "cmd", "--bogus"], "No such option"),
    ("skeltrain", ["run", "cmd", "--device", "tpu"], "Invalid value for '--device'"),
    ("skeltrain", ["switches", "nosuch"], "unknown method 'nosuch'"),
    ("skeltrain", ["embed", "--run", "/nonexistent", "--out", "x.h5"], "no such run directory"),
    ("skeltrain", ["import", "--from", "cmd", "/nonexistent.pt", "--run-dir", "/tmp/x"],
     "no such checkpoint"),
    ("skeleval", ["knn", "--k", "0"], "Invalid value for '--k'"),
    ("skeleval", ["report", "/nonexistent"], "no such run directory"),
    ("skeleval", ["knn"], "give exactly one feature source"),
    ("skeleval", ["linear"], "give exactly one feature source"),
    ("skeleval", ["knn", "--emb", "x.h5", "--run", "y"], "give exactly one feature source"),
    ("skeleval", ["linear", "--raw"], "--raw needs --store and --protocol"),
    ("skelprep", ["build", "--dataset", "ntu60"], "Missing option '--raw'"),
    ("skelprep", ["info", "/nonexistent.zarr"], "no such store"),
    ("skelprep", ["verify", "/nonexistent.zarr"], "no such store"),
])
def test_usage_errors_import_nothing_heavy(prog: str, args: list[str], message: str) -> None:
    code, stderr, heavy = run_cli(prog, *args)
    assert code == 2 and message in stderr and len(stderr.splitlines()) == 1, stderr
    assert heavy == [], (args, heavy)


def test_known_methods_are_the_registry() -> None:
    """The light method-name check names exactly the methods the registry builds."""
    from skelkit.train.cli import known_methods
    from skelkit.train.methods import METHODS

    assert known_methods() == sorted(METHODS)
