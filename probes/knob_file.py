"""Replacing a knob that is a file on a disk, so that no crash can leave it empty.

A sysfs or procfs attribute is not a file on a disk: the kernel takes the whole value in one
write() and there is nothing to truncate, so `Host.write` keeps the plain write for it. A regular
file on a disk filesystem (a fake node tree, a mounted image: a file-backed root) would be
truncated by that open and filled by the write after it, and a SIGKILL between the two leaves it
empty. Those are replaced instead: a temp file in the same directory, written and fsynced, renamed
over the knob, the directory fsynced; a reader, or a crash, sees the old value or the new one.
Which kind a file is comes from its type (lstat) and its filesystem's magic number (fstatfs).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

from . import crashpoints

# statfs f_type of the kernel's pseudo filesystems (linux/magic.h): their files take plain writes.
PSEUDO_FS = {0x62656572: "sysfs", 0x9FA0: "proc", 0x63677270: "cgroup2", 0x27E0EB: "cgroup",
             0x64626720: "debugfs", 0x74726163: "tracefs", 0x73636673: "securityfs", 0x62656570: "configfs",
             0xCAFE4A11: "bpf", 0x1CD1: "devpts", 0x42494E4D: "binfmt_misc", 0x6E736673: "nsfs"}
_STATFS_BYTES = 256  # larger than struct statfs on every Linux ABI; f_type is its first word

_libc: ctypes.CDLL | None = None
_replaced = 0  # replacements by this process: the count crash points use


def fs_magic(fd: int) -> int | None:
    """The fstatfs f_type of the filesystem holding open file `fd`; None when it cannot tell."""
    global _libc
    try:
        if _libc is None:
            from ctypes.util import find_library  # imported here: only a knob write needs it

            _libc = ctypes.CDLL(find_library("c") or "libc.so.6", use_errno=True)
        buf = ctypes.create_string_buffer(_STATFS_BYTES)
        if _libc.fstatfs(fd, buf) != 0:
            return None
    except (OSError, AttributeError):  # no libc to load
        return None
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def replaceable(dfd: int, name: str, live: bool) -> int | None:
    """The mode of `name` in directory `dfd` when it is a regular file on a disk filesystem (to be
    replaced), else None (absent, special, a symlink, or a kernel attribute: a plain write).

    `live`: the node is this machine; when the filesystem cannot be told, its knobs are taken
    for kernel attributes (every knob there is in /sys or /proc) and a fake root's for files."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    magic = fs_magic(dfd)
    if (live if magic is None else magic in PSEUDO_FS):
        return None
    return stat.S_IMODE(st.st_mode)


def replace_in(dfd: int, name: str, data: bytes, mode: int) -> None:
    """Replace `name` in directory `dfd` with `data` atomically; OSError when it cannot (the temp
    file is removed then; one a crashed writer left is removed by the next replacement)."""
    global _replaced
    stale = f".{name}.nodetune-"
    for leftover in os.listdir(dfd):  # knob writers hold the node's tuning lock: one at a time
        if leftover.startswith(stale) and leftover.endswith(".tmp"):
            os.unlink(leftover, dir_fd=dfd)
    tmp = f"{stale}{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, "write made no progress")
            view = view[n:]
        os.fsync(fd)
    except OSError:
        os.close(fd)
        os.unlink(tmp, dir_fd=dfd)
        raise
    os.close(fd)
    _replaced += 1
    crashpoints.crash_if("knob_tmp_written", _replaced)
    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    os.fsync(dfd)
