"""Huge pages: transparent huge pages (enabled, defrag) and hugetlb pools per NUMA node.

A hugetlb pool is a request: the kernel grants what it can find contiguous, so the transaction
reads the count back after writing and reports a shortfall (the knob is `granted`). A request that
cannot fit in the node's memory (MemTotal / page size, over every node asked for) is refused at
plan time: the kernel would take all free memory trying.
"""

from __future__ import annotations

from dataclasses import dataclass

from nodetune.probes.host import Host, ProbeError, format_cpulist, parse_cpulist
from nodetune.probes.memory import parse_meminfo
from nodetune.probes.topology import NODE_DIR

from ..context import TuneContext
from ..contract import Knob, TunerPlan
from ..errors import ProfileError, TargetError
from ..registry import tuner
from ..sysfs import sysfs_change

THP_DIR = "/sys/kernel/mm/transparent_hugepage"
THP_ENABLED = ("always", "madvise", "never")
THP_DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")
MAX_NUMA_NODES = 1024  # the kernel's MAX_NUMNODES (NODES_SHIFT 10)


@dataclass
class HugepagesParams:
    thp_enabled: str | None = None
    thp_defrag: str | None = None
    hugetlb_pages_per_node: int | None = None
    hugetlb_page_size_kb: int = 2048
    nodes: list[int] | None = None  # NUMA nodes for the hugetlb pool; default: every online node
    allow_lower: bool = False

    def check(self) -> list[str]:
        """Values the schema's types cannot catch; each string names the key."""
        out = []
        if self.thp_enabled is not None and self.thp_enabled not in THP_ENABLED:
            out.append(f"thp_enabled: {self.thp_enabled!r} is not one of {', '.join(THP_ENABLED)}")
        if self.thp_defrag is not None and self.thp_defrag not in THP_DEFRAG:
            out.append(f"thp_defrag: {self.thp_defrag!r} is not one of {', '.join(THP_DEFRAG)}")
        n = self.hugetlb_pages_per_node
        if n is not None and n < 0:  # the upper bound is the node's memory, checked at plan time
            out.append("hugetlb_pages_per_node: must be >= 0")
        out += [f"nodes: {x} is not a NUMA node number (0..{MAX_NUMA_NODES - 1})" for x in self.nodes or []
                if not 0 <= x < MAX_NUMA_NODES]
        if self.hugetlb_page_size_kb not in (2048, 1048576, 64, 32768, 524288, 16384):
            out.append(f"hugetlb_page_size_kb: {self.hugetlb_page_size_kb} is not a huge page size "
                       f"(2048 or 1048576 on x86)")
        return out


def thp_knob(name: str) -> Knob:
    return Knob(id=f"sysfs:{THP_DIR}/{name}", kind="sysfs", group="thp", label=f"THP {name}",
                path=f"{THP_DIR}/{name}", selector=True)


def hugetlb_knob(node: int, size_kb: int) -> Knob:
    p = f"{NODE_DIR}/node{node}/hugepages/hugepages-{size_kb}kB/nr_hugepages"
    return Knob(id=f"sysfs:{p}", kind="sysfs", group="hugetlb", label=f"hugetlb {size_kb}kB pages node{node}",
                path=p, floor=True, granted=True, unit="pages")


@tuner
class HugepagesTuner:
    name = "hugepages"
    params = HugepagesParams
    order = 10
    managed_by = {"thp": ("TuneD",)}

    def plan(self, ctx: TuneContext, p: HugepagesParams) -> TunerPlan:
        out = TunerPlan()
        if p.thp_enabled is not None:
            out.changes.append(sysfs_change(ctx, self.name, thp_knob("enabled"), p.thp_enabled))
        if p.thp_defrag is not None:
            out.changes.append(sysfs_change(ctx, self.name, thp_knob("defrag"), p.thp_defrag))
        if p.hugetlb_pages_per_node is not None:
            online = _online_nodes(ctx.host)
            nodes = p.nodes if p.nodes is not None else online
            for n in nodes:
                if n not in online:
                    raise TargetError(f"NUMA node {n}: not present on this node (nodes: {format_cpulist(online)})")
            note = _fits_in_memory(ctx.host, p.hugetlb_pages_per_node, p.hugetlb_page_size_kb, len(nodes))
            if note:
                out.notes.append(note)
            for n in nodes:
                out.changes.append(sysfs_change(ctx, self.name, hugetlb_knob(n, p.hugetlb_page_size_kb),
                                                str(p.hugetlb_pages_per_node)))
            out.notes.append("hugetlb pages serve only programs that ask for them (hugetlbfs, MAP_HUGETLB, "
                             "e.g. NCCL/UCX registration buffers); they are taken from free memory")
        return out


def _online_nodes(host: Host) -> list[int]:
    """Online NUMA nodes; [0] on a kernel without NUMA (no node/online); a damaged list is an error."""
    p = f"{NODE_DIR}/online"
    if not host.exists(p):
        return [0]
    try:
        return parse_cpulist(host.read(p), p)
    except ProbeError as exc:
        raise TargetError(f"NUMA nodes unknown: {exc.reason}") from None


def _fits_in_memory(host: Host, pages: int, size_kb: int, nodes: int) -> str | None:
    """Refuse a pool larger than the node's memory; a note when memory cannot be read."""
    try:
        total_kb = parse_meminfo(host.read("/proc/meminfo"))["MemTotal"]
    except (ProbeError, ValueError) as exc:  # ValueError: a MemTotal too long for int()
        why = exc.reason if isinstance(exc, ProbeError) else f"/proc/meminfo: {exc}"
        return f"hugetlb: pool size not checked against memory ({why})"
    want_kb = pages * size_kb * max(1, nodes)
    if want_kb > total_kb:
        most = total_kb // size_kb // max(1, nodes)
        raise ProfileError(
            f"[hugepages] hugetlb_pages_per_node = {pages}: {pages} x {size_kb} kB pages on {nodes} NUMA "
            f"node(s) is {want_kb / 2**20:.4g} GiB, more than this node's memory (MemTotal {total_kb / 2**20:.4g} "
            f"GiB: at most {most} pages per node); refused")
    return None
