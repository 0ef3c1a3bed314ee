"""Per-file build progress: workers say "one more file of batch i parsed", the driver counts.

Batches stay the unit of scheduling, writing and resume (~150 files each); only the bar and
``BuildOptions.on_files`` follow files. The bar's position is the committed files plus the files
parsed in batches still in flight, so it never goes back: when batch i commits, its parsed
count (at most its file count) is replaced by its file count. Reports that arrive after their
batch committed (a queue is not ordered with the result pipe) are ignored.

Where the reports come from depends on the runner (``runners.py``): in-process for one worker,
a multiprocessing queue for local processes; a dask.distributed cluster sends none, so its bar
moves per batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

FileReporter = Callable[[int], None]
"""Called on a worker after each file of batch ``i`` is parsed."""

_reporter: FileReporter | None = None


def set_file_reporter(reporter: FileReporter | None) -> None:
    """Install (or remove) this process's reporter: a pool-worker initialiser, or the driver."""
    global _reporter
    _reporter = reporter


def file_parsed(batch_index: int) -> None:
    """Worker side, after each file: tell the driver, if anyone listens."""
    if _reporter is not None and batch_index >= 0:
        _reporter(batch_index)


class FileCounter:
    """Driver side: turns per-file reports and batch commits into a monotone file count.

    ``show(count)`` gets every new count (it updates the bar and the caller's callback); it is
    called with the lock held, so reports from a listener thread and commits from the driver
    loop never interleave their updates.
    """

    def __init__(self, batch_files: list[int], batches_done: int, files_done: int,
                 show: Callable[[int], None]) -> None:
        self._batch_files = batch_files
        self._batches_done = batches_done
        self._committed = files_done
        self._parsed: dict[int, int] = {}
        self._shown = files_done
        self._show = show
        self._lock = threading.Lock()

    @property
    def shown(self) -> int:
        return self._shown

    def file_parsed(self, batch_index: int) -> None:
        with self._lock:
            if batch_index < self._batches_done or batch_index >= len(self._batch_files):
                return
            parsed = self._parsed.get(batch_index, 0)
            self._parsed[batch_index] = min(parsed + 1, self._batch_files[batch_index])
            self._refresh()

    def batch_committed(self, batch_index: int) -> None:
        with self._lock:
            self._batches_done = batch_index + 1
            self._committed += self._batch_files[batch_index]
            self._parsed.pop(batch_index, None)
            self._refresh()

    def _refresh(self) -> None:
        position = self._committed + sum(self._parsed.values())
        if position > self._shown:
            self._shown = position
            self._show(position)
