"""Named points at which a fault-injection test can kill the process; inert unless asked.

``SKELKIT_KILL_AT=NAME[:N]`` makes the N-th passage (default the first) through the point ``NAME``
send SIGKILL to this very process, as a power cut or ``kill -9`` would at that moment. The tests
of interrupted builds and runs use it to reach the narrow windows between two writes that a
timed kill hits only by chance. It imports nothing of skelkit.
"""

from __future__ import annotations

import os
import signal

ENV = "SKELKIT_KILL_AT"
_passages: dict[str, int] = {}


def failpoint(name: str) -> None:
    """Kill this process here when ``SKELKIT_KILL_AT`` names this point and passage."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
