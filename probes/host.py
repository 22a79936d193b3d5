"""The node's file systems, seen through one root.

Every probe and tuner reads and writes `/proc`, `/sys`, `/dev`, `/etc` and `/run` through a
`Host`, so a test or an offline run points the whole program at a fake tree or a mounted image
(node_exporter's `--path.procfs/--path.sysfs` idea) and nothing patches `open`.

Nothing outside the root is read or written. Node paths are resolved the way a chroot at the
root would resolve them: an absolute symlink `/x` inside the tree means `<root>/x`, and a `..`
that climbs above the root (in the path asked for, or in a relative symlink on the way) is
refused with `PathOutsideRoot`. On the live root `/` that is a no-op, and costs nothing beyond a
substring test. Under another root, each read is one `openat2(RESOLVE_BENEATH)` against the
root's directory (the kernel refuses any escape in the same single syscall); only a path that
meets an absolute symlink, or a kernel without openat2, takes the careful walk in Python.
"""

from __future__ import annotations

import errno
import os
import platform
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .knob_file import replace_in, replaceable

T = TypeVar("T")

# Far above the kernel's NR_CPUS maximum (8192): a longer CPU list is damaged or hostile, and
# expanding "0-99999999" would cost gigabytes before anything could look at it.
MAX_CPUS = 65536
# The biggest text file a probe reads whole (/proc/PID/numa_maps of a large job, mountinfo of a
# node with thousands of mounts stay far below it).
READ_LIMIT = 64 << 20
MAX_SYMLINKS = 40  # as the kernel's own limit on links followed in one lookup


class ProbeError(Exception):
    """A value could not be read; `reason` is the one line a person will see."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KnobWriteError(Exception):
    """A write to a kernel knob failed; `reason` names the file and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PathOutsideRoot(ProbeError, KnobWriteError):
    """A node path that would leave the root; refused before anything is opened.

    Both a ProbeError (a read reports it as the value's missing reason) and a KnobWriteError
    (a write, e.g. a rollback of a damaged journal, reports it as the knob that failed).
    """


def _reason(exc: OSError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path}: not present"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory"
    return f"{path}: {exc.strerror or exc}"


def _oserror(code: int) -> OSError:
    return OSError(code, os.strerror(code))  # OSError(ENOENT, ...) is a FileNotFoundError


# -- openat2 through ctypes (the stdlib has no binding) ------------------------------------------
# 437 on every architecture that joined the unified syscall table; others use the Python walk.
_SYS_OPENAT2 = 437
_OPENAT2_MACHINES = ("x86_64", "aarch64", "arm64", "riscv64", "ppc64le", "s390x", "armv7l", "armv8l")
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_FALLBACK = (errno.EXDEV, errno.ELOOP, errno.EAGAIN)  # escape attempt, link loop, rename race


class _Openat2:
    """openat2(2) with RESOLVE_BENEATH, probed once per process."""

    def __init__(self) -> None:
        import ctypes  # only fake roots pay for the import

        self._ctypes = ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        self._fn = libc.syscall
        self._fn.restype = ctypes.c_long
        self._fn.argtypes = (ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)

        class OpenHow(ctypes.Structure):
            _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))

        self._how_cls = OpenHow
        self._hows: dict[tuple[int, int], Any] = {}
        self._addrs: dict[tuple[int, int], int] = {}  # an address per struct: no byref() per open

    def open(self, dirfd: int, rel: bytes, flags: int, mode: int = 0) -> int:
        """An fd, or OSError with the kernel's errno."""
        addr = self._addrs.get((flags, mode))
        if addr is None:
            how = self._how_cls(flags, mode, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
            self._hows[(flags, mode)] = how  # kept alive: the syscall gets its address
            addr = self._addrs[(flags, mode)] = self._ctypes.addressof(how)
        fd = self._fn(_SYS_OPENAT2, dirfd, rel, addr, 24)
        if fd < 0:
            raise _oserror(self._ctypes.get_errno())
        return int(fd)


_openat2: _Openat2 | None = None
_openat2_probed = False
_lock = threading.Lock()


def _get_openat2() -> _Openat2 | None:
    """The openat2 wrapper where this kernel has it (5.6+) and no seccomp filter hides it."""
    global _openat2, _openat2_probed
    if not _openat2_probed:
        with _lock:
            if not _openat2_probed:
                if sys.platform.startswith("linux") and platform.machine() in _OPENAT2_MACHINES:
                    o = _Openat2()
                    try:
                        os.close(o.open(-100, b".", os.O_PATH | os.O_CLOEXEC))  # AT_FDCWD
                        _openat2 = o
                    except OSError:  # ENOSYS, or EPERM from a container's seccomp: walk in Python
                        _openat2 = None
                _openat2_probed = True
    return _openat2


class _TooBig(Exception):
    """A file ran past the read limit (turned into a ProbeError naming the file)."""


def _slurp(fd: int, limit: int) -> bytes:
    """Everything `fd` holds up to EOF; raises _TooBig past `limit` bytes (a bounded read loop)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        b = os.read(fd, min(1 << 16, limit + 1 - total))
        if not b:
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]
        chunks.append(b)
        total += len(b)
        if total > limit:
            raise _TooBig()


def _climbs(p: str) -> bool:
    """Does a `..` in `p` go above its first directory (`/sys/../../x`)? Read lexically."""
    depth = 0
    for c in p.split("/"):
        if c == "..":
            depth -= 1
            if depth < 0:
                return True
        elif c and c != ".":
            depth += 1
    return False


@dataclass(frozen=True)
class Host:
    """A node rooted at `root` ("/" for the live node)."""

    root: str = "/"

    # -- the root, resolved once (a cache beside the frozen fields; never pickled) -------------
    def _base(self) -> str:
        base: str | None = self.__dict__.get("_cache_base")
        if base is None:
            base = os.path.realpath(self.root)
            object.__setattr__(self, "_cache_base", base)
        return base

    def _dirfd(self) -> int:
        """An O_PATH descriptor of the root, opened on first use and kept for this Host."""
        fd: int | None = self.__dict__.get("_cache_dirfd")
        if fd is None:
            new = os.open(self._base(), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            with _lock:
                fd = self.__dict__.get("_cache_dirfd")
                if fd is None:
                    object.__setattr__(self, "_cache_dirfd", new)
                    fd = new
                else:
                    os.close(new)  # another thread won the race
        return fd

    def _reopen_if_stale(self) -> bool:
        """After ENOENT: was the root directory removed (and maybe made again) under our fd?"""
        fd = self.__dict__.get("_cache_dirfd")
        if fd is None or os.fstat(fd).st_nlink != 0:
            return False
        with _lock:
            object.__setattr__(self, "_cache_dirfd", None)
        os.close(fd)
        return True

    def __del__(self) -> None:
        fd = self.__dict__.get("_cache_dirfd")
        if fd is not None:
            os.close(fd)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_cache_")}

    @property
    def live(self) -> bool:
        return self._base() == "/"

    # -- resolution --------------------------------------------------------------------------
    def _check(self, p: str) -> None:
        if not p.startswith("/"):
            raise ValueError(f"node paths are absolute: {p!r}")
        if ".." in p and _climbs(p):
            raise PathOutsideRoot(f"{p}: '..' climbs above the root {self.root}; refused")

    def _walk(self, p: str, follow_last: bool = True) -> str:
        """Resolve `p` as a chroot at the root would, component by component; the OS path.

        Absolute link targets restart at the root; a `..` above the root is refused; components
        that do not exist are taken as written (nothing below them can be a link).
        """
        base = self._base().rstrip("/")
        todo = list(reversed(p.split("/")))
        done: list[str] = []
        hops = 0
        via = ""
        absent = False
        while todo:
            c = todo.pop()
            if c in ("", "."):
                continue
            if c == "..":
                if not done:
                    what = via or "'..'"
                    raise PathOutsideRoot(f"{p}: {what} climbs above the root {self.root}; refused")
                done.pop()
                continue
            done.append(c)
            if absent or (not todo and not follow_last):
                continue
            real = base + "/" + "/".join(done)
            try:
                target = os.readlink(real)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                    absent = True
                elif exc.errno != errno.EINVAL:  # EINVAL: there, and not a link
                    raise ProbeError(_reason(exc, p)) from None
                continue
            hops += 1
            if hops > MAX_SYMLINKS:
                raise ProbeError(f"{p}: too many levels of symbolic links")
            link = "/" + "/".join(done)
            via = f"symlink {link} -> {target}"
            done.pop()
            if target.startswith("/"):
                done = []  # chroot semantics: an absolute target starts at the root
            todo.extend(reversed(target.split("/")))
        return base + "/" + "/".join(done) if done else (base or "/")

    def resolve_inside(self, p: str) -> str:
        """The node path `p` leads to with every symlink followed through the root.

        Raises PathOutsideRoot if it would leave the root. `/` stays `/`.
        """
        self._check(p)
        if self.root == "/":
            return os.path.realpath(p)
        return self.unroot(self._walk(p))

    def path(self, p: str) -> str:
        """Map an absolute node path (`/sys/...`) to the file under this root, resolved inside it."""
        self._check(p)
        if self.root == "/":
            return p
        return self._walk(p)

    def unroot(self, real: str) -> str:
        """Inverse of `path` for a resolved file name."""
        if self.root == "/":
            return real
        base = self._base()
        if real == base:
            return "/"
        return "/" + os.path.relpath(real, base) if real.startswith(base.rstrip("/") + "/") else real

    def _open(self, p: str, flags: int, mode: int = 0) -> int:
        """An fd for node path `p` opened inside the root; OSError or PathOutsideRoot."""
        self._check(p)
        if self.root == "/":
            return os.open(p, flags | os.O_CLOEXEC, mode)
        flags |= os.O_CLOEXEC
        o2 = _get_openat2()
        if o2 is not None:
            rel = p.lstrip("/").encode() or b"."
            for _ in range(2):
                try:
                    return o2.open(self._dirfd(), rel, flags, mode)
                except OSError as exc:
                    if exc.errno == errno.ENOENT and self._reopen_if_stale():
                        continue
                    if exc.errno not in _FALLBACK:
                        raise
                    break  # an absolute symlink on the way (or an escape): the careful walk decides
        # O_NOFOLLOW: the walk resolved every link, so one found now was swapped in since.
        return os.open(self._walk(p), flags | os.O_NOFOLLOW, mode)

    # -- reads -------------------------------------------------------------------------------
    def open_read(self, p: str) -> int:
        """A read-only descriptor of node path `p`, opened inside the root (the caller closes it);
        ProbeError naming the file if it cannot be opened."""
        try:
            if self.root == "/" and ".." not in p:
                return os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            return self._open(p, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def read(self, p: str, limit: int = READ_LIMIT) -> str:
        """Read a text file (at most `limit` bytes); raise ProbeError with a person-readable reason."""
        try:
            if self.root == "/" and ".." not in p:  # the sampler's hot path: nothing to contain
                fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
            else:
                # O_NONBLOCK: a FIFO planted in a fake tree reads as empty instead of hanging.
                fd = self._open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                data = _slurp(fd, limit)
            finally:
                os.close(fd)
            text = data.decode("utf-8")
        except _TooBig:
            raise ProbeError(f"{p}: larger than {limit} bytes; refused") from None
        except UnicodeDecodeError:
            raise ProbeError(f"{p}: not text") from None
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text  # as text mode reads

    def read_bytes(self, p: str, limit: int = 1 << 20) -> bytes:
        """The file's first `limit` bytes (fewer at EOF). Read in a loop: procfs files such as
        /proc/PID/maps hand out about a page per read()."""
        try:
            fd = self._open(p, os.O_RDONLY | os.O_NONBLOCK)
            try:
                chunks: list[bytes] = []
                total = 0
                while total < limit:
                    b = os.read(fd, min(1 << 16, limit - total))
                    if not b:
                        break
                    chunks.append(b)
                    total += len(b)
                return b"".join(chunks)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def read_line(self, p: str) -> str:
        return self.read(p).strip()

    def read_int(self, p: str, base: int = 10) -> int:
        text = self.read_line(p)
        if len(text) > 40:  # no kernel counter has more digits; int() of 10**5 digits is slow
            raise ProbeError(f"{p}: expected an integer, found {len(text)} characters")
        try:
            return int(text, base)
        except ValueError:
            raise ProbeError(f"{p}: expected an integer, found {text[:40]!r}") from None

    def exists(self, p: str) -> bool:
        """Is there something at `p` inside the root (a path that would leave it is not)?"""
        if self.root == "/" and ".." not in p:
            return os.path.exists(p)
        try:
            os.close(self._open(p, os.O_PATH))
        except (OSError, ProbeError):  # absent, unreachable, or outside the root: not there
            return False
        return True

    def stat(self, p: str) -> os.stat_result:
        """os.stat of what `p` leads to inside the root; ProbeError with a reason."""
        try:
            if self.root == "/" and ".." not in p:
                return os.stat(p)
            fd = self._open(p, os.O_PATH)
            try:
                return os.fstat(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def is_link(self, p: str) -> bool:
        """Is `p` itself a symlink (dangling or not)?"""
        try:
            self.readlink(p)
        except ProbeError:  # not a link, or not there: either way not a link to follow
            return False
        return True

    def listdir(self, p: str) -> list[str]:
        try:
            if self.root == "/" and ".." not in p:
                return sorted(os.listdir(p))
            fd = self._open(p, os.O_RDONLY | os.O_DIRECTORY)
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def readlink(self, p: str) -> str:
        """The target of the link at `p` (the link itself is not followed; its directory is)."""
        try:
            if self.root == "/" and ".." not in p:
                return os.readlink(p)
            self._check(p)  # a refusal names `p`, not its directory
            parent, name = os.path.split(p.rstrip("/"))
            if not name or name == "..":
                raise _oserror(errno.EINVAL)
            fd = self._open(parent or "/", os.O_PATH | os.O_DIRECTORY)
            try:
                return os.readlink(name, dir_fd=fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def realpath(self, p: str) -> str:
        """Resolve links inside the root (an absolute target restarts at the root)."""
        if self.root == "/" and ".." not in p:
            return os.path.realpath(p)
        return self.resolve_inside(p)

    # -- writes ------------------------------------------------------------------------------
    def write(self, p: str, value: str) -> None:
        """Write a knob; raise KnobWriteError with what the kernel said and what to do.

        A knob path never needs `..`: one that has it (a damaged or crafted journal) is refused.
        A regular file on a disk (a file-backed root) is replaced atomically, so a crash mid-write
        leaves its old value or the new one, never an empty file (`probes.knob_file`).
        """
        if "/../" in p + "/":
            raise PathOutsideRoot(f"{p}: a knob path with '..' is refused (outside the root {self.root}?)")
        try:
            if not self._replace(p, value):
                fd = self._open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
                with open(fd, "w", encoding="utf-8") as fh:
                    fh.write(value)
        except PathOutsideRoot:
            raise
        except PermissionError:
            raise KnobWriteError(f"{p}: permission denied (needs root)") from None
        except FileNotFoundError:
            raise KnobWriteError(f"{p}: not present on this node") from None
        except ProbeError as exc:  # the careful walk could not read a directory on the way
            raise KnobWriteError(exc.reason) from None
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise KnobWriteError(f"{p}: read-only file system (is /sys mounted ro, e.g. in a container?)") from None
            if exc.errno == errno.EINVAL:
                raise KnobWriteError(f"{p}: the kernel rejected {value!r}") from None
            raise KnobWriteError(f"{p}: {exc.strerror or exc}") from None

    def _replace(self, p: str, value: str) -> bool:
        """Replace node path `p` atomically when it is a regular file on a disk filesystem, through
        its directory opened inside the root; False when it takes a plain write."""
        parent, name = os.path.split(p)
        if not name:
            return False
        try:
            dfd = self._open(parent or "/", os.O_RDONLY | os.O_DIRECTORY)
        except (OSError, ProbeError):
            return False  # the plain write says what is wrong, naming the knob
        try:
            mode = replaceable(dfd, name, self.live)
            if mode is None:
                return False
            replace_in(dfd, name, value.encode(), mode)
            return True
        finally:
            os.close(dfd)


def file_kind(mode: int) -> str:
    """What a stat mode is, in words ("a FIFO", "a character device", ...)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


class NotRegularFile(OSError):
    """A FIFO, device, socket or directory where a file is expected; refused before any read."""

    def __init__(self, path: str, mode: int) -> None:
        super().__init__(errno.EINVAL, f"{file_kind(mode)}, not a regular file; refused", path)


def check_regular(path: str) -> os.stat_result:
    """os.stat of `path` (links followed), or NotRegularFile: for files a library opens itself."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, st.st_mode)
    return st


def open_regular_file(path: str) -> int:
    """A read-only fd of the regular file at `path` (a path on this machine, links followed).

    A FIFO would block the open or the read forever and a device never ends: both are refused by
    a stat before the open, and by an fstat of what was opened (O_NONBLOCK, so a FIFO swapped in
    between cannot block the open itself).
    """
    check_regular(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular_file(path: str, limit: int) -> bytes:
    """The bytes of the regular file at `path`, at most `limit` (OSError EFBIG past it).

    The one way to read a file a person named (config, users file, profile, report): every
    OSError's strerror is a phrase to put after the path.
    """
    fd = open_regular_file(path)
    try:
        return _slurp(fd, limit)
    except _TooBig:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes; refused", path) from None
    finally:
        os.close(fd)


# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: a string from the node
# (a command line, a comm, a cgroup, a kernel message) holding one could forge an output or log
# line or move a terminal's cursor.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def inert(text: str) -> str:
    """`text` with every control character written out (`\\n`, `\\r`, `\\x1b`): one line, inert."""
    return text if text.isprintable() else text.translate(_CONTROLS)


def attempt(missing: dict[str, str], name: str, fn: Callable[[], T]) -> T | None:
    """Run one read; on ProbeError record why `name` is unavailable and return None."""
    try:
        return fn()
    except ProbeError as exc:
        missing[name] = exc.reason
        return None


def parse_cpulist(text: str, where: str = "cpulist") -> list[int]:
    """Parse the kernel's list format ("0-3,8,10-11"); empty text is an empty list.

    CPU numbers at or above MAX_CPUS are refused before anything is expanded.
    """
    out: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                stride = 1
                if ":" in hi_s:  # "0-31:2" stride form (kernel >= 5.x for cpusets)
                    hi_s, stride_s = hi_s.split(":", 1)
                    stride = _cpu_number(stride_s)
                lo, hi = _cpu_number(lo_s), _cpu_number(hi_s)
                if stride < 1 or hi < lo:
                    raise ValueError(part)
                cpus = range(lo, hi + 1, stride)
            else:
                hi = _cpu_number(part)
                cpus = range(hi, hi + 1)
        except ValueError:
            raise ProbeError(f"{where}: bad cpu list {text[:40]!r}") from None
        if hi >= MAX_CPUS:
            shown = hi if hi < _HUGE else "of more than 12 digits"
            raise ProbeError(f"{where}: cpu list {text[:40]!r} names CPU {shown}; more than {MAX_CPUS} CPUs "
                             f"is refused (the kernel's NR_CPUS is at most 8192)")
        out.update(cpus)
    return sorted(out)


_HUGE = 1 << 62


def _cpu_number(s: str) -> int:
    s = s.strip()
    if not s.isdigit() or len(s) > 12:  # no sign, no "1_000", no 5,000-digit int() to parse
        if s.isdigit():
            return _HUGE  # all digits but absurdly long: far above MAX_CPUS
        raise ValueError(s)
    return int(s)


def parse_cpumask(text: str, where: str = "cpumask") -> list[int]:
    """Parse the kernel's hex mask format ("ff,ffffffff"); masks wider than MAX_CPUS are refused."""
    digits = text.strip().replace(",", "")
    if len(digits.lstrip("0")) * 4 > MAX_CPUS:
        raise ProbeError(f"{where}: cpu mask of {len(digits)} hex digits is wider than {MAX_CPUS} CPUs; refused")
    try:
        value = int(digits, 16)
    except ValueError:
        raise ProbeError(f"{where}: bad cpu mask {text[:40]!r}") from None
    return [i for i in range(value.bit_length()) if value >> i & 1]


def format_cpulist(cpus: list[int] | set[int]) -> str:
    """Format CPUs in the kernel's compact list form."""
    cpus = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)
