"""Durable file-system steps shared by the writers of stores, run directories and result files.

A full disk is bad input a user can fix, not a crash: every writer turns it into one line,
``no space left on device writing X; free space, then --resume`` (:class:`DiskFullError`,
exit 2 like every :class:`~skelkit.errors.InputError`), after removing what it had written
under a temporary name, so nothing that claims to be complete is left.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from skelkit.errors import InputError
from skelkit.failpoints import failpoint

PARTIAL_SUFFIX = ".partial"
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Libraries that format the C library's message themselves (HDF5: "errno = 28, error message
# = 'No space left on device'") instead of raising an OSError with its errno.
DISK_FULL_TEXTS = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT), f"errno = {errno.ENOSPC},")


class DiskFullError(InputError):
    """The disk (or quota) filled up while writing; the message is one line with what to do."""


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new entry inside ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return True
        if any(text in str(current) for text in DISK_FULL_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    return False


def disk_full_message(what: str | Path, then: str = "--resume") -> str:
    return f"no space left on device writing {what}; free space, then {then}"


@contextmanager
def disk_full_is_one_line(what: str | Path, then: str = "--resume",
                          remove: Iterable[Path] = ()) -> Iterator[None]:
    """Inside: a full disk becomes :class:`DiskFullError` (one line), after ``remove`` (the
    temporary files of the write) are deleted. Other errors pass unchanged."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        for path in remove:
            Path(path).unlink(missing_ok=True)
        raise DiskFullError(disk_full_message(what, then)) from None


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def write_atomically(path: str | Path, data: bytes | memoryview, then: str = "--resume",
                     point: str = "write-file") -> Path:
    """Write ``data`` to ``path`` under a temporary name, fsync it and rename it into place: a
    reader sees the old file or the whole new one. On any failure the temporary file is removed;
    a full disk is one :class:`DiskFullError` line. ``point`` names the write for fault
    injection (:mod:`skelkit.failpoints`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = partial_path(path)
    try:
        with disk_full_is_one_line(path, then, remove=[temp]):
            with open(temp, "wb") as handle:
                view = memoryview(data)
                handle.write(view[:len(view) // 2])
                failpoint(point)  # fault injection: a disk that fills half way through
                handle.write(view[len(view) // 2:])
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            fsync_dir(path.parent)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path
