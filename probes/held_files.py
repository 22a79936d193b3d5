"""Descriptors of the per-process procfs files the sampler reads every sample, kept open.

A read of /proc/PID/stat through a held descriptor (pread at offset 0: procfs makes the text anew
on each read from the start) costs about a third of open, read and close (2.2 against 5.9 us on the
dev VM), and the sampler reads a file per thread of every GPU process each second. A held
descriptor names the process, not its number: once the process is reaped a read fails with ESRCH
and cannot return another process that took the pid.

Under a fake root (tests, benchmarks) the files are regular files: one removed or replaced under a
held descriptor is found by its link count and read again by path, as it would have been without
holding.
"""

from __future__ import annotations

import os
import resource

from .host import Host, ProbeError

_READ_MAX = 4096  # stat, io and a thread's stat are a few hundred bytes; longer ones go by path


def _limit() -> int:
    """Descriptors to hold at most: a quarter of this process's soft limit (the agent's unit sets
    8192; a shell's 1024 leaves the CLI 256), and no more than 2048."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(0, min(2048, (soft if soft != resource.RLIM_INFINITY else 8192) // 4))


class HeldFiles:
    """`read(path)` like `Host.read`, through a descriptor opened once per path.

    `sweep()` closes what went unread since the previous sweep (threads and processes gone); the
    sampler sweeps once per worker cadence, so a worker read every N samples keeps its descriptors.
    """

    def __init__(self, host: Host, limit: int | None = None) -> None:
        self.host = host
        self.limit = _limit() if limit is None else limit
        self._fds: dict[str, int] = {}
        self._used: set[str] = set()
        self._procfs = host.live  # else regular files that a test may replace or remove

    def read(self, path: str) -> str:
        """The file's text; ProbeError if it cannot be read (ESRCH: the process or thread is gone)."""
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self.limit:
                return self.host.read(path)  # full: this one by path, as without holding
            fd = self._fds[path] = self.host.open_read(path)
        try:
            data = os.pread(fd, _READ_MAX, 0)
            stale = not self._procfs and os.fstat(fd).st_nlink == 0
        except OSError as exc:
            self._close(path)
            raise ProbeError(f"{path}: {exc.strerror or exc}") from None
        if stale:
            self._close(path)
            return self.host.read(path)
        self._used.add(path)
        if len(data) >= _READ_MAX:
            return self.host.read(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProbeError(f"{path}: not text") from None

    def sweep(self) -> int:
        """Close the descriptors not read since the last sweep; how many were closed."""
        stale = [p for p in self._fds if p not in self._used]
        for p in stale:
            self._close(p)
        self._used = set()
        return len(stale)

    def held(self) -> int:
        """How many descriptors are open."""
        return len(self._fds)

    def close(self) -> None:
        """Close every descriptor (a window's sampler at its end; the agent's lives as long as it)."""
        for p in list(self._fds):
            self._close(p)

    def _close(self, path: str) -> None:
        fd = self._fds.pop(path, None)
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()
