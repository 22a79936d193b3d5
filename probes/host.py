"""The node's file systems, seen through one root.

Every probe and tuner reads and writes `/proc`, `/sys`, `/dev`, `/etc` and `/run` through a
`Host`, so a test or an offline run points the whole program at a fake tree or a mounted image
(node_exporter's `--path.procfs/--path.sysfs` idea) and nothing patches `open`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


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


def _reason(exc: OSError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path}: not present"
    if isinstance(exc, PermissionError):
        return f"{path}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"{path}: is a directory"
    return f"{path}: {exc.strerror or exc}"


@dataclass(frozen=True)
class Host:
    """A node rooted at `root` ("/" for the live node)."""

    root: str = "/"

    @property
    def live(self) -> bool:
        return os.path.realpath(self.root) == "/"

    def path(self, p: str) -> str:
        """Map an absolute node path (`/sys/...`) to the file under this root."""
        if not p.startswith("/"):
            raise ValueError(f"node paths are absolute: {p!r}")
        if self.root == "/":
            return p
        return os.path.join(self.root, p.lstrip("/"))

    def unroot(self, real: str) -> str:
        """Inverse of `path` for a resolved file name."""
        if self.root == "/":
            return real
        base = os.path.realpath(self.root)
        if real == base:
            return "/"
        return "/" + os.path.relpath(real, base) if real.startswith(base.rstrip("/") + "/") else real

    def read(self, p: str) -> str:
        """Read a text file; raise ProbeError with a person-readable reason."""
        try:
            with open(self.path(p), encoding="utf-8") as fh:
                return fh.read()
        except UnicodeDecodeError:
            raise ProbeError(f"{p}: not text") from None
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def read_bytes(self, p: str, limit: int = 1 << 20) -> bytes:
        try:
            with open(self.path(p), "rb") as fh:
                return fh.read(limit)
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def read_line(self, p: str) -> str:
        return self.read(p).strip()

    def read_int(self, p: str, base: int = 10) -> int:
        text = self.read_line(p)
        try:
            return int(text, base)
        except ValueError:
            raise ProbeError(f"{p}: expected an integer, found {text[:40]!r}") from None

    def exists(self, p: str) -> bool:
        return os.path.exists(self.path(p))

    def listdir(self, p: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(p)))
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def readlink(self, p: str) -> str:
        try:
            return os.readlink(self.path(p))
        except OSError as exc:
            raise ProbeError(_reason(exc, p)) from None

    def realpath(self, p: str) -> str:
        """Resolve links (sysfs's are relative, so they stay inside the root)."""
        return self.unroot(os.path.realpath(self.path(p)))

    def write(self, p: str, value: str) -> None:
        """Write a knob; raise KnobWriteError with what the kernel said and what to do."""
        try:
            with open(self.path(p), "w", encoding="utf-8") as fh:
                fh.write(value)
        except PermissionError:
            raise KnobWriteError(f"{p}: permission denied (needs root)") from None
        except FileNotFoundError:
            raise KnobWriteError(f"{p}: not present on this node") from None
        except OSError as exc:
            if exc.errno == errno.EROFS:
                raise KnobWriteError(f"{p}: read-only file system (is /sys mounted ro, e.g. in a container?)") from None
            if exc.errno == errno.EINVAL:
                raise KnobWriteError(f"{p}: the kernel rejected {value!r}") from None
            raise KnobWriteError(f"{p}: {exc.strerror or exc}") from None


def attempt(missing: dict[str, str], name: str, fn: Callable[[], T]) -> T | None:
    """Run one read; on ProbeError record why `name` is unavailable and return None."""
    try:
        return fn()
    except ProbeError as exc:
        missing[name] = exc.reason
        return None


def parse_cpulist(text: str, where: str = "cpulist") -> list[int]:
    """Parse the kernel's list format ("0-3,8,10-11"); empty text is an empty list."""
    out: list[int] = []
    text = text.strip()
    if not text:
        return out
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = part.split("-", 1)
                if ":" in hi:  # "0-31:2" stride form (kernel >= 5.x for cpusets)
                    hi, stride = hi.split(":", 1)
                    out.extend(range(int(lo), int(hi) + 1, int(stride)))
                else:
                    out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ProbeError(f"{where}: bad cpu list {text[:40]!r}") from None
    return sorted(set(out))


def parse_cpumask(text: str, where: str = "cpumask") -> list[int]:
    """Parse the kernel's hex mask format ("ff,ffffffff")."""
    try:
        value = int(text.strip().replace(",", ""), 16)
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
