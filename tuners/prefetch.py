"""Page-cache warming: read the files a job reads next with a deep queue, inside a memory budget.

`warm(paths, options)` reads files into the page cache through io_uring (`prefetch_uring`) or, where
io_uring is missing or forbidden, a thread pool of preads (or fire-and-forget
posix_fadvise(WILLNEED)); the report says which ran. It never evicts what the node caches: by
default it only fills free memory above a floor (MemFree - floor, `allow_evict` widens that to
MemAvailable), re-checks /proc/meminfo and the PSI memory stall share while it reads, and stops
with the reason under pressure. Bad input (missing, unreadable, not a regular file) is one line
per path and the rest goes on. `Prefetcher` is the same engine behind a background thread for a
DataLoader: `feed()` the paths in sampler order, `advance()` as batches are consumed.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import mmap
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.storage import parse_mountinfo

from . import prefetch_uring
from .base import TuneError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
ENGINES = ("auto", "io_uring", "threads", "fadvise")
ORDERS = ("listed", "sorted")
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": 1000, "kib": KiB, "m": MiB, "mb": 1000**2, "mib": MiB,
          "g": GiB, "gb": 1000**3, "gib": GiB, "t": 1 << 40, "tb": 1000**4, "tib": 1 << 40}


class PrefetchError(TuneError):
    """Bad prefetch options (a TuneError: the CLI prints it as one line, exit 2)."""


def parse_size(text: str | int, what: str = "size") -> int:
    """'1MiB', '8G', '4096' -> bytes (binary units for K/M/G/T, decimal for KB/MB/GB/TB)."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise PrefetchError(f"{what}: expected a size such as 1MiB, 512K or 8GiB, got {text!r:.40}")
    return int(float(m.group(1)) * _UNITS[unit])


def human(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class PrefetchOptions:
    depth: int = 32  # reads in flight
    block_size: int = MiB
    budget: int = 8 * GiB  # at most this many bytes read per run
    order: str = "listed"  # listed: as given (directories walked in name order); sorted: by path
    engine: str = "auto"
    floor: int | None = None  # keep this much memory free; None: max(512 MiB, 5% of MemTotal)
    psi_max_pct: float = 10.0  # stop when PSI memory `some` exceeds this share of wall time
    allow_evict: bool = False  # room is MemAvailable (reclaims cold cache), not just MemFree
    check_every_s: float = 0.2

    def check(self) -> None:
        if not 1 <= self.depth <= 4096:
            raise PrefetchError(f"depth: expected 1..4096 reads in flight, got {self.depth}")
        if not 4 * KiB <= self.block_size <= 64 * MiB or self.block_size % 4096:
            raise PrefetchError(f"block size: expected a multiple of 4 KiB between 4 KiB and 64 MiB, "
                                f"got {self.block_size}")
        if self.depth * self.block_size > 2 * GiB:
            raise PrefetchError(f"depth x block size = {human(self.depth * self.block_size)} of buffers; keep it "
                                "under 2 GiB")
        if self.budget <= 0:
            raise PrefetchError(f"budget: expected a positive size, got {self.budget}")
        if self.order not in ORDERS:
            raise PrefetchError(f"order: expected one of {', '.join(ORDERS)}, got {self.order!r}")
        if self.engine not in ENGINES:
            raise PrefetchError(f"engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")


@dataclass
class FileResult:
    path: str
    size: int = 0
    bytes_read: int = 0
    status: str = "pending"  # warmed | partial | skipped | failed
    note: str = ""


@dataclass
class PrefetchReport:
    engine: str
    engine_why: str
    files: list[FileResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # per input path (tmpfs, empty dir) and the run
    bytes_read: int = 0
    seconds: float = 0.0
    stopped: str | None = None  # memory pressure or a full page cache
    mem_before: dict[str, int] = field(default_factory=dict)
    mem_after: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def gbps(self) -> float:
        return self.bytes_read / self.seconds / 1e9 if self.seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.stopped else 0


# -- memory ----------------------------------------------------------------------------------------

def meminfo(host: Host) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in host.read("/proc/meminfo").splitlines():
        k, _, v = line.partition(":")
        parts = v.split()
        if parts and parts[0].isdigit():
            out[k.strip()] = int(parts[0]) * (KiB if parts[1:] == ["kB"] else 1)
    for k in ("MemTotal", "MemFree", "MemAvailable"):
        if k not in out:
            raise ProbeError(f"/proc/meminfo: no {k}")
    return out


def _psi_some_total_us(host: Host) -> int | None:
    try:
        text = host.read("/proc/pressure/memory")
    except ProbeError:
        return None  # no PSI (kernel without it, or psi=0): MemAvailable is the only guard
    m = re.search(r"^some .*total=(\d+)", text, re.M)
    return int(m.group(1)) if m else None


class MemoryGuard:
    """Room to fill before reading, and the reason to stop while reading (counter deltas, not avg10)."""

    def __init__(self, host: Host, opts: PrefetchOptions, clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.opts, self.clock = host, opts, clock
        self.before = meminfo(host)
        self.floor = opts.floor if opts.floor is not None else max(512 * MiB, self.before["MemTotal"] // 20)
        self._psi, self._t = _psi_some_total_us(host), clock()

    def _free(self, m: dict[str, int]) -> int:
        return m["MemAvailable"] if self.opts.allow_evict else min(m["MemFree"], m["MemAvailable"])

    def room(self) -> int:
        return self._free(self.before) - self.floor

    def full_message(self, room: int) -> str:
        m, what = self.before, "MemAvailable" if self.opts.allow_evict else "MemFree"
        return (f"page cache full: {what} {human(self._free(m))} is not above the floor {human(self.floor)} "
                f"(page cache {human(m.get('Cached', 0))}); warming would evict cached pages"
                + ("" if self.opts.allow_evict else " (--allow-evict lets it reclaim cold cache)"))

    def check(self) -> str | None:
        """None to go on, or why to stop."""
        m = meminfo(self.host)
        if m["MemAvailable"] < self.floor:
            return f"memory pressure: MemAvailable {human(m['MemAvailable'])} below the floor {human(self.floor)}"
        if not self.opts.allow_evict and m["MemFree"] < self.floor:
            return (f"page cache full: MemFree {human(m['MemFree'])} reached the floor {human(self.floor)}; "
                    "stopped before evicting cached pages")
        psi, t = _psi_some_total_us(self.host), self.clock()
        if psi is not None and self._psi is not None and t > self._t:
            share = (psi - self._psi) / ((t - self._t) * 1e6) * 100
            if share > self.opts.psi_max_pct:
                return f"memory pressure: PSI memory some {share:.0f}% of the last {t - self._t:.1f}s"
        self._psi, self._t = psi, t
        return None


# -- the file list ----------------------------------------------------------------------------------

def expand(paths: Iterable[str], order: str) -> tuple[list[FileResult], list[str]]:
    """Regular files under `paths` (directories walked, symlinked directories not followed), and notes.

    A missing or special path becomes a failed FileResult in its place, so it is reported in order.
    """
    files: list[FileResult] = []
    notes: list[str] = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            files.append(FileResult(p, status="failed", note=exc.strerror or str(exc)))
            continue
        if stat.S_ISDIR(st.st_mode):
            found: list[FileResult] = []

            def walk_error(exc: OSError, top: str = p, found: list[FileResult] = found) -> None:  # one line
                found.append(FileResult(exc.filename or top, status="failed", note=exc.strerror or str(exc)))

            for d, dirs, names in os.walk(p, onerror=walk_error):
                dirs.sort()
                for n in sorted(names):
                    found.extend(_one(os.path.join(d, n)))
            if not found:
                notes.append(f"{p}: empty directory, nothing to warm")
            files += found
        else:
            files += _one(p, st)
    if order == "sorted":
        files.sort(key=lambda f: f.path)
    return files, notes


def _one(path: str, st: os.stat_result | None = None) -> list[FileResult]:
    try:
        st = st or os.stat(path)
    except OSError as exc:  # a dangling symlink in a directory
        return [FileResult(path, status="failed", note=exc.strerror or str(exc))]
    if not stat.S_ISREG(st.st_mode):
        kind = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFBLK: "a block device",
                stat.S_IFCHR: "a character device"}.get(stat.S_IFMT(st.st_mode), "not a regular file")
        return [FileResult(path, status="failed", note=f"{kind}, not a regular file; not read")]
    return [FileResult(path, size=st.st_size)]


def no_block_device_notes(host: Host, paths: Iterable[str]) -> list[str]:
    """'PATH: on tmpfs (no block device): warmed anyway' for inputs on tmpfs, NFS, FUSE and the like."""
    try:
        mounts = parse_mountinfo(host.read("/proc/self/mountinfo"))
    except ProbeError as exc:
        return [f"cannot tell which paths have a block device: {exc.reason}"]
    out = []
    for p in paths:
        real = os.path.realpath(p)
        best = max((m for m in mounts if real == m[1] or real.startswith(m[1].rstrip("/") + "/")),
                   key=lambda m: len(m[1]), default=None)
        if best is not None and best[0].startswith("0:"):
            extra = " (already in RAM: warming only reads it)" if best[2] in ("tmpfs", "ramfs") else ""
            out.append(f"{p}: on {best[2]} (no block device): warmed anyway{extra}")
    return out


def extents(fd: int, size: int) -> list[tuple[int, int]]:
    """(offset, length) of the data in a file: holes of sparse files are skipped (SEEK_DATA/SEEK_HOLE)."""
    out, off = [], 0
    try:
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole from here to the end
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, end - start))
            off = end
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
            raise
        return [(0, size)]  # a file system without SEEK_DATA: read it all
    return out


# -- the I/O engines ----------------------------------------------------------------------------------

@dataclass
class _Chunk:
    file: _Open
    offset: int
    length: int


@dataclass
class _Open:
    result: FileResult
    fd: int
    outstanding: int = 0
    planned: bool = False  # every chunk handed out

    def maybe_close(self) -> None:
        if self.planned and self.outstanding == 0 and self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Buffers:
    """`depth` page-aligned scratch buffers (anonymous mmap), handed out by slot number."""

    def __init__(self, depth: int, size: int) -> None:
        self.map = mmap.mmap(-1, depth * size)
        self._view = ctypes.c_char.from_buffer(self.map)
        self.base, self.size = ctypes.addressof(self._view), size
        self.free = list(range(depth))

    def addr(self, slot: int) -> int:
        return self.base + slot * self.size

    def mem(self, slot: int) -> memoryview:
        return memoryview(self.map)[slot * self.size:(slot + 1) * self.size]

    def close(self) -> None:
        del self._view
        self.map.close()


class _UringIO:
    def __init__(self, depth: int, block: int) -> None:
        self.ring = prefetch_uring.Ring(depth)
        self.bufs = _Buffers(depth, block)
        self.inflight: dict[int, _Chunk] = {}

    def can_submit(self) -> bool:
        return bool(self.bufs.free)

    def submit(self, c: _Chunk) -> None:
        slot = self.bufs.free.pop()
        self.inflight[slot] = c
        self.ring.read(c.file.fd, self.bufs.addr(slot), c.length, c.offset, slot)

    def reap(self) -> list[tuple[_Chunk, int]]:
        out = []
        for comp in self.ring.submit_and_wait(1 if self.inflight else 0):
            out.append((self.inflight.pop(comp.tag), comp.res))
            self.bufs.free.append(comp.tag)
        return out

    def close(self) -> None:
        self.ring.close()
        self.bufs.close()


class _ThreadIO:
    """A pool of `depth` threads doing preads (the GIL is released in the syscall) or WILLNEED advice."""

    def __init__(self, depth: int, block: int, fadvise: bool) -> None:
        self.pool = ThreadPoolExecutor(depth, thread_name_prefix="nodetune-prefetch")
        self.bufs = None if fadvise else _Buffers(depth, block)
        self.depth = depth
        self.inflight: dict[Future[int], tuple[_Chunk, int]] = {}

    def can_submit(self) -> bool:
        return len(self.inflight) < self.depth

    def submit(self, c: _Chunk) -> None:
        if self.bufs is None:
            # Fire and forget: the kernel queues readahead and returns; bytes are counted as asked.
            fut = self.pool.submit(self._advise, c.file.fd, c.offset, c.length)
            self.inflight[fut] = (c, -1)
        else:
            slot = self.bufs.free.pop()
            fut = self.pool.submit(self._pread, c.file.fd, self.bufs.mem(slot)[:c.length], c.offset)
            self.inflight[fut] = (c, slot)

    @staticmethod
    def _advise(fd: int, off: int, length: int) -> int:
        os.posix_fadvise(fd, off, length, os.POSIX_FADV_WILLNEED)
        return length

    @staticmethod
    def _pread(fd: int, buf: memoryview, off: int) -> int:
        return os.preadv(fd, [buf], off)

    def reap(self) -> list[tuple[_Chunk, int]]:
        if not self.inflight:
            return []
        done, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            c, slot = self.inflight.pop(fut)
            if self.bufs is not None:
                self.bufs.free.append(slot)
            exc = fut.exception()
            if exc is None:
                out.append((c, fut.result()))
            elif isinstance(exc, OSError):
                out.append((c, -(exc.errno or errno.EIO)))
            else:
                raise exc
        return out

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.bufs is not None:
            self.bufs.close()


def choose_engine(host: Host, wanted: str) -> tuple[str, str]:
    """(engine, why): io_uring when it works here, else the pread thread pool."""
    if wanted in ("threads", "fadvise"):
        return wanted, f"{wanted} (asked for)"
    try:
        disabled: int | None = host.read_int("/proc/sys/kernel/io_uring_disabled")
    except ProbeError:
        disabled = None
    ok, why = prefetch_uring.available(disabled)
    if ok:
        return "io_uring", why
    if wanted == "io_uring":
        raise PrefetchError(f"--engine io_uring: {why}")
    return "threads", f"thread pool of preads, because {why}"


# -- the run ------------------------------------------------------------------------------------------

Progress = Callable[[int, int], None]  # (bytes read, bytes planned)


def warm(paths: Iterable[str], opts: PrefetchOptions, host: Host | None = None,
         progress: Progress | None = None, engine: tuple[str, str] | None = None,
         guard: MemoryGuard | None = None) -> PrefetchReport:
    """Read `paths` into the page cache; every path gets a FileResult, nothing raises for bad input."""
    opts.check()
    host = host or Host("/")
    name, why = engine or choose_engine(host, opts.engine)
    paths = list(paths)
    files, notes = expand(paths, opts.order)
    rep = PrefetchReport(name, why, files, notes + no_block_device_notes(host, paths))
    guard = guard or MemoryGuard(host, opts)
    rep.mem_before = guard.before
    room = guard.room()
    allowance = min(opts.budget, room)
    if room <= 0:
        rep.stopped = guard.full_message(room)
    elif room < opts.budget:
        rep.notes.append(f"memory: only {human(room)} free above the floor {human(guard.floor)}; "
                         f"reading at most that (budget {human(opts.budget)})")
    t0 = time.monotonic()
    io: _UringIO | _ThreadIO = (_UringIO(opts.depth, opts.block_size) if name == "io_uring"
                                else _ThreadIO(opts.depth, opts.block_size, name == "fadvise"))
    try:
        _run(rep, io, opts, guard, max(allowance, 0), progress)
    finally:
        io.close()
    rep.seconds = time.monotonic() - t0
    rep.bytes_read = sum(f.bytes_read for f in files)
    rep.mem_after = meminfo(host)
    return rep


def _chunks(rep: PrefetchReport, opts: PrefetchOptions, allowance: int,
            stop: Callable[[], str | None]) -> Iterator[_Chunk]:
    """Chunks of every file in order, opening each as it comes; budget and stop checked per chunk."""
    left = allowance
    for f in rep.files:
        if f.status != "pending":
            continue
        why = stop()
        if why is not None or left <= 0:
            f.status, f.note = "skipped", (f"stopped: {why}" if why else f"over the budget ({human(opts.budget)})")
            continue
        try:
            fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            f.status, f.note = "failed", exc.strerror or str(exc)
            continue
        o = _Open(f, fd)
        try:
            ext = extents(fd, f.size)
        except OSError as exc:
            f.status, f.note = "failed", exc.strerror or str(exc)
            o.planned = True
            o.maybe_close()
            continue
        data = sum(n for _, n in ext)
        if data < f.size * 0.9 and f.size > 64 * KiB:
            f.note = f"sparse: {human(data)} of {human(f.size)} is data; holes skipped"
        if data > left:
            f.note = f"larger than the budget left ({human(left)}): the first {human(left)} of {human(data)} only"
        f.status = "warming"
        for off, n in ext:
            while n > 0 and left > 0:
                if stop() is not None:
                    break
                step = min(n, opts.block_size, left)
                o.outstanding += 1
                left -= step
                yield _Chunk(o, off, step)
                off, n = off + step, n - step
        o.planned = True
        o.maybe_close()


def _run(rep: PrefetchReport, io: _UringIO | _ThreadIO, opts: PrefetchOptions, guard: MemoryGuard,
         allowance: int, progress: Progress | None) -> None:
    planned = min(allowance, sum(f.size for f in rep.files if f.status == "pending"))
    done = 0
    last = time.monotonic()

    def stop() -> str | None:
        nonlocal last
        if rep.stopped is None and time.monotonic() - last >= opts.check_every_s:
            last = time.monotonic()
            rep.stopped = guard.check()
        return rep.stopped

    gen = _chunks(rep, opts, allowance, stop)
    retry: collections.deque[_Chunk] = collections.deque()
    exhausted = False
    busy = 0
    while True:
        while io.can_submit() and not exhausted:
            c = retry.popleft() if retry else next(gen, None)
            if c is None:
                exhausted = True
                break
            io.submit(c)
            busy += 1
        if busy == 0:
            break
        for c, res in io.reap():
            busy -= 1
            f = c.file.result
            c.file.outstanding -= 1
            if res < 0:
                if f.status != "failed":
                    f.status, f.note = "failed", f"read at {c.offset}: {os.strerror(-res)}"
            elif 0 < res < c.length and f.status != "failed":  # a short read before EOF: the rest again
                f.bytes_read += res
                done += res
                c.file.outstanding += 1
                retry.append(_Chunk(c.file, c.offset + res, c.length - res))
            else:
                f.bytes_read += res
                done += res
            c.file.maybe_close()
        if progress is not None:
            progress(done, planned)
    for f in rep.files:
        if f.status != "warming":
            continue
        if rep.stopped and f.bytes_read < f.size and not f.note.startswith("sparse"):
            f.status, f.note = "partial", f"stopped: {rep.stopped}"
        else:
            f.status = "partial" if f.note.startswith("larger") else "warmed"


# -- the DataLoader API ---------------------------------------------------------------------------------

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
