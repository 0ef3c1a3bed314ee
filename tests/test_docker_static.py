"""The Dockerfile, the dependency locks, the installer and the README's docker commands agree.

Static: parses text, runs no Docker engine (the image itself is checked by scripts/docker_check.sh).
Each check below fails if the corresponding promise of issue 17 is broken: the image installs what
the locks say, the torch pin lives in one place, sources come after the dependency layer, the
runtime target carries no dev extras or tests, kernels are compiled at build time, any uid can run
the image, and every documented `docker run` works with a locally built image.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCKS = {"none": "requirements.lock", "dev": "requirements-dev.lock"}
# What the dependency layer may see: anything else copied before it would make every source edit
# reinstall all dependencies.
DEPENDENCY_INPUTS = {"pyproject.toml", "requirements.lock", "requirements-dev.lock",
                     "scripts/install.sh", "scripts/torch_pin.py"}


# ---- Dockerfile parsing ------------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    parent: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, line continuations joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("#")]
    joined = re.sub(r"\\\s*\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    current = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(found)}"
            current = found[name] = Stage(name, words[0])
        elif current is not None:
            current.instructions.append((keyword, rest))
    return found


def chain(all_stages: dict[str, Stage], target: str) -> list[tuple[str, str]]:
    """The instructions that build `target`, its ancestors' first."""
    stage = all_stages[target]
    inherited = chain(all_stages, stage.parent) if stage.parent in all_stages else []
    return inherited + stage.instructions


def installer_env(run: str) -> dict[str, str] | None:
    """The VAR=value settings of a RUN that calls scripts/install.sh (None when it does not)."""
    match = re.search(r"((?:\w+=\S*\s+)*)bash scripts/install\.sh", run)
    return dict(pair.split("=", 1) for pair in match.group(1).split()) if match else None


def copy_sources(rest: str) -> list[str]:
    words = [w for w in shlex.split(rest) if not w.startswith("--")]
    return words[:-1]


def dependency_layer_violations(steps: list[tuple[str, str]], extras: str) -> list[str]:
    """COPY sources that arrive before the dependencies for `extras` are installed."""
    problems = []
    installed = False
    for keyword, rest in steps:
        if keyword == "RUN" and (env := installer_env(rest)) is not None:
            if env.get("SKELKIT_DEPS_ONLY") == "1" and env.get("SKELKIT_EXTRAS", "dev") == extras:
                installed = True
        if keyword in ("COPY", "ADD") and not installed:
            problems += [src for src in copy_sources(rest) if src.rstrip("/") not in DEPENDENCY_INPUTS]
    return problems


@pytest.fixture(scope="module")
def dockerfile_text() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def docker_stages(dockerfile_text) -> dict[str, Stage]:
    return stages(dockerfile_text)


# ---- the locks -----------------------------------------------------------------------------

def lock_entries(name: str) -> dict[str, tuple[str, list[str]]]:
    """{package: (version, [sha256 hashes])} of a compiled lock."""
    text = re.sub(r"\\\s*\n\s*", " ", (ROOT / name).read_text())
    entries = {}
    for line in text.splitlines():
        if line and not line.startswith((" ", "#", "-")):
            requirement, *options = line.split()
            package, version = requirement.split("==")
            entries[package.lower()] = (version, [o.split(":", 1)[1] for o in options if o.startswith("--hash=sha256:")])
    return entries


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def torch_pin() -> str:
    pins = [str(Requirement(d).specifier)[2:] for d in pyproject()["dependencies"]
            if Requirement(d).name == "torch"]
    assert len(pins) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", pins[0]), pins
    return pins[0]


@pytest.mark.parametrize("extras", ["none", "dev"])
def test_locks_pin_every_dependency_with_hashes(extras):
    entries = lock_entries(LOCKS[extras])
    assert entries, f"{LOCKS[extras]} is empty"
    for package, (_version, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{package}: no sha256"
    wanted = [Requirement(d) for d in pyproject()["dependencies"]]
    if extras == "dev":
        wanted += [Requirement(d) for d in pyproject()["optional-dependencies"]["dev"]]
    for requirement in wanted:
        name = normalised(requirement.name)
        if name == "torch":
            # Installed by version outside the hash lock (the build differs per machine).
            assert name not in entries, "torch must stay out of the hash lock"
            continue
        assert name in entries, f"{LOCKS[extras]} lacks {name} (run bash scripts/lock.sh)"
        assert requirement.specifier.contains(entries[name][0]), (
            f"{LOCKS[extras]}: {name} {entries[name][0]} violates pyproject's {requirement} "
            "(run bash scripts/lock.sh)")


def test_dev_lock_holds_the_runtime_versions():
    runtime, dev = lock_entries(LOCKS["none"]), lock_entries(LOCKS["dev"])
    assert {p: v for p, (v, _) in runtime.items()} == {p: dev[p][0] for p in runtime if p in dev}
    assert set(runtime) <= set(dev)


def test_locks_come_from_the_one_documented_command():
    for name in LOCKS.values():
        assert "bash scripts/lock.sh" in (ROOT / name).read_text().split("\n", 3)[1], name
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/lock.sh" in readme


def test_installer_installs_the_locks_with_hashes_and_no_resolver():
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert re.search(r"--require-hashes --no-deps -r \"\$LOCK\"", script)
    for extras, lock in LOCKS.items():
        assert re.search(rf"{extras}\) LOCK={re.escape(lock)}", script), lock
    assert "--no-deps --no-build-isolation -e ." in script


# ---- the torch pin -------------------------------------------------------------------------

def test_torch_pin_lives_in_pyproject_only(dockerfile_text):
    pin = torch_pin()
    files = ["Dockerfile", "scripts/install.sh", "scripts/lock.sh", "scripts/docker_check.sh",
             "README.md"]
    literal = re.compile(r"(?:torch\s*[=:-]=?\s*|pytorch/pytorch:|TORCH_VERSION=)(\d+\.\d+(?:\.\d+)?)")
    for name in files:
        for version in literal.findall((ROOT / name).read_text()):
            assert version == pin, f"{name} names torch {version}; the pin (pyproject.toml) is {pin}"
    for name in ("scripts/install.sh", "scripts/lock.sh", "scripts/docker_check.sh"):
        assert "scripts/torch_pin.py" in (ROOT / name).read_text(), f"{name} does not read the pin"


def test_torch_pin_script_reads_pyproject():
    import importlib.util
    spec = importlib.util.spec_from_file_location("torch_pin", ROOT / "scripts" / "torch_pin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.torch_pin() == torch_pin()


# ---- the Dockerfile --------------------------------------------------------------------------

def test_targets_exist_and_install_the_right_lock(docker_stages):
    assert {"runtime", "dev"} <= set(docker_stages)
    for target, extras in (("runtime", "none"), ("dev", "dev")):
        envs = [installer_env(rest) for kw, rest in chain(docker_stages, target) if kw == "RUN"]
        envs = [env for env in envs if env is not None]
        assert envs, f"{target}: nothing installed through scripts/install.sh"
        assert envs[-1].get("SKELKIT_EXTRAS") == extras and "SKELKIT_DEPS_ONLY" not in envs[-1], target
        if target == "runtime":
            assert all(env.get("SKELKIT_EXTRAS") == "none" for env in envs), "dev extras in runtime"
    steps = " ".join(rest for _, rest in chain(docker_stages, "runtime"))
    assert "pip install" not in steps, "install dependencies through scripts/install.sh (the locks)"


def test_runtime_image_carries_no_tests(docker_stages):
    runtime = [src for kw, rest in chain(docker_stages, "runtime") if kw in ("COPY", "ADD")
               for src in copy_sources(rest)]
    assert not [src for src in runtime if src.startswith(("tests", ".", "scripts/test"))], runtime
    dev = [src for kw, rest in chain(docker_stages, "dev") if kw == "COPY" for src in copy_sources(rest)]
    assert "tests" in dev


@pytest.mark.parametrize("target, extras", [("runtime", "none"), ("dev", "dev")])
def test_sources_are_copied_after_the_dependency_layer(docker_stages, target, extras):
    assert dependency_layer_violations(chain(docker_stages, target), extras) == []


def test_copy_everything_before_the_install_is_caught(dockerfile_text):
    # The check above must fail when someone puts the whole context in before the dependencies.
    broken = dockerfile_text.replace("COPY pyproject.toml", "COPY . .\nCOPY pyproject.toml", 1)
    assert broken != dockerfile_text
    assert dependency_layer_violations(chain(stages(broken), "runtime"), "none") == ["."]


def test_numba_kernels_compiled_at_build_time_for_any_uid(docker_stages):
    for target in ("runtime", "dev"):
        steps = chain(docker_stages, target)
        env = " ".join(rest for kw, rest in steps if kw == "ENV")
        cache = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
        assert cache and not cache.group(1).startswith(("/home", "/root")), "numba cache outside HOME"
        runs = [rest for kw, rest in steps if kw == "RUN"]
        warm = [i for i, run in enumerate(runs) if "scripts/numba_warmup.sh" in run]
        install = [i for i, run in enumerate(runs)
                   if (e := installer_env(run)) is not None and "SKELKIT_DEPS_ONLY" not in e]
        assert warm and install and warm[-1] >= install[-1], f"{target}: warm-up before the install"
    warmup = (ROOT / "scripts" / "numba_warmup.sh").read_text()
    assert 'chmod -R a+rwX "$NUMBA_CACHE_DIR"' in warmup
    assert "skelprep build" in warmup


def test_runs_as_non_root_by_default_and_any_uid_can_write(docker_stages):
    for target in ("runtime", "dev"):
        steps = chain(docker_stages, target)
        users = [rest for kw, rest in steps if kw == "USER"]
        assert users and users[-1].split(":")[0] not in ("root", "0"), target
        runs = " ".join(rest for kw, rest in steps if kw == "RUN")
        assert "useradd --uid 1000 --gid 1000" in runs and users[-1] in runs
        env = " ".join(rest for kw, rest in steps if kw == "ENV")
        # An arbitrary `--user` uid has no home of its own: everything it writes goes to /tmp.
        assert re.search(r"\bHOME=/tmp\b", env) and re.search(r"MPLCONFIGDIR=/tmp\b", env)
        after_user = steps[max(i for i, (kw, _) in enumerate(steps) if kw == "USER"):]
        checks = " ".join(rest for kw, rest in after_user if kw == "RUN")
        if target == "runtime":
            for name in pyproject()["scripts"]:
                assert f"{name} --help" in checks


def test_dockerignore_keeps_environments_out_and_locks_in():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "*.zarr", "runs"):
        assert entry in ignored
    for needed in DEPENDENCY_INPUTS | {"skelkit", "scripts", "tests"}:
        assert needed not in ignored and not any(Path(needed).match(p) for p in ignored if "*" in p), needed


# ---- the README's docker commands -------------------------------------------------------------

def readme_docker_commands() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Docker\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = re.sub(r"\\\n\s*", " ", "\n".join(blocks)).splitlines()
    return [shlex.split(c, comments=True) for c in commands if c.strip().startswith("docker ")]


def default_workers(command: list[str]) -> int:
    """The worker processes a CLI command starts (what needs /dev/shm inside a container)."""
    if "--workers" in command:
        return int(command[command.index("--workers") + 1])
    line = " ".join(command)
    if "skelprep build" in line:
        return 2  # default: one per core
    if re.search(r"skeltrain (run|embed)", line):
        return 2  # data.num_workers
    return 0


def test_readme_docker_runs_work_with_a_local_image_and_any_uid():
    commands = readme_docker_commands()
    built = {c[c.index("-t") + 1] for c in commands if c[:2] == ["docker", "build"]}
    runs = [c for c in commands if c[:2] == ["docker", "run"]]
    assert built and len(runs) >= 4
    for run in runs:
        line = " ".join(run)
        assert "--pull never" in line, line
        assert "--user $(id -u):$(id -g)" in line, line
        assert any(word in built for word in run[2:]), f"not an image the section builds: {line}"
        if default_workers(run) > 0:
            assert re.search(r"--shm-size[= ]\d+[gm]", line), f"needs --shm-size: {line}"


def test_readme_shm_rule_sees_multi_worker_commands():
    assert default_workers(shlex.split("docker run img skelprep build --raw /data/x")) > 0
    assert default_workers(shlex.split("docker run img skeleval knn --emb x.h5")) == 0
    assert default_workers(shlex.split("docker run img skeleval linear --workers 4")) == 4
