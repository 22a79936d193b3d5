"""CPU and NUMA topology from /sys/devices/system/{cpu,node}."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, ProbeError, attempt, parse_cpulist

CPU_DIR = "/sys/devices/system/cpu"
NODE_DIR = "/sys/devices/system/node"


@dataclass
class Cpu:
    cpu: int
    online: bool
    package: int | None = None
    core: int | None = None
    siblings: list[int] = field(default_factory=list)
    numa_node: int | None = None
    missing: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class HugePagePool:
    size_kb: int
    total: int | None = None
    free: int | None = None
    surplus: int | None = None


@dataclass
class NumaNode:
    node: int
    cpus: list[int] = field(default_factory=list)
    mem_total_kb: int | None = None
    mem_free_kb: int | None = None
    distances: list[int] = field(default_factory=list)
    hugepages: list[HugePagePool] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)


@dataclass
class CpuTopology:
    cpus: list[Cpu] = field(default_factory=list)
    online: list[int] = field(default_factory=list)
    packages: int = 0
    cores: int = 0
    numa_nodes: list[NumaNode] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def node_of_cpu(self, cpu: int) -> int | None:
        for n in self.numa_nodes:
            if cpu in n.cpus:
                return n.node
        return None

    def node(self, node: int) -> NumaNode | None:
        return next((n for n in self.numa_nodes if n.node == node), None)


_NODE_MEMINFO = re.compile(r"^Node\s+\d+\s+(\w+):\s+(\d+)(?:\s+kB)?\s*$")


def parse_node_meminfo(text: str) -> dict[str, int]:
    """Parse /sys/devices/system/node/nodeN/meminfo into {field: kB or pages}."""
    out = {}
    for line in text.splitlines():
        m = _NODE_MEMINFO.match(line.strip())
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def _read_cpulist(host: Host, p: str) -> list[int]:
    return parse_cpulist(host.read(p), p)


def _int_list(text: str, where: str) -> list[int]:
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        raise ProbeError(f"{where}: expected integers, found {text[:40]!r}") from None


def probe_hugepages(host: Host, base: str) -> list[HugePagePool]:
    """Huge page pools under `base` (/sys/kernel/mm/hugepages or a node's hugepages dir)."""
    pools = []
    for name in host.listdir(base):
        m = re.fullmatch(r"hugepages-(\d+)kB", name)
        if not m:
            continue
        d = f"{base}/{name}"
        missing: dict[str, str] = {}
        pools.append(
            HugePagePool(
                size_kb=int(m.group(1)),
                total=attempt(missing, "total", partial(host.read_int, f"{d}/nr_hugepages")),
                free=attempt(missing, "free", partial(host.read_int, f"{d}/free_hugepages")),
                surplus=attempt(missing, "surplus", partial(host.read_int, f"{d}/surplus_hugepages")),
            )
        )
    return sorted(pools, key=lambda p: p.size_kb)


def probe_numa_node(host: Host, node: int) -> NumaNode:
    d = f"{NODE_DIR}/node{node}"
    n = NumaNode(node=node)
    n.cpus = attempt(n.missing, "cpus", lambda: parse_cpulist(host.read(f"{d}/cpulist"), f"{d}/cpulist")) or []
    mem = attempt(n.missing, "meminfo", lambda: parse_node_meminfo(host.read(f"{d}/meminfo")))
    if mem is not None:
        n.mem_total_kb = mem.get("MemTotal")
        n.mem_free_kb = mem.get("MemFree")
    n.distances = attempt(n.missing, "distances", lambda: _int_list(host.read(f"{d}/distance"), f"{d}/distance")) or []
    n.hugepages = attempt(n.missing, "hugepages", lambda: probe_hugepages(host, f"{d}/hugepages")) or []
    return n


def probe_cpu_topology(host: Host) -> CpuTopology:
    """Read packages, cores, SMT siblings, online CPUs and NUMA nodes."""
    topo = CpuTopology()
    online = attempt(topo.missing, "online", lambda: parse_cpulist(host.read(f"{CPU_DIR}/online"), f"{CPU_DIR}/online"))
    names = attempt(topo.missing, "cpus", lambda: host.listdir(CPU_DIR)) or []
    ids = sorted(int(n[3:]) for n in names if re.fullmatch(r"cpu\d+", n))
    topo.online = online if online is not None else ids

    node_ids: list[int] = []
    if host.exists(NODE_DIR):
        text = attempt(topo.missing, "numa_online", lambda: host.read(f"{NODE_DIR}/online"))
        if text is not None:
            node_ids = attempt(topo.missing, "numa_online", lambda: parse_cpulist(text, f"{NODE_DIR}/online")) or []
    else:
        topo.missing["numa_nodes"] = f"{NODE_DIR}: not present (kernel without NUMA); treating the node as one"
    topo.numa_nodes = [probe_numa_node(host, n) for n in node_ids]
    cpu_node = {c: n.node for n in topo.numa_nodes for c in n.cpus}

    for cpu in ids:
        d = f"{CPU_DIR}/cpu{cpu}/topology"
        c = Cpu(cpu=cpu, online=cpu in topo.online, numa_node=cpu_node.get(cpu))
        if c.online:
            c.package = attempt(c.missing, "package", partial(host.read_int, f"{d}/physical_package_id"))
            c.core = attempt(c.missing, "core", partial(host.read_int, f"{d}/core_id"))
            sib = f"{d}/thread_siblings_list"
            c.siblings = attempt(c.missing, "siblings", partial(_read_cpulist, host, sib)) or [cpu]
        topo.cpus.append(c)

    if not topo.numa_nodes and topo.online:
        # One implicit node keeps every consumer's arithmetic simple; the reason stays recorded.
        topo.numa_nodes = [NumaNode(node=0, cpus=list(topo.online), missing={"node": "synthesized: no NUMA info"})]
        for c in topo.cpus:
            c.numa_node = 0
    packages = {c.package for c in topo.cpus if c.package is not None}
    topo.packages = len(packages)
    topo.cores = len({(c.package, c.core) for c in topo.cpus if c.core is not None})
    return topo
