"""The memory guard: how much page cache may be filled, and when to stop (meminfo and PSI via the probes)."""

from __future__ import annotations

import time
from collections.abc import Callable

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.io import parse_psi
from nodetune.probes.memory import parse_meminfo

from .options import KiB, MiB, PrefetchOptions, human


def meminfo(host: Host) -> dict[str, int]:
    """/proc/meminfo in bytes (the probe's parser; kB lines scaled, page counts kept as they are)."""
    kb = parse_meminfo(host.read("/proc/meminfo"))
    for k in ("MemFree", "MemAvailable"):
        if k not in kb:
            raise ProbeError(f"/proc/meminfo: no {k}")
    counts = ("HugePages_Total", "HugePages_Free", "HugePages_Rsvd", "HugePages_Surp")
    return {k: v if k in counts else v * KiB for k, v in kb.items()}


def _psi_some_total_us(host: Host) -> int | None:
    try:
        psi = parse_psi(host.read("/proc/pressure/memory"), "/proc/pressure/memory")
    except ProbeError:
        return None  # no PSI (kernel without it, or psi=0): MemAvailable is the only guard
    return psi.some.total_us if psi.some is not None else None


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


