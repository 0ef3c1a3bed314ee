"""Named points at which a fault-injection test can kill the process; inert unless asked.

``SKELKIT_KILL_AT=NAME[:N]`` makes the N-th passage (default the first) through the point ``NAME``
send SIGKILL to this very process, as a power cut or ``kill -9`` would at that moment. The tests
of interrupted builds and runs use it to reach the narrow windows between two writes that a
timed kill hits only by chance. ``SKELKIT_ENOSPC_AT=NAME[:N]`` makes that passage raise
``OSError(ENOSPC)`` instead, as a full disk would at that write. It imports nothing of skelkit.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "SKELKIT_KILL_AT"
ENOSPC_ENV = "SKELKIT_ENOSPC_AT"
_passages: dict[tuple[str, str], int] = {}


def _due(env: str, name: str) -> bool:
    """Whether ``env`` names this point and this is the passage it names."""
    spec = os.environ.get(env)
    if not spec:
        return False
    target, _, count = spec.partition(":")
    if target != name:
        return False
    key = (env, name)
    _passages[key] = _passages.get(key, 0) + 1
    return _passages[key] == int(count or 1)


def failpoint(name: str) -> None:
    """Kill this process here when ``SKELKIT_KILL_AT`` names this point and passage; raise a
    full disk's OSError when ``SKELKIT_ENOSPC_AT`` does."""
    if _due(ENV, name):
        os.kill(os.getpid(), signal.SIGKILL)
    if _due(ENOSPC_ENV, name):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
