"""GPU Xid events from the kernel log (/dev/kmsg), counted per GPU and code.

`NVRM: Xid (PCI:0000:18:00): 79, pid=..., GPU has fallen off the bus.` is the NVIDIA driver's line.
The reader is a thread of its own that sleeps in select() on the device and the agent's stop signal
(no timeout: an idle reader never wakes) and hands each event to a callback; an unreadable /dev/kmsg is reported
once through `on_status` and the thread ends.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections.abc import Callable

from .wakeup import readable

XID = re.compile(r"NVRM: Xid \(PCI:([0-9A-Fa-f]+):([0-9A-Fa-f]{2}):([0-9A-Fa-f]{2})(?:\.[0-7])?\): (\d+)")
POLL_S = 0.5


def parse_xid(line: str) -> tuple[str, str] | None:
    """(bus "0000:18:00", code "79") from a kmsg record, or None."""
    m = XID.search(line)
    if m is None:
        return None
    dom, bus, dev, code = m.groups()
    return f"{int(dom, 16):04x}:{bus.lower()}:{dev.lower()}", str(int(code))


class KmsgReader(threading.Thread):
    def __init__(self, path: str, on_xid: Callable[[str, str], None], on_status: Callable[[bool, str | None], None],
                 stop: threading.Event) -> None:
        super().__init__(name="nodetune-kmsg", daemon=True)
        self.path = path
        self.on_xid = on_xid
        self.on_status = on_status
        self.stop = stop

    def run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.on_status(False, f"{self.path}: {exc.strerror or exc}")
            return
        try:
            device = stat.S_ISCHR(os.fstat(fd).st_mode)
            if device:
                # Start at the end: records from before this start were counted by the previous
                # agent; counting them again would double them in increase().
                os.lseek(fd, 0, os.SEEK_END)
            self.on_status(True, None)
            self._loop(fd, device)
        except OSError as exc:
            self.on_status(False, f"{self.path}: {exc.strerror or exc}")
        finally:
            os.close(fd)

    def _loop(self, fd: int, device: bool) -> None:
        partial = b""
        while not self.stop.is_set():
            if device:
                # Sleep until a record or a stop (a StopEvent is selectable); a plain Event: poll.
                stop_fd = getattr(self.stop, "fileno", None)
                ready = readable([fd, stop_fd()] if stop_fd else [fd], None if stop_fd else POLL_S)
                if fd not in ready:
                    continue
            try:
                chunk = os.read(fd, 8192)  # /dev/kmsg: one record per read
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records were overwritten before we read them
                    continue
                raise
            if not chunk:  # a regular file (a fake tree) at its end: follow it like tail -f
                self.stop.wait(POLL_S)
                continue
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop() if not device else b""
            if device and lines and lines[-1] == b"":
                lines.pop()
            for raw in lines:
                got = parse_xid(raw.decode("utf-8", errors="replace"))
                if got is not None:
                    self.on_xid(*got)


MAX_XID_SERIES = 64  # (gpu, code) pairs; a node sees a handful of distinct Xids in its life


class XidLabels:
    """Bounded labels for an Xid event: a GPU the topology lists (else "other") and a code of at
    most three digits (else "other"); past MAX_XID_SERIES pairs, new pairs share ("other", "other")."""

    def __init__(self, limit: int = MAX_XID_SERIES) -> None:
        self.limit = limit
        self.seen: set[tuple[str, str]] = set()

    def of(self, gpu: str | None, code: str) -> tuple[str, str]:
        key = (gpu if gpu is not None else "other", code if code.isdigit() and len(code) <= 3 else "other")
        if key not in self.seen:
            if len(self.seen) >= self.limit:
                return "other", "other"
            self.seen.add(key)
        return key
