"""Memory: /proc/meminfo, per-NUMA-node meminfo, transparent huge pages, huge page pools, swap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, ProbeError, attempt
from .topology import NODE_DIR, HugePagePool, parse_node_meminfo, probe_hugepages

THP_DIR = "/sys/kernel/mm/transparent_hugepage"
_MEMINFO_KEEP = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapTotal", "SwapFree",
                 "Dirty", "Writeback", "AnonPages", "Shmem", "AnonHugePages", "HugePages_Total",
                 "HugePages_Free", "Hugepagesize")
_VMSTAT_KEEP = ("pswpin", "pswpout", "pgmajfault", "pgfault", "thp_fault_alloc", "thp_fault_fallback",
                "numa_hit", "numa_miss", "numa_foreign", "numa_local", "numa_other", "pgscan_direct",
                "allocstall_normal", "compact_stall")


@dataclass(slots=True)
class NodeMemory:
    node: int
    total_kb: int | None = None
    free_kb: int | None = None
    file_pages_kb: int | None = None


@dataclass(slots=True)
class MemorySample:
    meminfo_kb: dict[str, int] = field(default_factory=dict)
    nodes: list[NodeMemory] = field(default_factory=list)
    vmstat: dict[str, int] = field(default_factory=dict)
    thp_enabled: str | None = None
    thp_defrag: str | None = None
    hugepages: list[HugePagePool] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


_MEMINFO_LINE = re.compile(r"^(\w+(?:\(\w+\))?):\s+(\d+)", re.M)
_VMSTAT_LINE = re.compile(r"^(\w+) (-?\d+)$", re.M)
# The lines the sampler keeps, matched alone: converting all ~190 vmstat lines to ints each second
# was most of a memory reading.
_MEMINFO_KEPT = re.compile(r"^(" + "|".join(_MEMINFO_KEEP) + r"):\s+(\d+)", re.M)
_VMSTAT_KEPT = re.compile(r"^(" + "|".join(_VMSTAT_KEEP) + r") (-?\d+)$", re.M)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo as name -> kB (or count, for the HugePages_ lines); ProbeError without MemTotal.
    One scan of the text: the sampler reads it every second."""
    out = {k: int(v) for k, v in _MEMINFO_LINE.findall(text)}
    if "MemTotal" not in out:
        raise ProbeError("/proc/meminfo: no MemTotal line")
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    """/proc/vmstat as name -> count (about 180 lines on a current kernel; one scan of the text)."""
    return {k: int(v) for k, v in _VMSTAT_LINE.findall(text)}


def _kept(text: str, lines: re.Pattern[str]) -> dict[str, int]:
    return {k: int(v) for k, v in lines.findall(text)}


def parse_selected(text: str, where: str) -> str:
    """The bracketed choice of a sysfs selector ("always [madvise] never" -> "madvise")."""
    m = re.search(r"\[([^\]]+)\]", text)
    if not m:
        raise ProbeError(f"{where}: no [selected] value in {text.strip()[:40]!r}")
    return m.group(1)


def _read_node_meminfo(host: Host, p: str) -> dict[str, int]:
    return parse_node_meminfo(host.read(p))


def probe_memory(host: Host, numa_nodes: list[int] | None = None, detail: bool = True) -> MemorySample:
    """One memory reading; `detail` adds per-node and huge-page state (static within a window)."""
    s = MemorySample()
    mi = attempt(s.missing, "meminfo", lambda: _kept(host.read("/proc/meminfo"), _MEMINFO_KEPT))
    if mi is not None:
        if "MemTotal" in mi:
            s.meminfo_kb = mi
        else:
            s.missing["meminfo"] = "/proc/meminfo: no MemTotal line"
    vm = attempt(s.missing, "vmstat", lambda: _kept(host.read("/proc/vmstat"), _VMSTAT_KEPT))
    if vm:
        s.vmstat = vm
    if not detail:
        return s
    for node in numa_nodes or []:
        d = f"{NODE_DIR}/node{node}/meminfo"
        nm = attempt(s.missing, f"node{node}", partial(_read_node_meminfo, host, d))
        if nm is not None:
            s.nodes.append(NodeMemory(node, nm.get("MemTotal"), nm.get("MemFree"), nm.get("FilePages")))
    s.thp_enabled = attempt(s.missing, "thp_enabled",
                            lambda: parse_selected(host.read(f"{THP_DIR}/enabled"), f"{THP_DIR}/enabled"))
    s.thp_defrag = attempt(s.missing, "thp_defrag",
                           lambda: parse_selected(host.read(f"{THP_DIR}/defrag"), f"{THP_DIR}/defrag"))
    s.hugepages = attempt(s.missing, "hugepages", lambda: probe_hugepages(host, "/sys/kernel/mm/hugepages")) or []
    return s
