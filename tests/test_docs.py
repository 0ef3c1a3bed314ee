"""The design document is the repository's own: every citation of it resolves inside
``docs/design.md``, and nothing points at files outside the repository.

Checks, over every file of the checkout (git-tracked and untracked-but-not-ignored files; ``.git``
and ``.venv`` never):

- no file cites the old out-of-repository design file (its name is spelt in upper case; only
  ``docs/design.md`` is ours);
- every ``docs/design.md §N`` citation (``§N.M``, ranges ``§N-M``) names a numbered section that
  exists, and every link to ``design.md#anchor`` names a heading that exists;
- the path of the shared data folder beside the repository appears only in the test and script
  files that read that data (``READS_SHARED_DATA``);
- the backticked repository paths in ``docs/design.md`` exist;
- ``.ci/run`` runs exactly the README's test command;
- the fidelity switch tables in ``docs/design.md`` §5.9 list every registered switch with its
  reference and paper values, and §5.11 holds every published target of
  ``skelkit.eval.published``.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"

# Built from parts so that this file does not match its own checks.
OLD_DESIGN_NAME = "DESIGN" + ".md"
SHARED_PATH = ".." + "/shared"

READS_SHARED_DATA = frozenset({
    "tests/golden/conftest.py",  # locates the preparation goldens for the golden tests
    "tests/golden/test_prep.py",  # parity with the preparation goldens
    "tests/golden/load.py",  # loads the training goldens
    "tests/golden/ikem_helpers.py",  # loads the CrosSCLR/IKEM training goldens
    "tests/unit/prep/test_synth.py",  # compares the synthetic set with the genuine recordings
    "scripts/utd_experiment.sh",  # default raw folder of the UTD-MHAD experiment
    "pyproject.toml",  # pytest configuration: the marker of the tests that read the recordings
})
"""Files allowed to name the shared data folder beside the repository; nothing else may."""

SKIPPED_DIRS = frozenset({".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache",
                          "build", "dist", "runs", "demo"})

CITATION = re.compile(r"docs/design\.md §(\d+(?:\.\d+)*)(?:-(\d+(?:\.\d+)*))?")
ANY_CITATION = re.compile(r"(\S*)design\.md §")
ANCHOR_LINK = re.compile(r"\]\((?:[^)\s]*/)?design\.md#([^)\s]+)\)")
NUMBERED_HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.MULTILINE)
REPO_PATH = re.compile(r"`((?:skelkit|tests|scripts|bench|docs)/[^`\s]*)`")


def repository_files() -> list[Path]:
    """The checkout's files: git-tracked plus untracked files git does not ignore."""
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True, timeout=60).stdout
        names = [n for n in out.decode().split("\0") if n]
        files = [ROOT / n for n in names if not n.startswith(".venv/")]
        return [f for f in files if f.is_file()]
    except (OSError, subprocess.SubprocessError):  # no git (e.g. an exported tree): walk it
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
            files += [Path(folder) / n for n in names]
        return files


@cache
def text_files() -> dict[str, str]:
    """Relative path (POSIX) -> text of every non-binary repository file."""
    out = {}
    for path in repository_files():
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        out[path.relative_to(ROOT).as_posix()] = data.decode("utf-8", errors="replace")
    return out


@cache
def design_text() -> str:
    if not DESIGN.is_file():
        pytest.fail(f"{DESIGN.relative_to(ROOT)} is missing: code and docs cite it")
    return DESIGN.read_text(encoding="utf-8")


def sections() -> set[str]:
    return set(NUMBERED_HEADING.findall(design_text()))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def section_text(heading_line: str) -> str:
    """The text under the heading line ``heading_line`` up to the next heading of any level."""
    text = design_text()
    start = text.find(heading_line + "\n")
    if start < 0:
        return ""
    following = HEADING.search(text, start + len(heading_line) + 1)
    return text[start:following.start() if following else len(text)]


def line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def test_the_repository_is_listed() -> None:
    files = text_files()
    assert "docs/design.md" in files and "skelkit/train/fidelity.py" in files, sorted(files)[:20]


def test_no_file_cites_the_design_outside_the_repository() -> None:
    hits = [f"{name}:{line_of(text, m.start())}" for name, text in text_files().items()
            for m in re.finditer(re.escape(OLD_DESIGN_NAME), text)]
    assert not hits, (f"cite docs/design.md §N instead of {OLD_DESIGN_NAME} (outside the "
                      f"repository): {hits}")


def test_every_design_citation_names_the_repository_file() -> None:
    bad = [f"{name}:{line_of(text, m.start())}" for name, text in text_files().items()
           for m in ANY_CITATION.finditer(text) if not m.group(1).endswith("docs/")]
    assert not bad, f"cite the design document as docs/design.md §N: {bad}"


def test_every_cited_section_exists() -> None:
    known = sections()
    assert {"1", "2", "3", "4", "5", "6", "7"} <= known, sorted(known)
    missing = []
    cited = 0
    for name, text in text_files().items():
        for m in CITATION.finditer(text):
            cited += 1
            for number in filter(None, m.groups()):
                if number not in known:
                    missing.append(f"{name}:{line_of(text, m.start())}: §{number}")
    assert cited >= 30, f"only {cited} citations found: is the file listing complete?"
    assert not missing, f"docs/design.md has no such section: {missing}"


def test_every_anchor_link_to_the_design_exists() -> None:
    anchors = {github_anchor(h) for h in HEADING.findall(design_text())}
    bad = [f"{name}:{line_of(text, m.start())}: #{m.group(1)}"
           for name, text in text_files().items() if name.endswith(".md")
           for m in ANCHOR_LINK.finditer(text) if m.group(1) not in anchors]
    assert not bad, f"no such heading in docs/design.md: {bad}"


def test_only_data_readers_name_the_shared_folder() -> None:
    outside = [f"{name}:{line_of(text, text.find(SHARED_PATH))}"
               for name, text in text_files().items()
               if SHARED_PATH in text and name not in READS_SHARED_DATA]
    assert not outside, (f"{SHARED_PATH} lies outside the repository; only the files that read "
                         f"its data may name it ({sorted(READS_SHARED_DATA)}): {outside}")


def test_paths_in_the_design_exist() -> None:
    missing = []
    for m in REPO_PATH.finditer(design_text()):
        path = m.group(1)
        if "<" in path:  # a pattern such as configs/<method>/<dataset>.yaml
            continue
        if "*" in path:
            found = glob.glob(str(ROOT / path))
        else:
            found = [p for p in [ROOT / path] if p.exists()]
        if not found:
            missing.append(path)
    assert not missing, f"docs/design.md names paths that do not exist: {missing}"


def test_the_switch_tables_list_every_switch() -> None:
    import skelkit.train.methods  # noqa: F401  (registers every method's switch table)
    from skelkit.train.fidelity import REGISTRY

    assert "cmd" in REGISTRY, sorted(REGISTRY)
    problems = []
    for method, table in REGISTRY.items():
        body = section_text(f"#### Switches of `{method}`")
        if not body:
            problems.append(f"no heading '#### Switches of `{method}`'")
            continue
        for switch in table.switches.values():
            row = f"| `{switch.name}` | `{switch.reference}` | `{switch.paper}` |"
            if row not in body:
                problems.append(f"{method}: no row starting {row}")
    assert not problems, f"docs/design.md §5.9 is out of date: {problems}"


DISPLAY = {"cmd": "CMD", "i2md": "I²MD", "crossclr": "CrosSCLR", "skeletonclr": "SkeletonCLR",
           "ikem": "IKEM", "ikem-student": "IKEM student"}


def test_the_published_targets_are_the_code_s() -> None:
    from skelkit.eval.published import PUBLISHED

    body = section_text("### 5.11 Published targets")
    assert body, "docs/design.md has no '### 5.11 Published targets'"
    rows = [line for line in body.splitlines() if line.startswith("| ")]
    transfer = body[body.find("Transfer to PKU-MMD II"):]
    problems = []
    for p in PUBLISHED:
        value = str(p.top1)
        if p.evaluation == "transfer":
            ok = value in transfer
        else:
            name = DISPLAY[p.method]
            name = f"{name} encoder, no pre-training" if p.variant else name
            ok = any(row.startswith(f"| {name} |") and value in row for row in rows)
        if not ok:
            problems.append(f"{p.method} {p.evaluation} {p.dataset} {p.protocol} {value}")
    assert not problems, f"docs/design.md §5.11 lacks: {problems}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """``.ci/run`` runs the README's set-up test command, word for word, and nothing else."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme[readme.index("## Quick start"):]
    start = quick_start.index("```bash\n") + len("```bash\n")
    block = quick_start[start:quick_start.index("```", start)]
    readme_tests = [line.split("#", 1)[0].strip() for line in block.splitlines()
                    if line.startswith("bash scripts/test.sh")]
    assert readme_tests == ["bash scripts/test.sh ci"], block
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
                and not line.startswith(("set ", "cd "))]
    assert commands == readme_tests, f".ci/run runs {commands}, the README says {readme_tests}"
