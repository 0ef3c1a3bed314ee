"""The run-directory contract: where a run keeps its config, logs, metrics, results and weights.

A run directory holds ``config.yaml`` (the resolved config), ``train.log``, ``metrics.csv``, the
TensorBoard events under ``tb/``, ``eval.jsonl`` (one evaluation result a line, appended by
``skeleval``), and ``checkpoints/last.pt`` plus ``checkpoints/epoch_NNNN.pt``. This module names
those paths once and reads the plain-text parts; it imports nothing of torch, so the evaluation
report and the CLIs can use it cheaply.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from skelkit.errors import InputError
from skelkit.failpoints import failpoint
from skelkit.store.durable import disk_full_is_one_line, write_atomically

CONFIG_FILE = "config.yaml"
LOG_FILE = "train.log"
METRICS_FILE = "metrics.csv"
EVAL_FILE = "eval.jsonl"
TB_DIR = "tb"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.pt"
LOCK_FILE = "writer.lock"


class RunDirError(InputError):
    """A run directory is missing, incomplete or holds an unreadable file."""


def checkpoint_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.pt"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (which need not exist yet: training creates them)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def log(self) -> Path:
        return self.path / LOG_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def eval_log(self) -> Path:
        return self.path / EVAL_FILE

    @property
    def tb(self) -> Path:
        return self.path / TB_DIR

    @property
    def lock_file(self) -> Path:
        """Held (``skelkit.store.lock``) while a process trains into this directory."""
        return self.path / LOCK_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / checkpoint_name(epoch)

    def is_run(self) -> bool:
        return self.config.is_file()

    def checkpoint(self, name: str | Path | None = None) -> Path:
        """``last.pt`` by default; a path as given, or a file name inside ``checkpoints/``."""
        if name is None:
            return self.last_checkpoint
        given = Path(name)
        if not given.exists() and (self.checkpoints / given).exists():
            return self.checkpoints / given
        return given

    def require(self) -> RunDir:
        """This directory, checked to be a run (it has a ``config.yaml``)."""
        if not self.path.is_dir():
            raise RunDirError(f"{self.path}: no such run directory")
        if not self.is_run():
            raise RunDirError(f"{self.path}: not a run directory (no {CONFIG_FILE})")
        return self

    def read_config(self) -> dict[str, Any]:
        """``config.yaml`` as a mapping; a YAML error is one line naming the file and line."""
        self.require()
        try:
            tree = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise RunDirError(yaml_error_line(self.config, err)) from None
        if not isinstance(tree, dict):
            raise RunDirError(f"{self.config}: expected a mapping at the top level")
        return tree

    def append_eval(self, record: dict[str, Any]) -> Path:
        """Append one result line to ``eval.jsonl`` (a time stamp is added)."""
        line = {**record, "time": datetime.now(UTC).isoformat(timespec="seconds")}
        with disk_full_is_one_line(self.eval_log, then="rerun"), \
                self.eval_log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
        return self.eval_log

    def eval_records(self) -> list[dict[str, Any]]:
        """The records of ``eval.jsonl`` (none when it does not exist), each checked to carry
        the keys ``kind`` and ``top1``."""
        path = self.eval_log
        if not path.is_file():
            return []
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise RunDirError(f"{path}:{number}: invalid JSON ({err.msg})") from None
            if not isinstance(record, dict) or "kind" not in record or "top1" not in record:
                raise RunDirError(f"{path}:{number}: a record needs the keys 'kind' and 'top1'")
            records.append(record)
        return records


class MetricsLog:
    """``metrics.csv``: one row per epoch, appended and made durable (flush + fsync) row by row.

    A kill can tear at most the line being appended; :meth:`rows` ignores such a line, and
    :meth:`reconcile` (``--resume``) cuts the file back to the checkpoint's epoch. The file is
    replaced (temporary file, fsync, rename) only when a column appears that the header lacks
    or when reconciling drops rows, so no moment of a kill leaves it empty.
    """

    def __init__(self, path: str | Path, columns: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.columns = columns  # columns known in advance (e.g. the KNN monitor's)

    def read(self) -> tuple[list[str], list[dict[str, str]]]:
        """The header and the complete rows (a torn last line, or a row whose field count is not
        the header's, is left out)."""
        header, rows, _ = self._parse()
        return header, rows

    def _parse(self) -> tuple[list[str], list[dict[str, str]], int]:
        """Header, complete rows, and how many lines were left out as incomplete."""
        if not self.path.is_file():
            return [], [], 0
        lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
        torn = 0
        if lines and not lines[-1].endswith("\n"):
            lines, torn = lines[:-1], 1  # the append a kill interrupted
        if not lines:
            return [], [], torn
        parsed = list(csv.reader(io.StringIO("".join(lines))))
        header, body = parsed[0], parsed[1:]
        rows = [dict(zip(header, values, strict=True)) for values in body
                if len(values) == len(header)]
        return header, rows, torn + len(body) - len(rows)

    def rows(self) -> list[dict[str, str]]:
        return self.read()[1]

    def reset(self) -> None:
        """A fresh run starts without rows."""
        self.path.unlink(missing_ok=True)

    def reconcile(self, epoch: int) -> str | None:
        """Keep the rows of epochs 1..``epoch`` (the checkpoint's completed epochs), drop later
        ones and torn lines; a message saying what changed, or None."""
        header, rows, torn = self._parse()
        kept = [r for r in rows if _epoch_of(r) is not None and _epoch_of(r) <= epoch]
        dropped = sorted({e for r in rows if (e := _epoch_of(r)) is not None and e > epoch})
        messages = []
        if dropped:
            messages.append(f"dropped the rows of epochs {', '.join(map(str, dropped))} "
                            f"(after the checkpoint's epoch {epoch})")
        if torn:
            messages.append(f"dropped {torn} line(s) an interrupted write left incomplete")
        missing = sorted(set(range(1, epoch + 1)) - {_epoch_of(r) for r in kept})
        if missing:
            messages.append(f"has no rows for epochs {', '.join(map(str, missing))}")
        if dropped or torn:
            self._replace(header, kept)
        return f"{self.path}: {'; '.join(messages)}" if messages else None

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row`` durably; the whole file is replaced (atomically) only when the row
        brings a column the header lacks or the file ends in a torn line."""
        header, rows, torn = self._parse()
        if not header or torn or any(key not in header for key in row):
            header = header or [*row, *(c for c in self.columns if c not in row)]
            header = [*header, *(k for k in row if k not in header)]
            self._replace(header, rows, extra=[row])
            return
        # A full disk may leave a torn last line, which reading and --resume ignore.
        with disk_full_is_one_line(self.path), \
                self.path.open("a", encoding="utf-8", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header, restval="").writerow(row)
            handle.flush()
            failpoint("write-metrics")
            os.fsync(handle.fileno())

    @staticmethod
    def _render(header: list[str], rows: list[dict[str, Any]]) -> bytes:
        if not header:
            return b""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header, restval="")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().encode("utf-8")

    def _replace(self, header: list[str], rows: list[dict[str, Any]],
                 extra: Sequence[dict[str, Any]] = ()) -> None:
        """Write the whole file under a temporary name, fsync it and rename it over the old."""
        write_atomically(self.path, self._render(header, [*rows, *extra]), point="write-metrics")


def _epoch_of(row: dict[str, str]) -> int | None:
    try:
        return int(row.get("epoch", ""))
    except ValueError:
        return None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes: the digest an embedding file records of its checkpoint, so
    that a result is recorded only in the run whose checkpoint provably produced it."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def enclosing_run(file: str | Path, max_up: int = 3) -> RunDir | None:
    """The run directory holding ``file`` (e.g. a checkpoint): the nearest ancestor, at most
    ``max_up`` levels up, with a ``config.yaml``."""
    folder = Path(file).parent
    for _ in range(max_up):
        if (folder / CONFIG_FILE).is_file():
            return RunDir(folder.resolve())
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


def yaml_error_line(path: Path, err: yaml.YAMLError) -> str:
    """One line naming the file, the line (where the parser knows it) and the parser's reason."""
    mark = getattr(err, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    return f"{where}: invalid YAML ({getattr(err, 'problem', None) or 'unparsable'})"
