"""A minimal io_uring for page-cache warming: io_uring_setup/io_uring_enter through ctypes, rings mmapped.

Why raw syscalls and not a binding: the PyPI `liburing` wheel needs Linux 6.14+, `pyuring` ships
one wheel per CPython from a young single-author project; both would have to be carried to nodes
that can install nothing, and the system liburing.so (Debian liburing2) is not there either. Three
syscalls and three mmaps need no library and work from Linux 5.6 (IORING_OP_READ).

Only reads are issued, into scratch buffers nobody looks at: the point is the page cache they fill.
Ring indices are read and written with plain loads and stores, which is only safe on a
total-store-order CPU (x86-64); elsewhere `available()` says no and the thread pool is used.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

NR_SETUP, NR_ENTER = 425, 426  # the same number on every architecture (added after the syscall table merge)
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000
IORING_FEAT_SINGLE_MMAP = 1 << 0
IORING_ENTER_GETEVENTS = 1 << 0
IORING_OP_READ = 22
SQE_SIZE, CQE_SIZE = 64, 16


class _SqOff(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries", "flags", "dropped",
                                               "array", "resv1")] + [("user_addr", ctypes.c_uint64)]


class _CqOff(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint32) for n in ("head", "tail", "ring_mask", "ring_entries", "overflow", "cqes",
                                               "flags", "resv1")] + [("user_addr", ctypes.c_uint64)]


class _Params(ctypes.Structure):
    _fields_ = [*((n, ctypes.c_uint32) for n in ("sq_entries", "cq_entries", "flags", "sq_thread_cpu",
                                                 "sq_thread_idle", "features", "wq_fd")),
                ("resv", ctypes.c_uint32 * 3), ("sq_off", _SqOff), ("cq_off", _CqOff)]


class _Sqe(ctypes.Structure):
    _fields_ = [("opcode", ctypes.c_uint8), ("flags", ctypes.c_uint8), ("ioprio", ctypes.c_uint16),
                ("fd", ctypes.c_int32), ("off", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("len", ctypes.c_uint32), ("rw_flags", ctypes.c_uint32), ("user_data", ctypes.c_uint64),
                ("pad", ctypes.c_uint64 * 3)]


class _Cqe(ctypes.Structure):
    _fields_ = [("user_data", ctypes.c_uint64), ("res", ctypes.c_int32), ("flags", ctypes.c_uint32)]


assert ctypes.sizeof(_Params) == 120 and ctypes.sizeof(_Sqe) == SQE_SIZE and ctypes.sizeof(_Cqe) == CQE_SIZE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _sys(nr: int, *args: object) -> int:
    while True:
        r = int(_libc.syscall(ctypes.c_long(nr), *args))
        if r >= 0:
            return r
        e = ctypes.get_errno()
        if e != errno.EINTR:
            raise OSError(e, f"{'io_uring_setup' if nr == NR_SETUP else 'io_uring_enter'}: {os.strerror(e)}")


def available(disabled: int | None) -> tuple[bool, str]:
    """(usable, why), given kernel.io_uring_disabled (None: no such sysctl, before Linux 6.6)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return False, f"io_uring ring access here assumes x86-64 memory ordering (this CPU: {platform.machine()})"
    if disabled == 2:
        return False, "io_uring disabled for every process (kernel.io_uring_disabled = 2)"
    try:
        Ring(1).close()
    except OSError as exc:
        hint = " (kernel.io_uring_disabled = 1 and this user is not in kernel.io_uring_group)" if disabled == 1 else ""
        return False, f"io_uring unavailable: {exc.strerror or exc}{hint}"
    return True, f"io_uring (kernel {platform.release()})"


@dataclass
class Completion:
    tag: int
    res: int  # bytes read, or -errno


class Ring:
    """One io_uring instance: queue reads with `read()`, hand them in and reap with `submit_and_wait()`."""

    def __init__(self, entries: int) -> None:
        p = _Params()
        self.fd = _sys(NR_SETUP, ctypes.c_uint32(entries), ctypes.byref(p))
        self._maps: list[mmap.mmap] = []
        try:
            sq_size = p.sq_off.array + p.sq_entries * 4
            cq_size = p.cq_off.cqes + p.cq_entries * CQE_SIZE
            if p.features & IORING_FEAT_SINGLE_MMAP:
                sq = cq = self._map(max(sq_size, cq_size), IORING_OFF_SQ_RING)
            else:
                sq, cq = self._map(sq_size, IORING_OFF_SQ_RING), self._map(cq_size, IORING_OFF_CQ_RING)
            sqes = self._map(p.sq_entries * SQE_SIZE, IORING_OFF_SQES)
        except BaseException:
            self.close()
            raise
        u32 = ctypes.c_uint32
        self._sq_head, self._sq_tail = u32.from_buffer(sq, p.sq_off.head), u32.from_buffer(sq, p.sq_off.tail)
        self._sq_mask = u32.from_buffer(sq, p.sq_off.ring_mask).value
        self._sq_array = (u32 * p.sq_entries).from_buffer(sq, p.sq_off.array)
        self._sqes = (_Sqe * p.sq_entries).from_buffer(sqes)
        self._cq_head, self._cq_tail = u32.from_buffer(cq, p.cq_off.head), u32.from_buffer(cq, p.cq_off.tail)
        self._cq_mask = u32.from_buffer(cq, p.cq_off.ring_mask).value
        self._cqes = (_Cqe * p.cq_entries).from_buffer(cq, p.cq_off.cqes)
        self.entries = p.sq_entries
        self._pending = 0  # queued in the SQ, not yet handed to the kernel

    def _map(self, size: int, offset: int) -> mmap.mmap:
        m = mmap.mmap(self.fd, size, mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                      mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        self._maps.append(m)
        return m

    def read(self, fd: int, buf_addr: int, length: int, offset: int, tag: int) -> None:
        """Queue one read; the caller keeps the number in flight at most `entries`."""
        tail = self._sq_tail.value
        if ((tail - self._sq_head.value) & 0xFFFFFFFF) >= self.entries:
            raise RuntimeError("io_uring submission queue full: caller exceeded the ring's depth")
        i = tail & self._sq_mask
        s = self._sqes[i]
        ctypes.memset(ctypes.addressof(s), 0, SQE_SIZE)
        s.opcode, s.fd, s.off, s.addr, s.len, s.user_data = IORING_OP_READ, fd, offset, buf_addr, length, tag
        self._sq_array[i] = i
        self._sq_tail.value = (tail + 1) & 0xFFFFFFFF  # x86-64: stores are not reordered (see module doc)
        self._pending += 1

    def submit_and_wait(self, wait_nr: int = 1) -> Iterator[Completion]:
        """Hand queued reads to the kernel, wait for at least `wait_nr` completions, yield all that are done."""
        n, self._pending = self._pending, 0
        if n or wait_nr:
            _sys(NR_ENTER, ctypes.c_uint(self.fd), ctypes.c_uint(n), ctypes.c_uint(wait_nr),
                 ctypes.c_uint(IORING_ENTER_GETEVENTS if wait_nr else 0), None, ctypes.c_size_t(0))
        head = self._cq_head.value
        while head != self._cq_tail.value:
            c = self._cqes[head & self._cq_mask]
            yield Completion(int(c.user_data), int(c.res))
            head = (head + 1) & 0xFFFFFFFF
            self._cq_head.value = head

    def close(self) -> None:
        # ctypes views into the maps must go before the maps can close.
        for attr in ("_sq_head", "_sq_tail", "_sq_array", "_sqes", "_cq_head", "_cq_tail", "_cqes"):
            self.__dict__.pop(attr, None)
        for m in self._maps:
            m.close()
        self._maps.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Ring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
