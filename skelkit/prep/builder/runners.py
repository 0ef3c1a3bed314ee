"""Where batches run. Every runner computes the same one-task dask graph per batch; they differ
only in the scheduler that executes it, and in how a worker's per-file reports reach the driver
(``listen``; see ``file_progress.py``)."""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import dask

from skelkit.prep.builder.file_progress import FileReporter, set_file_reporter
from skelkit.prep.errors import BuildError


class _Ready:
    """A batch computed lazily in the driver when its result is asked for (one worker)."""

    def __init__(self, task: Any) -> None:
        self._task = task

    def result(self) -> Any:
        return dask.compute(self._task, scheduler="synchronous")[0]


class Runner:
    slots: int = 1
    description: str = "synchronous"

    def submit(self, fn: Any, *args: Any) -> Any:
        return _Ready(dask.delayed(fn, pure=False)(*args))

    def listen(self, on_file: FileReporter) -> None:
        """Have ``on_file(batch_index)`` called after each parsed file (the driver's thread here:
        batches are computed in this process)."""
        set_file_reporter(on_file)

    def close(self) -> None:
        set_file_reporter(None)


class LocalRunner(Runner):
    """dask's local process scheduler on one persistent pool of ``workers`` processes.

    Each batch is its own ``dask.compute`` call issued from a dispatch thread, so finished
    batches come back one by one (a single compute over all batches would hold them all).
    Spawned, not forked: the driver runs zarr's event-loop thread, which fork does not copy.
    Each worker watches its driver and exits when it is gone (a kill -9 of the driver would
    otherwise leave the workers, a few hundred MB each, running). Workers put one small message
    per parsed file on a queue; a driver thread hands them to the listener.
    """

    def __init__(self, workers: int) -> None:
        self.slots = workers
        self.description = f"dask local processes ({workers})"
        context = multiprocessing.get_context("spawn")
        self._files: Any = context.Queue()
        self._on_file: FileReporter | None = None
        self._pool = ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                                         initargs=(os.getpid(), self._files))
        self._dispatch = ThreadPoolExecutor(2 * workers, thread_name_prefix="skelprep-dispatch")
        self._relay = threading.Thread(target=self._relay_files, name="skelprep-file-progress",
                                       daemon=True)
        self._relay.start()

    def listen(self, on_file: FileReporter) -> None:
        self._on_file = on_file

    def _relay_files(self) -> None:
        while True:
            try:
                batch_index = self._files.get(timeout=1.0)
            except queue.Empty:
                continue
            except (EOFError, OSError, ValueError):  # the queue was closed under us
                return
            if batch_index is None:
                return
            if self._on_file is not None:
                self._on_file(batch_index)

    def submit(self, fn: Any, *args: Any) -> Any:
        task = dask.delayed(fn, pure=False)(*args)
        return self._dispatch.submit(
            lambda: dask.compute(task, scheduler="processes", pool=self._pool)[0]
        )

    def close(self) -> None:
        self._dispatch.shutdown(wait=True, cancel_futures=True)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._files.put(None)
        self._relay.join(timeout=5)
        self._files.close()
        self._files.join_thread()


def init_worker(parent: int, files: Any) -> None:
    """Pool-worker initialiser: exit with the driver, and report parsed files on ``files``."""
    exit_with_parent(parent)
    set_file_reporter(files.put)


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Pool-worker initialiser: a daemon thread ends this worker within ``interval`` seconds of
    its driver ``parent`` dying, however it died (the worker is then re-parented, so its parent
    PID changes). A watchdog rather than Linux's PR_SET_PDEATHSIG, which fires when the
    *thread* that spawned the worker ends: here a dispatch thread, not the driver."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="skelprep-driver-watch", daemon=True).start()


class DistributedRunner(Runner):
    """An existing dask.distributed cluster (``--scheduler tcp://host:8786``)."""

    def __init__(self, address: str) -> None:
        _check_reachable(address)
        # Only --scheduler needs distributed, and its import alone takes ~0.6 s: it waits here.
        from distributed import Client

        try:
            self._client = Client(address, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise BuildError(f"cannot connect to the dask scheduler at {address}: {e}") from None
        threads = sum(self._client.nthreads().values())
        self.slots = max(1, threads)
        self.description = f"dask.distributed {address} ({self.slots} threads)"

    def submit(self, fn: Any, *args: Any) -> Any:
        return self._client.compute(dask.delayed(fn, pure=False)(*args))

    def listen(self, on_file: FileReporter) -> None:
        """Cluster workers cannot reach the driver's counter: the bar moves per batch."""

    def close(self) -> None:
        self._client.close()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after the client's retry window, when nothing listens at a tcp address."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls"):
        return  # inproc, ucx, ...: leave it to distributed
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise BuildError(f"--scheduler {address!r} is not an address like tcp://host:8786")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise BuildError(f"cannot connect to the dask scheduler at {address}: {e}") from None


def make_runner(workers: int, scheduler: str | None) -> Runner:
    if scheduler:
        return DistributedRunner(scheduler)
    if workers <= 1:
        return Runner()
    return LocalRunner(workers)
