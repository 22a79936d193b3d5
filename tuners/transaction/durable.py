"""File durability shared by the journal, the node lock and the open-transaction marker.

Every write goes through `JournalIO` (write, fsync, free space): the seam the fault-injection
tests use for short writes, ENOSPC and EIO, with no patching of `open` or `os`. Files are opened
only when they are regular files (a FIFO would hang a read), directories are created and fsynced
so a new file's entry survives a crash, and a whole file is replaced atomically (temp file in the
same directory, fsync, rename, fsync the directory).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from nodetune.probes import crashpoints
from nodetune.probes.host import file_kind

from ..errors import JournalError

_replaced = 0  # whole-file replacements by this process: the count crash points use


def _free_bytes(d: str) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding `d` (or its parent)."""
    while not os.path.isdir(d) and os.path.dirname(d) != d:
        d = os.path.dirname(d)
    s = os.statvfs(d)
    return s.f_bavail * s.f_frsize


@dataclass
class JournalIO:
    """The system calls journal (and open-transaction marker) writes go through: the seam tests use
    to inject short writes, ENOSPC and EIO."""

    write: Callable[[int, bytes], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    free_bytes: Callable[[str], int] = _free_bytes


def write_all(io: JournalIO, fd: int, data: bytes) -> None:
    """Write every byte or raise OSError; a short write is continued, no progress is an error."""
    view = memoryview(data)
    done = 0
    while done < len(data):
        n = io.write(fd, bytes(view[done:]))
        if n <= 0:
            raise OSError(errno.EIO, f"write made no progress after {done} of {len(data)} bytes")
        done += n


def open_regular(path: str, flags: int, mode: int = 0o600) -> int:
    """os.open that refuses what is not a regular file (a FIFO would hang a read; a device or a
    symlink is not ours to append to) before and after opening it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(st.st_mode):
            raise JournalError(f"{path}: {file_kind(st.st_mode)}, not a regular file; refused")
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise JournalError(f"{path}: {file_kind(st.st_mode)}, not a regular file; refused")
    return fd


def os_reason(exc: OSError) -> str:
    """The words of an OSError."""
    return exc.strerror or str(exc)



def fsync_dir(d: str, io: JournalIO | None = None) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        (io or JournalIO()).fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(d: str, io: JournalIO | None = None) -> None:
    """mkdir -p, fsyncing each parent whose entries changed."""
    if os.path.isdir(d):
        return
    parent = os.path.dirname(d)
    if parent and parent != d:
        makedirs_durable(parent, io)
    os.mkdir(d, 0o755)
    fsync_dir(parent or "/", io)




def replace_file(path: str, data: bytes, io: JournalIO | None = None) -> None:
    """Replace `path` with `data` atomically: a reader (or a crash) sees the old file or the new one.

    OSError when it cannot; the temp file is removed then."""
    global _replaced
    io = io or JournalIO()
    d = os.path.dirname(path) or "."
    base = os.path.basename(path)
    for name in os.listdir(d):  # a crashed writer's temp file (writers hold the node lock)
        if name.startswith(f"{base}.") and name.endswith(".tmp") and name[len(base) + 1:-4].isdigit():
            os.unlink(os.path.join(d, name))
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = open_regular(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        write_all(io, fd, data)
        io.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    _replaced += 1
    crashpoints.crash_if("replace_tmp_written", _replaced)
    os.replace(tmp, path)
    fsync_dir(d, io)
