"""Prints the torch version pinned in pyproject.toml: the one place the pin lives.

scripts/install.sh, scripts/lock.sh, scripts/docker_check.sh and the Dockerfile (through
install.sh) read it from here, so bare-metal runs, the lock and the image cannot drift apart.
Standard library only: it runs before any virtual environment exists.
"""

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def torch_pin(pyproject: Path = PYPROJECT) -> str:
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = [m.group(1) for dep in dependencies if (m := re.fullmatch(r"torch\s*==\s*([\w.]+)", dep.strip()))]
    if len(pins) != 1:
        raise SystemExit(f"{pyproject}: expected exactly one 'torch==X.Y.Z' dependency, found {dependencies}")
    return pins[0]


if __name__ == "__main__":
    sys.stdout.write(torch_pin(Path(sys.argv[1]) if len(sys.argv) > 1 else PYPROJECT) + "\n")
