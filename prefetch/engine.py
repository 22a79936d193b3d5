"""Page-cache warming: read a list of files with a deep queue, inside a memory budget.

`warm(paths, options)` reads files into the page cache through io_uring (`uring`) or, where
io_uring is missing or forbidden, a thread pool of preads (or fire-and-forget
posix_fadvise(WILLNEED)); the report says which ran. It never evicts what the node caches: by
default it only fills free memory above a floor (see `guard`) and stops with the reason under
pressure. Bad input (missing, unreadable, not a regular file) is one line per path and the rest
goes on.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import mmap
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.storage import parse_mountinfo

from . import uring
from .guard import MemoryGuard, meminfo
from .options import FileResult, KiB, PrefetchError, PrefetchOptions, PrefetchReport, human

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
        self.ring = uring.Ring(depth)
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
    ok, why = uring.available(disabled)
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


