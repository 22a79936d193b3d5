"""What a job reads next: an order of files (a directory in name order, a list file, or what was seen),
the readers' positions in it, and whether their steps follow it at all.

A reader is one (pid, fd) holding a file of the order open. Each time a reader is seen on a new file
its step (index delta, cyclic: the next epoch starts over) is scored against every candidate order;
a step is "in order" when it moves forward by at most `gap` files (DataLoader workers read batches
interleaved, so a worker's steps jump by the other workers' batches). Readers that follow no order
(a shuffled sampler) give forward steps this short only by chance, which is how random access shows.
"""

from __future__ import annotations

import os
import stat
from collections import Counter
from dataclasses import dataclass, field

from nodetune.probes.host import Host, ProbeError

from .options import PrefetchError

MAX_FILES = 2_000_000


@dataclass
class Order:
    """Files in the order the job is expected to read them, with their sizes when listed."""

    source: str  # "name order of DIR" | "list FILE" | "order seen"
    paths: list[str] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {p: i for i, p in enumerate(self.paths)}

    def __len__(self) -> int:
        return len(self.paths)

    def append(self, path: str, size: int) -> None:
        self.index[path] = len(self.paths)
        self.paths.append(path)
        self.sizes.append(size)
        self._cum: list[int] = []

    def span_bytes(self, a0: int, a1: int) -> int:
        """Bytes listed from absolute position a0 up to a1 (exclusive; positions wrap at the end: epochs)."""
        n = len(self.paths)
        if a1 <= a0 or not n:
            return 0
        cum = getattr(self, "_cum", [])
        if len(cum) != n + 1:
            cum = [0]
            for size in self.sizes:
                cum.append(cum[-1] + size)
            self._cum = cum
        return (a1 // n - a0 // n) * cum[n] + cum[a1 % n] - cum[a0 % n]


def _walk(host: Host, top: str, out: list[tuple[str, int]]) -> None:
    for name in host.listdir(top):  # sorted: name order
        p = f"{top.rstrip('/')}/{name}"
        try:
            st = host.stat(p)
        except ProbeError:
            continue  # vanished while listed
        if stat.S_ISDIR(st.st_mode) and not host.is_link(p):
            _walk(host, p, out)
        elif stat.S_ISREG(st.st_mode):
            out.append((p, st.st_size))
        if len(out) >= MAX_FILES:
            return


def from_dir(host: Host, top: str) -> Order:
    """Regular files under `top` (subdirectories walked), in name order, as a DataLoader over it sees them."""
    found: list[tuple[str, int]] = []
    _walk(host, top, found)
    return Order(f"name order of {top}", [p for p, _ in found], [n for _, n in found])


def from_list(host: Host, list_file: str) -> Order:
    """One path a line (relative ones are relative to the list's directory); '#' comments and blanks skipped."""
    try:
        text = host.read(list_file, limit=256 << 20)
    except ProbeError as exc:
        raise PrefetchError(f"--list {list_file}: {exc.reason}") from None
    base = os.path.dirname(os.path.abspath(list_file))
    order = Order(f"list {list_file}")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = os.path.normpath(line if line.startswith("/") else os.path.join(base, line))
        if p not in order.index:
            try:
                size = host.stat(p).st_size
            except ProbeError:
                size = 0  # vanished or not there yet: counted when it is warmed
            order.append(p, size)
    if not order.paths:
        raise PrefetchError(f"--list {list_file}: no paths in it")
    return order


def common_dir(paths: list[str], max_up: int = 2) -> str | None:
    """The deepest directory holding every path, if it is at most `max_up` levels above each of them
    (a dataset's files, or its class subdirectories) and not the root; else None."""
    top = os.path.commonpath([os.path.dirname(p) for p in paths])
    if top in ("/", "") or any(os.path.relpath(p, top).count("/") >= max_up for p in paths):
        return None
    return top


def guess_dir(paths: list[str], max_up: int = 2) -> str | None:
    """The dataset directory behind files a job opened one after another, or None.

    The directory holding most of them wins, so a library or config the process keeps open is
    outvoted rather than widening the guess to `/`; files spread over sibling directories (an
    ImageFolder's classes) give their parent. At least two files must agree.
    """
    if len(paths) < 2:
        return None
    dirs = Counter(os.path.dirname(p) for p in paths)
    top, n = dirs.most_common(1)[0]
    parents = Counter(os.path.dirname(d) for d in dirs)  # sibling directories share a parent
    parent, siblings = parents.most_common(1)[0]
    if siblings >= 2 and sum(c for d, c in dirs.items() if os.path.dirname(d) == parent) > n:
        top, n = parent, sum(c for d, c in dirs.items() if os.path.dirname(d) == parent)
    if n < 2 or top in ("/", ""):
        return None
    return common_dir([p for p in paths if p.startswith(top + "/")], max_up)


@dataclass
class Reader:
    last: int  # index of the file it was last seen on
    epoch: int  # how many times it wrapped around the order
    seen_at: float
    pos: int = 0

    def absolute(self, n: int) -> int:
        return self.epoch * n + self.last


@dataclass
class Score:
    steps: int = 0
    in_order: int = 0

    @property
    def share(self) -> float:
        return self.in_order / self.steps if self.steps else 0.0


def step_in_order(prev: int, new: int, n: int, gap: int) -> bool:
    """Did a reader move forward by 1..gap files (wrapping at the end of the order)?"""
    d = (new - prev) % n if n else 0
    return 0 < d <= gap


def gap_for(n: int) -> int:
    """How far forward a step may jump and still count as following: workers' interleaved batches."""
    return max(16, min(n // 8, 1024))


@dataclass
class Tracker:
    """Readers' positions in one order; the slowest's absolute position is what the window follows."""

    order: Order
    stale_s: float = 2.0
    readers: dict[tuple[int, int], Reader] = field(default_factory=dict)
    score: Score = field(default_factory=Score)
    seeks: Score = field(default_factory=Score)  # offset moves within a file: forward ones are "in order"

    def observe(self, key: tuple[int, int], path: str, pos: int, now: float, score: bool = True) -> bool:
        """Record that reader `key` has `path` open at `pos`; False when the path is not in the order.

        `score=False` moves the reader without judging the step (a file the order only just learned of).
        """
        i = self.order.index.get(path)
        if i is None:
            return False
        n = len(self.order)
        r = self.readers.get(key)
        if r is None:
            self.readers[key] = Reader(i, self._epoch_near(i, now), now, pos)
            return True
        if i != r.last and score:
            self.score.steps += 1
            self.score.in_order += step_in_order(r.last, i, n, gap_for(n))
        elif i == r.last and pos != r.pos:
            self.seeks.steps += 1  # a reader that jumps back and forth within a file seeks at random
            self.seeks.in_order += pos > r.pos
        if i < r.last and (r.last - i) > n // 2:
            r.epoch += 1  # wrapped: the next epoch started
        r.last, r.seen_at, r.pos = i, now, pos
        return True

    def _epoch_near(self, i: int, now: float) -> int:
        """A new reader joins the epoch that puts it nearest the others (workers start together)."""
        live = [r for r in self.readers.values() if now - r.seen_at <= self.stale_s]
        if not live:
            return 0
        n = len(self.order)
        ref = min(r.absolute(n) for r in live)
        e = max(ref // n, 0)
        return min((e - 1, e, e + 1), key=lambda c: abs(c * n + i - ref)) if e > 0 else e

    def rebased(self, order: Order) -> Tracker:
        """The same readers and score on a fresh listing of the order (files added or gone shift indices)."""
        readers = {}
        for k, r in self.readers.items():
            i = order.index.get(self.order.paths[r.last]) if r.last < len(self.order) else None
            if i is not None:
                readers[k] = Reader(i, r.epoch, r.seen_at, r.pos)
        return Tracker(order, self.stale_s, readers, self.score, self.seeks)

    def slowest(self, now: float) -> int | None:
        """Absolute position (epoch * len + index) of the slowest reader seen in the last `stale_s`."""
        n = len(self.order)
        live = [r.absolute(n) for r in self.readers.values() if now - r.seen_at <= self.stale_s]
        return min(live) if live else None

    def forget_stale(self, now: float) -> None:
        for k in [k for k, r in self.readers.items() if now - r.seen_at > 10 * self.stale_s]:
            del self.readers[k]
