"""The Dockerfile's essentials, checked by parsing its text (no Docker engine runs here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    path = ROOT / "Dockerfile"
    assert path.is_file(), "Dockerfile missing at the repository root"
    return _instructions(path.read_text())


def _args(dockerfile, keyword: str) -> list[str]:
    return [rest for kw, rest in dockerfile if kw == keyword]


def _resolve_args(dockerfile, value: str) -> str:
    defaults = dict(arg.split("=", 1) for arg in _args(dockerfile, "ARG") if "=" in arg)
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1), m.group(0)), value)


def test_base_image_is_cuda_pytorch(dockerfile):
    froms = _args(dockerfile, "FROM")
    assert len(froms) == 1
    image = _resolve_args(dockerfile, froms[0].split()[0])
    assert image.startswith("pytorch/pytorch:")
    assert re.search(r"-cuda\d+\.\d+-cudnn\d+-(runtime|devel)$", image), image


def test_runs_as_non_root_user(dockerfile):
    users = _args(dockerfile, "USER")
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any("useradd" in run and users[-1] in run for run in _args(dockerfile, "RUN"))


def test_numba_cache_dir_is_set_and_writable(dockerfile):
    env = " ".join(_args(dockerfile, "ENV"))
    match = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert match, "NUMBA_CACHE_DIR not set"
    cache = match.group(1)
    user = _args(dockerfile, "USER")[-1]
    # Created and handed to the runtime user before the switch.
    assert any(
        "mkdir" in run and cache in run and "chown" in run and f"{user}:" in run
        for run in _args(dockerfile, "RUN")
    )


def test_installs_the_project_like_the_install_script(dockerfile):
    runs = " ".join(_args(dockerfile, "RUN"))
    match = re.search(r"pip install (-e|--editable) (\"?\.(\[\w+\])?\"?)", runs)
    assert match, "no editable pip install of the project"
    script = (ROOT / "scripts" / "install.sh").read_text()
    extras = match.group(2).strip('"')
    assert f'-e "{extras}"' in script or f"-e {extras}" in script, (
        f"Dockerfile installs {extras!r}, scripts/install.sh does not"
    )
    copies = " ".join(_args(dockerfile, "COPY"))
    for needed in ("pyproject.toml", "README.md", "skelkit"):
        assert needed in copies


def test_entry_points_are_reachable(dockerfile):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == {"skelprep", "skeltrain", "skeleval"}
    user = _args(dockerfile, "USER")[-1]
    # The --help check runs after the switch to the non-root user.
    after_user = dockerfile[dockerfile.index(("USER", user)):]
    checks = " ".join(rest for kw, rest in after_user if kw == "RUN")
    for name in scripts:
        assert f"{name} --help" in checks


def test_workdir_and_data_volume(dockerfile):
    assert _args(dockerfile, "WORKDIR")
    volumes = " ".join(_args(dockerfile, "VOLUME"))
    assert "/data" in volumes


def test_dockerignore_keeps_environments_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "*.zarr", "runs"):
        assert entry in ignored
