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


def _stat_kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().isdigit():
            out[k] = int(v)
    return out


def cgroup_cache_room(host: Host) -> int | None:
    """Bytes of page cache this process's memory cgroup holds beyond its anonymous memory; None if unlimited.

    Pages a warmer reads in are charged to its own cgroup: under a limit the kernel reclaims them
    once the cgroup is full, whatever the node's MemAvailable says, so a window larger than this
    is evicted before the job reaches it (cgroup v2, walked up to the root, or v1's hierarchical limit).
    """
    try:
        lines = host.read("/proc/self/cgroup").splitlines()
    except ProbeError:
        return None  # no cgroups to see (a fake tree, an old kernel): the node's meminfo is the only guard
    rooms: list[int] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        try:
            if parts[0] == "0" and parts[1] == "":
                path = parts[2].rstrip("/")
                while True:
                    d = f"/sys/fs/cgroup{path}"
                    if host.exists(f"{d}/memory.max"):
                        limit = host.read(f"{d}/memory.max").strip()
                        if limit.isdigit():
                            anon = _stat_kv(host.read(f"{d}/memory.stat")).get("anon", 0)
                            rooms.append(int(limit) - anon)
                    if not path:
                        break
                    path = path.rsplit("/", 1)[0]
            elif "memory" in parts[1].split(","):
                st = _stat_kv(host.read(f"/sys/fs/cgroup/memory{parts[2].rstrip('/')}/memory.stat"))
                limit = st.get("hierarchical_memory_limit", 0)
                if 0 < limit < 1 << 60:  # "unlimited" reads as a page-rounded 2^63
                    rooms.append(limit - st.get("total_rss", st.get("rss", 0)))
        except ProbeError:
            continue  # a hierarchy not mounted where /proc says: that one guards nothing
    return max(min(rooms), 0) if rooms else None


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


