"""Prefetch options, sizes and the report of one warming run (plain data shared by every module here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
ENGINES = ("auto", "io_uring", "threads", "fadvise")
ORDERS = ("listed", "sorted")
_UNITS = {"": 1, "b": 1, "k": KiB, "kb": 1000, "kib": KiB, "m": MiB, "mb": 1000**2, "mib": MiB,
          "g": GiB, "gb": 1000**3, "gib": GiB, "t": 1 << 40, "tb": 1000**4, "tib": 1 << 40}


class PrefetchError(Exception):
    """Bad prefetch input (options, a process to follow); `reason` is the one line the CLI prints (exit 2)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

