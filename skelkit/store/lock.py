"""One writer at a time: an advisory lock on a store being built or a run directory being trained.

The lock is ``fcntl.flock`` on a lock file that also names its holder (PID, host, start time) so
a second writer can say who holds it. The kernel drops a flock when its holder dies, however it
dies, so a lock file whose flock can be taken but which still names a holder was left by a
killed process: it is taken over, with a message. A clean release removes the file. Taking the
lock checks that the file locked is still the one at the path (a holder may have removed it in
between), so two writers never both believe they hold it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

from skelkit.errors import InputError

LOCK_SUFFIX = ".lock"


class LockHeldError(InputError):
    """Another live process is writing the same store or run directory."""


def _holder_text(holder: dict[str, object]) -> str:
    started = holder.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(started)))
            if isinstance(started, int | float) else "an unknown time")
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"({holder.get('command', 'unknown command')}, since {when})")


class WriterLock:
    """An exclusive, non-blocking writer lock on ``path`` (the lock file), for ``what`` (the
    store or run directory, named in messages). Use as a context manager or acquire/release."""

    def __init__(self, path: str | Path, what: str | Path, command: str = "") -> None:
        self.path = Path(path)
        self.what = str(what)
        self.command = command or "skelkit"
        self._fd: int | None = None
        self.took_over: str | None = None  # the stale holder taken over, if any

    def acquire(self) -> WriterLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise LockHeldError(
                    f"{self.what} is being written by {_holder_text(holder)}; wait for it to "
                    f"finish or stop it (lock file {self.path})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed the file meanwhile: lock the new one
        previous = _read_holder(fd)
        if previous:
            self.took_over = _holder_text(previous)
            print(f"{self.command}: taking over the stale lock of {self.what} left by "
                  f"{self.took_over}, which is no longer running", file=sys.stderr, flush=True)
        mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(mine) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # Remove while still holding, so no one locks a file that is about to disappear.
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def require_unheld(path: str | Path, what: str | Path) -> None:
    """LockHeldError naming the holder when the lock file at ``path`` names a live process of
    this host; nothing otherwise. Only reads the file (never locks it, so it cannot get in the
    way of a writer taking the lock): a check placed before others whose message would name
    the wrong cause; the writer still takes the lock itself."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        holder = _read_holder(fd)
    finally:
        os.close(fd)
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int):
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return  # a killed holder's file: the writer takes it over with a message
    except PermissionError:
        pass  # alive, another user's
    raise LockHeldError(f"{what} is being written by {_holder_text(holder)}; wait for it to "
                        f"finish or stop it (lock file {path})")


def _read_holder(fd: int) -> dict[str, object]:
    """What a lock file says about its holder ({} for an empty or unreadable one)."""
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        holder = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {"pid": "?", "host": "?"}
    return holder if isinstance(holder, dict) else {}


def store_lock(store: str | Path, command: str = "skelprep build") -> WriterLock:
    """The lock of a store being built: ``STORE.zarr.lock`` beside it, so that ``--overwrite``
    (which removes the store folder) never removes a held lock with it."""
    store = Path(store)
    return WriterLock(store.with_name(store.name + LOCK_SUFFIX), store, command)
