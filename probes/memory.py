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


def parse_meminfo(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+(?:\(\w+\))?):\s+(\d+)", line)
        if m:
            out[m.group(1)] = int(m.group(2))
    if "MemTotal" not in out:
        raise ProbeError("/proc/meminfo: no MemTotal line")
    return out


def parse_vmstat(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


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
    mi = attempt(s.missing, "meminfo", lambda: parse_meminfo(host.read("/proc/meminfo")))
    if mi:
        s.meminfo_kb = {k: v for k, v in mi.items() if k in _MEMINFO_KEEP}
    vm = attempt(s.missing, "vmstat", lambda: parse_vmstat(host.read("/proc/vmstat")))
    if vm:
        s.vmstat = {k: v for k, v in vm.items() if k in _VMSTAT_KEEP}
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
