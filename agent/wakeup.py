"""The agent's stop signal: an Event that also wakes whatever sleeps in select() or on a queue.

Every thread of the agent can then sleep until its own deadline or its input (no short polling
timeouts just to notice a stop): an idle agent wakes for its samples and little else.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable


class StopEvent(threading.Event):
    """`set()` also makes `fileno()` readable and runs the callbacks registered with `on_set`."""

    def __init__(self) -> None:
        super().__init__()
        self._r, self._w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._callbacks: list[Callable[[], None]] = []

    def fileno(self) -> int:
        """A descriptor select() sees readable once the event is set."""
        return self._r

    def on_set(self, fn: Callable[[], None]) -> None:
        self._callbacks.append(fn)

    def set(self) -> None:
        first = not self.is_set()
        super().set()
        if first:
            for fn in self._callbacks:
                fn()
            try:
                os.write(self._w, b"x")
            except OSError:
                pass  # closed already, or the pipe is full: either way it reads as set

    def close(self) -> None:
        """Release the pipe (after the threads that select on it have ended)."""
        for fd in (self._r, self._w):
            try:
                os.close(fd)
            except OSError:
                pass  # closed twice: nothing left to release
        self._r = self._w = -1


def readable(fds: list[int], timeout_s: float | None) -> list[int]:
    """Of `fds`, those readable within `timeout_s` (None: wait as long as it takes). poll(), not
    select(): the agent holds many descriptors (the followed processes' files), and select()
    refuses one numbered past 1023."""
    p = select.poll()
    for fd in fds:
        p.register(fd, select.POLLIN)
    return [fd for fd, _ in p.poll(None if timeout_s is None else timeout_s * 1000)]
