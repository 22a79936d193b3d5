"""Whole files into the page cache, several in flight: the kernel's readahead for large files, io_uring for small.

`fadvise` (posix_fadvise WILLNEED) and `readahead` (readahead(2)) hand the kernel a whole file in large
chunks and return once the reads are queued, so a few threads keep the device's queue full; the data
never crosses into user space. Many small files cost a syscall each that way, so below `small` bytes a
batch of files goes through io_uring reads instead. Files that vanished or shrank since they were listed
are counted, never an error.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from nodetune.probes.host import Host, ProbeError

from . import uring
from .options import KiB, MiB

METHODS = ("auto", "fadvise", "readahead", "io_uring")
CHUNK = 32 * MiB  # one call per chunk: the kernel splits it into its own large requests
SMALL = 256 * KiB


@dataclass
class WarmCounts:
    files: int = 0
    bytes: int = 0
    vanished: int = 0
    shrunk: int = 0
    failed: int = 0
    passed: int = 0  # dropped unread: the reader had reached them before a thread was free
    last_error: str = ""


def _readahead() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).readahead
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_size_t]
    fn.restype = ctypes.c_ssize_t
    return fn


class Warmer:
    """A pool of `threads` issuing whole-file warming; `submit` never blocks, `inflight` says how many wait."""

    def __init__(self, host: Host, method: str = "auto", threads: int = 16, small: int = SMALL) -> None:
        if method not in METHODS:
            raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
        self.host, self.small = host, small
        self.method = "fadvise" if method == "auto" else method
        self.uring_ok = method in ("auto", "io_uring") and uring.available(None)[0]
        # asked for by name, io_uring reads whole files of any size (to measure it); auto only the small ones
        self.uring_all = method == "io_uring" and self.uring_ok
        if method == "io_uring" and not self.uring_ok:
            self.method = "fadvise"
        self._ra = _readahead() if self.method == "readahead" else None
        if self.method == "readahead" and self._ra is None:
            self.method = "fadvise"
        self.counts = WarmCounts()
        self._lock = threading.Lock()
        self._inflight = 0
        self._pool = ThreadPoolExecutor(max(threads, 1), thread_name_prefix="nodetune-follow") if threads else None

    @property
    def inflight(self) -> int:
        return self._inflight

    def submit(self, batch: list[tuple[str, int]], wanted: Callable[[], bool] | None = None) -> Future[None] | None:
        """Warm files [(node path, size listed)]; inline when the pool has no threads (tests).

        `wanted`, asked when a thread takes the batch up, may drop it: a file the reader reached while
        it waited in the queue would only be read twice (and race the reader for the disk).
        """
        with self._lock:
            self._inflight += len(batch)
        if self._pool is None:
            self._run(batch, wanted)
            return None
        return self._pool.submit(self._run, batch, wanted)

    def _run(self, batch: list[tuple[str, int]], wanted: Callable[[], bool] | None = None) -> None:
        total = len(batch)
        try:
            if wanted is not None and not wanted():
                with self._lock:
                    self.counts.passed += total
                return
            small = [b for b in batch if b[1] < self.small or self.uring_all]
            if self.uring_ok and (len(small) > 1 or self.uring_all):
                self._uring(small)
                batch = [b for b in batch if b not in small]
            for path, size in batch:
                self._one(path, size)
        finally:
            with self._lock:
                self._inflight -= total

    def _open(self, path: str, listed: int) -> tuple[int, int] | None:
        try:
            fd = os.open(self.host.path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except (OSError, ProbeError) as exc:
            with self._lock:
                if isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
                    self.counts.vanished += 1
                else:
                    self.counts.failed += 1
                    self.counts.last_error = f"{path}: {getattr(exc, 'strerror', None) or exc}"
            return None
        size = os.fstat(fd).st_size
        if size < listed:
            with self._lock:
                self.counts.shrunk += 1
        return fd, size

    def _one(self, path: str, listed: int) -> None:
        got = self._open(path, listed)
        if got is None:
            return
        fd, size = got
        try:
            for off in range(0, size, CHUNK):
                n = min(CHUNK, size - off)
                if self._ra is not None:
                    if self._ra(fd, off, n) < 0:
                        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
                else:
                    os.posix_fadvise(fd, off, n, os.POSIX_FADV_WILLNEED)
        except OSError as exc:
            with self._lock:
                self.counts.failed += 1
                self.counts.last_error = f"{path}: {exc.strerror or exc}"
            return
        finally:
            os.close(fd)
        with self._lock:
            self.counts.files += 1
            self.counts.bytes += size

    def _uring(self, batch: list[tuple[str, int]]) -> None:
        """Files read on one ring, every chunk in flight at once (a syscall per batch, not per file)."""
        opened = [(p, got) for p, n in batch if (got := self._open(p, n)) is not None]
        if not opened:
            return
        buf = ctypes.create_string_buffer(self.small)  # scratch: only the page cache the reads fill matters
        addr = ctypes.addressof(buf)
        chunks = [(k, off) for k, (_p, (_fd, size)) in enumerate(opened) for off in range(0, max(size, 1), self.small)]
        if not self.uring_all:
            chunks = [(k, 0) for k in range(len(opened))]  # small files: one read each
        ring = uring.Ring(min(max(len(chunks), 1), 256))
        done = [0] * len(opened)
        bad: dict[int, int] = {}
        try:
            todo, left = list(reversed(chunks)), 0
            while todo or left:
                while todo and left < ring.entries:
                    k, off = todo.pop()
                    fd, size = opened[k][1]
                    ring.read(fd, addr, min(self.small, max(size - off, 0)) or 1, off, k)
                    left += 1
                for c in ring.submit_and_wait(1):
                    left -= 1
                    if c.res < 0:
                        bad[c.tag] = c.res
                    else:
                        done[c.tag] += c.res
        finally:
            ring.close()
            for _p, (fd, _n) in opened:
                os.close(fd)
        with self._lock:
            for k, (path, _) in enumerate(opened):
                if k in bad:
                    self.counts.failed += 1
                    self.counts.last_error = f"{path}: {os.strerror(-bad[k])}"
                else:
                    self.counts.files += 1
                    self.counts.bytes += done[k]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
