"""Followers run in the background (the agent's autotune): one thread a followed process, totals for metrics."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from nodetune.probes.host import Host

from .follow import Follower, FollowOptions, FollowReport, summary
from .options import PrefetchError

log = logging.getLogger("nodetune.prefetch")


@dataclass(frozen=True)
class PrefetchTotals:
    """What every follower of this pool did: counters since start, gauges of the running ones."""

    followers: int = 0  # running now
    started_total: int = 0
    files_warmed_total: int = 0
    bytes_warmed_total: int = 0
    ahead_bytes: int = 0  # warmed ahead of the slowest reader now, summed over running followers
    ahead_seconds: float = 0.0  # the furthest ahead a running follower is, in seconds of its job's reading
    stopped_total: dict[str, int] = field(default_factory=dict)  # exited | random_access | memory | other


def _why(r: FollowReport) -> str:
    if r.random_access:
        return "random_access"
    if r.stopped.startswith("memory") or r.stopped.startswith("page cache"):
        return "memory"
    return "exited" if r.stopped == "the process exited" else "other"


class FollowerPool:
    """Start a follower per process at most once while it runs; each stops by itself when its job ends."""

    def __init__(self, host: Host, opts: FollowOptions | None = None) -> None:
        self.host, self.opts = host, opts or FollowOptions()
        self._lock = threading.Lock()
        self._running: dict[int, tuple[Follower, threading.Thread]] = {}
        self._done_files = self._done_bytes = 0
        self._stopped: dict[str, int] = {}
        self._started = 0

    def start(self, pid: int) -> str | None:
        """Follow `pid` in a thread; None when started (or already followed), else the one-line reason."""
        with self._lock:
            if pid in self._running:
                return None
            try:
                f = Follower(self.host, pid, self.opts)
            except PrefetchError as exc:
                return exc.reason
            t = threading.Thread(target=self._run, args=(pid, f), name=f"nodetune-follow-{pid}", daemon=True)
            self._running[pid] = (f, t)
            self._started += 1
        t.start()
        return None

    def _run(self, pid: int, f: Follower) -> None:
        try:
            rep = f.run()
            log.info("prefetch: %s", summary(rep))
        except Exception as exc:  # a follower's fault ends that follower only, reported as its stop reason
            rep = f.report
            rep.stopped = f"failed: {type(exc).__name__}: {exc}"
            log.error("prefetch follower of pid %d failed: %s", pid, rep.stopped)
        f.sync()
        with self._lock:
            self._running.pop(pid, None)
            self._done_files += rep.files_warmed  # folded into counters: nothing grows with followers ended
            self._done_bytes += rep.bytes_warmed
            self._stopped[_why(rep)] = self._stopped.get(_why(rep), 0) + 1

    def totals(self) -> PrefetchTotals:
        with self._lock:
            running = [f for f, _ in self._running.values()]
            files, nbytes, stopped, started = self._done_files, self._done_bytes, dict(self._stopped), self._started
        for f in running:
            f.sync()
        reps = [f.report for f in running]
        ahead_s = max((r.ahead_files / r.rate_files_s for r in reps if r.rate_files_s > 0), default=0.0)
        return PrefetchTotals(len(running), started, files + sum(r.files_warmed for r in reps),
                              nbytes + sum(r.bytes_warmed for r in reps), sum(r.ahead_bytes for r in reps),
                              round(ahead_s, 3), stopped)

    def stop_all(self, timeout: float = 5.0) -> None:
        with self._lock:
            items = list(self._running.values())
        for f, _ in items:
            f.stop_event.set()
        for _, t in items:
            t.join(timeout)
