"""Follow a running job's reads and keep the files it reads next in the page cache, ahead of its slowest reader.

Each tick reads the open files and offsets of the process and its children (loader workers), places
each reader in the order of files the job reads (a list file given, else the name order of the
directory its files are in, else the order it was seen to read them), and warms the files from the
slowest reader's position forward. The window is the lead time's worth of the rate the job consumes,
stretched as that rate nears what the device delivers, and capped by the byte budget and the memory
guard; it starts at the reader, never at the start of the list, so it never races the loader for the
file the loader is reading. A job whose steps follow no order is told so and left alone.
"""

from __future__ import annotations

import functools
import math
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.io import parse_diskstats

from . import order as orders
from . import procfiles
from .guard import MemoryGuard, cgroup_cache_room, meminfo
from .options import GiB, MiB, PrefetchError, PrefetchOptions, human
from .warmer import Warmer


@dataclass(frozen=True)
class FollowOptions:
    list_file: str | None = None  # the order as a list of paths (else inferred)
    budget: int = 4 * GiB  # most bytes warmed ahead of the slowest reader at once
    lead_s: float = 1.0  # how far ahead, in seconds of the job's consumption
    min_files: int = 16
    start_files: int = 64  # window before the job's rate is known
    max_files: int = 8192
    threads: int = 16
    method: str = "auto"
    interval_s: float = 0.01  # between looks at /proc (cheap: a few fds of a few processes)
    min_steps: int = 24  # reader steps before judging whether they follow an order
    in_order_share: float = 0.6
    floor: int | None = None
    psi_max_pct: float = 10.0
    max_seconds: float | None = None

    def check(self) -> None:
        if self.budget < MiB:
            raise PrefetchError(f"--budget: expected at least 1MiB, got {self.budget}")
        if not 0.05 <= self.lead_s <= 600:
            raise PrefetchError(f"--lead: expected 0.05..600 seconds, got {self.lead_s}")
        if not 0 <= self.threads <= 256:
            raise PrefetchError(f"--threads: expected 0..256, got {self.threads}")


@dataclass
class FollowReport:
    """What the follower did; JSON round-trip through dataclasses.asdict."""

    pid: int
    order: str = ""
    method: str = ""
    files_warmed: int = 0
    bytes_warmed: int = 0
    vanished: int = 0
    shrunk: int = 0
    failed: int = 0
    passed: int = 0  # queued, then dropped unread: the reader got there first
    held_by_budget: int = 0  # ticks the window was cut short by the budget or the memory guard
    readers: int = 0
    window_files: int = 0  # the window now
    ahead_files: int = 0  # warmed and not yet reached by the slowest reader, now
    ahead_bytes: int = 0
    max_ahead_bytes: int = 0
    epoch: int = 0  # of the slowest reader, in the order followed
    rate_files_s: float = 0.0
    device_bps: float = 0.0
    in_order_share: float | None = None
    steps: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why it stopped
    random_access: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.random_access or self.stopped.startswith("memory") else 0


class DiskRate:
    """Peak read rate of the node's whole disks (diskstats deltas): what the device can deliver."""

    def __init__(self, host: Host) -> None:
        self.host, self.peak = host, 0.0
        self._last: tuple[float, int] | None = None

    def sample(self, now: float) -> None:
        try:
            disks = parse_diskstats(self.host.read("/proc/diskstats"))
        except ProbeError:
            return  # no diskstats (a container): the window runs on the lead time alone
        whole = [d for d in disks if self.host.exists(f"/sys/block/{d.device}")]
        sectors = sum(d.sectors_read for d in whole or disks)
        if self._last is not None and now - self._last[0] >= 0.2:
            self.peak = max(self.peak, (sectors - self._last[1]) * 512 / (now - self._last[0]))
        if self._last is None or now - self._last[0] >= 0.2:
            self._last = (now, sectors)


class Follower:
    """One followed job; `tick()` does one look-and-warm step, `run()` loops until the job ends."""

    def __init__(self, host: Host, pid: int, opts: FollowOptions, clock: Callable[[], float] = time.monotonic,
                 warmer: Warmer | None = None) -> None:
        opts.check()
        procfiles.check_target(host, pid)
        self.host, self.pid, self.opts, self.clock = host, pid, opts, clock
        self.report = FollowReport(pid)
        self.warmer = warmer or Warmer(host, opts.method, opts.threads)
        self.report.method = self.warmer.method
        self.guard = MemoryGuard(host, PrefetchOptions(floor=opts.floor, psi_max_pct=opts.psi_max_pct,
                                                       allow_evict=True), clock)
        self.disk = DiskRate(host)
        self.primary: orders.Tracker | None = None
        if opts.list_file:
            self.primary = orders.Tracker(orders.from_list(host, opts.list_file))
        self.seen = orders.Tracker(orders.Order("order seen"))
        self.active: orders.Tracker | None = None
        self._top = ""  # the directory whose name order is followed
        self._listed_at = self._inferred_at = -math.inf
        self._regular: dict[str, int | None] = {}  # path -> size, None when not a regular file
        self._pids: list[int] = [pid]
        self._pids_at = -math.inf
        self._seen_frozen = False  # the order seen stops growing once it is followed
        self._warm_for: orders.Tracker | None = None  # the tracker `_front` counts in
        self._front = -1  # absolute position the window is issued up to (inclusive)
        self._slow = -1  # the slowest reader's absolute position at the last tick
        self._warmed: dict[str, int] = {}  # path -> the epoch it was last issued for
        self._max_queued = max(64, 8 * max(opts.threads, 1))
        self._cgroup_room: int | None = cgroup_cache_room(host)
        self._rate_at: tuple[float, int] | None = None
        self._guard_at = self._t0 = clock()
        self.stop_event = threading.Event()

    # -- looking ------------------------------------------------------------------------------------
    def _size(self, path: str) -> int | None:
        if path not in self._regular:
            try:
                st = self.host.stat(path)
                self._regular[path] = st.st_size if stat.S_ISREG(st.st_mode) else None
            except ProbeError:
                self._regular[path] = None
            if len(self._regular) > 100_000:
                self._regular.clear()
        return self._regular[path]

    def _observe(self, now: float) -> None:
        if now - self._pids_at >= 1.0:
            self._pids, self._pids_at = procfiles.tree(self.host, self.pid), now
        reads = [r for r in procfiles.open_reads(self.host, self._pids) if self._size(r.path) is not None]
        for r in reads:
            known = r.path in self.seen.order.index
            if not known and not self._seen_frozen:
                self.seen.order.append(r.path, self._size(r.path) or 0)
            self.seen.observe((r.pid, r.fd), r.path, r.pos, now, score=known)
        if self.primary is None:
            # the files it opened one after another vote for a directory: a library or config held open is outvoted
            top = orders.guess_dir(self.seen.order.paths[-64:])
            if top is not None:
                self._top, self._inferred_at = top, now
                self.primary = orders.Tracker(orders.from_dir(self.host, top))
        for r in reads:
            p = self.primary
            if p is not None and not p.observe((r.pid, r.fd), r.path, r.pos, now) and self._top \
                    and now - self._listed_at >= 1.0 and r.path in self.seen.order.index:
                # a file written after the listing, or the reader moved on to a sibling directory:
                # list again (at most once a second), the readers keep their places
                top = orders.guess_dir(self.seen.order.paths[-64:]) or self._top
                self._listed_at = now
                if r.path.startswith(top + "/"):
                    self._top = top
                    self.primary = p.rebased(orders.from_dir(self.host, top))
                    if self.active is p:
                        self.active = self.primary
                    self.primary.observe((r.pid, r.fd), r.path, r.pos, now)
        t = self.active or self.primary or self.seen
        self.report.readers = sum(now - v.seen_at <= t.stale_s for v in t.readers.values())
        if self.active is None and self._top and not (self.primary and self.primary.readers) \
                and reads and now - self._inferred_at >= 1.0:
            self.primary, self._top = None, ""  # the directory guessed holds none of what it reads: guess again

    def _decide(self) -> str | None:
        """Pick the order the readers follow; a reason to stop when they follow none."""
        o = self.opts
        cands = [t for t in (self.primary, self.seen) if t is not None]
        for t in cands:
            if t.score.steps >= 4 and t.score.share >= o.in_order_share:
                if self.active is not t:
                    self.active = t
                    # the order seen is followed once it repeats; it stops growing so positions stay put
                    self._seen_frozen = self._seen_frozen or t is self.seen
                break
        p = self.primary
        judged = self.active or p
        if judged is None:
            return None
        self.report.in_order_share, self.report.steps = round(judged.score.share, 3), judged.score.steps
        seen_fails = self.seen.score.steps >= o.min_steps and self.seen.score.share < o.in_order_share
        if p is not None and p.score.steps >= o.min_steps and p.score.share < o.in_order_share and (
                seen_fails or p.score.steps >= 4 * o.min_steps) and (
                self.active is None or self.active.score.share < o.in_order_share):
            self.report.random_access = True
            return (f"pid {self.pid} reads its files in no order it can follow: {p.score.share:.0%} of "
                    f"{p.score.steps} steps in the {p.order.source}"
                    + (f", {self.seen.score.share:.0%} in the order seen before" if self.seen.score.steps else "")
                    + "; following cannot help (random access), stopped")
        sk = judged.seeks
        if judged.score.steps < 4 and sk.steps >= o.min_steps and sk.share < o.in_order_share:
            self.report.random_access = True
            return (f"pid {self.pid} reads at random offsets within its files ({sk.share:.0%} of {sk.steps} moves "
                    "forward) and hardly moves from file to file: following cannot help (random access), stopped")
        return None

    # -- warming ------------------------------------------------------------------------------------
    def _window(self, now: float, slow: int, order: orders.Order) -> int:
        o = self.opts
        if self._rate_at is None or now - self._rate_at[0] >= 0.5:
            if self._rate_at is not None and slow >= self._rate_at[1]:  # a small dataset laps in 0.5 s: no cap
                rate = (slow - self._rate_at[1]) / (now - self._rate_at[0])
                r = self.report
                r.rate_files_s = rate if r.rate_files_s == 0 else 0.5 * r.rate_files_s + 0.5 * rate
            self._rate_at = (now, slow)
            self.disk.sample(now)
            self.report.device_bps = self.disk.peak
        rate = self.report.rate_files_s
        if rate <= 0:
            return o.start_files
        mean = max(sum(order.sizes) / max(len(order), 1), 1.0)
        lead = o.lead_s
        dev = self.disk.peak
        if dev > 0:  # the nearer the job's rate to the device's, the longer a refill takes
            lead /= max(0.25, 1 - rate * mean / dev)
        return max(o.min_files, min(o.max_files, math.ceil(rate * lead), len(order)))

    def _cap(self) -> int:
        """Most bytes ahead: the budget, the node's room above the floor, half the cgroup's room for cache."""
        cap = min(self.opts.budget, max(self.guard.room(), 0))
        if self._cgroup_room is not None:
            cap = min(cap, self._cgroup_room // 2)  # the job's own pages share the cgroup with the window
        return cap

    def _warm(self, now: float) -> None:
        """Issue the files from the front of the window (never behind the slowest reader) up to its end.

        Each file is issued at most once per epoch (`_warmed`: path -> epoch), so files the loader already
        read and dropped are not read again until the next epoch; the window never reaches a full epoch
        ahead, so it never laps the reader.
        """
        t = self.active
        if t is None:
            return
        slow = t.slowest(now)
        if slow is None or not len(t.order):
            return
        order, n = t.order, len(t.order)
        if t is not self._warm_for:
            self._warm_for, self._front = t, slow
        want = self._window(now, slow, order)
        r = self.report
        r.window_files, r.epoch = want, slow // n
        cap = self._cap()
        front = max(self._front, slow)
        ahead = order.span_bytes(slow + 1, front + 1)
        end = min(slow + want, slow + n - 1)
        if self.warmer.inflight > self._max_queued:
            end = front  # the pool is behind: queueing more would read files the reader passes meanwhile
        self._slow = slow  # read by the warmer's threads: files the reader reached meanwhile are dropped
        batch: list[tuple[str, int, int]] = []
        a = front + 1
        while a <= end:
            size = order.sizes[a % n]
            if ahead + size > cap:
                r.held_by_budget += 1
                break
            path = order.paths[a % n]
            if self._warmed.get(path) != a // n:
                self._warmed[path] = a // n
                batch.append((path, size, a))
            ahead += size
            a += 1
        self._front = a - 1 if a - 1 > front else front
        # one task a file, in order: the pool's FIFO queue then hands the disk the nearest file first
        # (batches of 8 a thread put files 8 apart in flight together, the reader's next one among the last);
        # small files go in eights, so io_uring gets them in one call
        small = [(p, n) for p, n, _a in batch if n < self.warmer.small]
        for i in range(0, len(small), 8):
            self.warmer.submit(small[i:i + 8])
        for p, n, at in batch:
            if n >= self.warmer.small:
                self.warmer.submit([(p, n)], functools.partial(self._ahead, at))
        r.ahead_files, r.ahead_bytes = max(self._front - slow, 0), ahead
        r.max_ahead_bytes = max(r.max_ahead_bytes, ahead)

    def _ahead(self, at: int) -> bool:
        """Is absolute position `at` still ahead of the slowest reader (as of the last tick)?"""
        return at > self._slow

    # -- the loop -----------------------------------------------------------------------------------
    def tick(self) -> str | None:
        """One look and one round of warming; the reason to stop, or None to go on."""
        now = self.clock()
        if not procfiles.alive(self.host, self.pid):
            return "the process exited"
        if now - self._guard_at >= 0.5:
            self._guard_at = now
            # room is re-read each time: the window is what the job reads next, so reclaimable cache counts
            self.guard.before = meminfo(self.host)
            self._cgroup_room = cgroup_cache_room(self.host)
            why = self.guard.check()
            if why is not None:
                return why
        self._observe(now)
        why = self._decide()
        if why is not None:
            return why
        self._warm(now)
        return None

    def run(self) -> FollowReport:
        """Loop until the job ends, it reads at random, memory runs short, or `stop_event` is set."""
        o = self.opts
        try:
            while not self.stop_event.is_set():
                why = self.tick()
                if why is None and o.max_seconds is not None and self.clock() - self._t0 >= o.max_seconds:
                    why = f"--seconds {o.max_seconds:g} elapsed"
                if why is not None:
                    self.report.stopped = why
                    break
                self.stop_event.wait(o.interval_s)
            else:
                self.report.stopped = "asked to stop"
        finally:
            self.warmer.close()
            self.sync()
        return self.report

    def sync(self) -> None:
        """Copy the warmer's counters into the report (they change from its threads)."""
        c, r = self.warmer.counts, self.report
        r.files_warmed, r.bytes_warmed, r.vanished, r.shrunk, r.failed = (
            c.files, c.bytes, c.vanished, c.shrunk, c.failed)
        r.passed = c.passed
        r.seconds = self.clock() - self._t0
        if self.active is not None:
            r.order = self.active.order.source
        elif self.primary is not None:
            r.order = self.primary.order.source
        if c.last_error and not any(n.startswith("last error") for n in r.notes):
            r.notes.append(f"last error: {c.last_error}")


def summary(r: FollowReport) -> str:
    """One line: what was warmed, how far ahead, and why it stopped."""
    extra = [f"{n} {w}" for n, w in ((r.vanished, "vanished"), (r.shrunk, "shrank"), (r.failed, "failed"),
                                     (r.passed, "passed by the reader before their turn")) if n]
    return (f"followed pid {r.pid} for {r.seconds:.1f}s ({r.order or 'no order found'}): warmed {r.files_warmed} "
            f"file(s), {human(r.bytes_warmed)} with {r.method}; up to {human(r.max_ahead_bytes)} ahead of the slowest "
            f"of {r.readers} reader(s) at {r.rate_files_s:.0f} files/s" + (f"; {', '.join(extra)}" if extra else "")
            + (f"; stopped: {r.stopped}" if r.stopped else ""))
