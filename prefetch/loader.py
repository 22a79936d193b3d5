"""`Prefetcher`: the engine behind a background thread, fed a DataLoader sampler's order."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from nodetune.probes.host import Host

from .engine import choose_engine, warm
from .guard import MemoryGuard
from .options import PrefetchError, PrefetchOptions, parse_size


@dataclass
class PrefetcherStats:
    fed: int = 0
    warmed_files: int = 0
    bytes_read: int = 0
    dropped: int = 0  # fed but passed by the consumer (advance) before they were warmed
    failed: int = 0
    engine: str = ""
    stopped: str | None = None


class Prefetcher:
    """Warm files in the background, at most `ahead_files` files and `budget` bytes ahead of the consumer.

    `feed(paths)` queues paths in the order they will be read and returns at once; `advance(n)` says the
    consumer moved past the next n fed paths (one call per batch from the training loop works with
    DataLoader workers, which run in other processes); `done(path)` releases one path. The thread stops
    for good under memory pressure (`stats.stopped` says why). Use it as a context manager or call close().
    """

    def __init__(self, budget: str | int = "4GiB", ahead_files: int = 64, depth: int = 32,
                 block_size: str | int = "1MiB", engine: str = "auto", host: Host | None = None,
                 floor: str | int | None = None) -> None:
        self.opts = PrefetchOptions(depth=depth, block_size=parse_size(block_size, "block_size"),
                                    budget=parse_size(budget, "budget"), engine=engine,
                                    floor=None if floor is None else parse_size(floor, "floor"))
        self.opts.check()
        if ahead_files < 1:
            raise PrefetchError(f"ahead_files: expected at least 1, got {ahead_files}")
        self.ahead_files = ahead_files
        self.host = host or Host("/")
        self._engine = choose_engine(self.host, engine)
        self.stats = PrefetcherStats(engine=self._engine[0])
        self._queue: collections.deque[str] = collections.deque()  # fed, not yet warmed
        self._ahead: collections.OrderedDict[str, int] = collections.OrderedDict()  # warmed, bytes
        self._cv = threading.Condition()
        self._closed = False
        self._idle = True
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="nodetune-prefetcher", daemon=True)
        self._thread.start()

    def feed(self, paths: Iterable[str]) -> None:
        with self._cv:
            new = list(paths)
            self._queue.extend(new)
            self.stats.fed += len(new)
            self._cv.notify_all()

    def advance(self, n: int = 1) -> None:
        with self._cv:
            for _ in range(n):
                if self._ahead:
                    self._ahead.popitem(last=False)
                elif self._queue:
                    self._queue.popleft()
                    self.stats.dropped += 1
            self._cv.notify_all()

    def done(self, path: str) -> None:
        with self._cv:
            self._ahead.pop(path, None)
            self._cv.notify_all()

    def _room(self) -> bool:
        return (len(self._ahead) < self.ahead_files and sum(self._ahead.values()) < self.opts.budget)

    def _loop(self) -> None:
        try:
            guard = MemoryGuard(self.host, self.opts)
            while True:
                with self._cv:
                    while not self._closed and not (self._queue and self._room()):
                        self._idle = True
                        self._cv.notify_all()
                        self._cv.wait()
                    if self._closed:
                        return
                    self._idle = False
                    take = min(len(self._queue), self.ahead_files - len(self._ahead), 8)
                    batch = [self._queue.popleft() for _ in range(take)]
                    left = self.opts.budget - sum(self._ahead.values())
                opts = PrefetchOptions(**{**self.opts.__dict__, "budget": max(left, 4096)})
                guard.opts = opts
                rep = warm(batch, opts, self.host, engine=self._engine, guard=guard)
                with self._cv:
                    for f in rep.files:
                        if f.status == "failed":
                            self.stats.failed += 1
                        elif f.bytes_read:
                            self._ahead[f.path] = f.bytes_read
                            self.stats.warmed_files += 1
                            self.stats.bytes_read += f.bytes_read
                    if rep.stopped:
                        self.stats.stopped = rep.stopped
                        self._closed = True
                        self._cv.notify_all()
                        return
        except BaseException as exc:  # kept for close() to raise in the caller's thread
            with self._cv:
                self._error, self._closed = exc, True
                self._cv.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until everything that fits is warmed (tests and benchmarks; loaders need not call it)."""
        with self._cv:
            return self._cv.wait_for(lambda: self._closed or (self._idle and not (self._queue and self._room())),
                                     timeout)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SamplerFeed:
    """A sampler wrapper for DataLoader(sampler=...): each epoch draws the sampler's order once, feeds the
    Prefetcher the paths in that order, and yields the same indices, so a shuffled order is warmed as read.

    `path_of(index)` names the file a dataset index reads. Call `prefetcher.advance(batch_size)` per batch.
    """

    def __init__(self, sampler: Iterable[int], path_of: Callable[[int], str], prefetcher: Prefetcher) -> None:
        self.sampler, self.path_of, self.prefetcher = sampler, path_of, prefetcher

    def __iter__(self) -> Iterator[int]:
        order = list(self.sampler)
        self.prefetcher.feed(self.path_of(i) for i in order)
        return iter(order)

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]
