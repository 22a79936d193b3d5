"""`nodetune topo` for a person: sockets, NUMA nodes, GPUs, the GPU link matrix, NICs and NVMe.

Names read from the node (hostname, OS, GPU and interface names, the reasons in notes) go through
`inert` (control characters written out) and are drawn as literal text, never as rich markup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nodetune.probes.host import format_cpulist, inert
from nodetune.probes.pci import LEVEL_ORDER, PciDevice, PciLink

from .layout import Block, Column, Line, Table, Tree, draw_plain, draw_rich

if TYPE_CHECKING:
    from rich.console import Console

    from nodetune.probes.node import Topology


def _gib(kb: int | None) -> str:
    return f"{kb / 1048576:.1f} GiB" if kb is not None else "?"


def _link(link: PciLink | None) -> str:
    if link is None or link.gen is None:
        return "?"
    cur = f"Gen{link.gen} x{link.width}"
    if link.max_gen and (link.max_gen != link.gen or link.max_width != link.width):
        cur += f" (max Gen{link.max_gen} x{link.max_width})"
    return cur


def _numa(n: int | None) -> str:
    return str(n) if n is not None else "unknown (-1)"


def topology_blocks(topo: Topology) -> list[Block]:
    """What `nodetune topo` shows, as trees, tables and lines (node strings made inert)."""
    node, cpu = topo.node, topo.cpu
    threads = len(cpu.online)
    head = Tree((inert(node.hostname or "node"), "bold"),
                (f"  {inert(node.os or '')}  kernel {inert(node.kernel or '?')}", ""))
    head.add((f"{cpu.packages} socket(s), {cpu.cores} cores, {threads} online CPUs ({format_cpulist(cpu.online)})", ""))
    numa = head.add((f"{len(cpu.numa_nodes)} NUMA node(s)", ""))
    for n in cpu.numa_nodes:
        pools = ", ".join(f"{p.total}x{p.size_kb // 1024}M" for p in n.hugepages if p.total) or "no huge pages"
        numa.add((f"node{n.node}: CPUs {format_cpulist(n.cpus)}  mem {_gib(n.mem_total_kb)} "
                  f"(free {_gib(n.mem_free_kb)})  {pools}  distances {n.distances}", ""))
    by_addr = {d.address: d for d in topo.pci}
    gtree = head.add((f"{len(topo.gpus)} GPU(s)  ", ""), (_backend_line(topo), "dim"))
    for g in topo.gpus:
        dev = by_addr.get(g.address or "")
        mem = g.static.memory_total_bytes
        gtree.add((
            f"GPU{g.index} {inert(g.static.name or '?')}  {inert(g.address or '?')}  NUMA {_numa(g.numa_node)}  "
            f"local CPUs {format_cpulist(g.local_cpus) or '?'}  PCIe {_link(dev.link if dev else None)}"
            + (f"  {mem / 2**30:.0f} GiB" if mem else ""), ""))
    blocks: list[Block] = [head]
    if len(topo.gpus) > 0:
        blocks.append(_matrix(topo))
    others = [d for d in topo.pci if d.kind in ("nic", "infiniband", "nvme")]
    if others:
        blocks.append(_devices(topo, others))
    notes = _notes(topo)
    if notes:
        blocks.append(Line((("Not available", "bold"),)))
        blocks += [Line(((f"  - {inert(line)}", ""),)) for line in notes]
    return blocks


def render_topology(topo: Topology, console: Console) -> None:
    """Draw `nodetune topo` on a rich console."""
    draw_rich(topology_blocks(topo), console)


def plain_topology(topo: Topology, width: int) -> str | None:
    """`nodetune topo` as rich draws it on an unstyled console `width` wide; None where only rich can
    be sure (cli/layout.py)."""
    return draw_plain(topology_blocks(topo), width)


def _backend_line(topo: Topology) -> str:
    b = topo.backend
    if b.available:
        return inert(f"{b.source}, driver {b.driver_version or '?'}")
    return inert(f"no GPU telemetry: {b.reason}")


def _matrix(topo: Topology) -> Table:
    nics = [d for d in topo.pci if d.kind in ("nic", "infiniband")]
    cols = [Column(""), *(Column(f"GPU{g.index}", "center") for g in topo.gpus),
            *(Column(inert(_short(n)), "center") for n in nics), Column("CPU affinity"), Column("NUMA affinity")]
    t = Table("GPU links (nvidia-smi topo -m letters)", cols, [])
    for a in topo.gpus:
        row = [f"GPU{a.index}"]
        for b in topo.gpus:
            if a.index == b.index:
                row.append("X")
            else:
                lk = topo.link(a.index, b.index)
                row.append(inert(lk.label) if lk else "?")
        near = {x.address: x.level for x in a.nearby}
        row += [inert(near.get(n.address, "?")) for n in nics]
        aff = str(a.numa_node) if a.numa_node is not None else (format_cpulist(a.numa_affinity) or "N/A")
        row += [format_cpulist(a.local_cpus) or "?", aff]
        t.rows.append(row)
    return t


def _short(d: PciDevice) -> str:
    return d.names[0] if d.names else d.address


def _devices(topo: Topology, devs: list[PciDevice]) -> Table:
    t = Table("NICs and NVMe", [Column(c) for c in ("device", "kind", "address", "NUMA", "PCIe", "slot can do",
                                                    "nearest GPU")], [])
    for d in devs:
        best = None
        for g in topo.gpus:
            for n in g.nearby:
                if n.address == d.address and (best is None
                                               or LEVEL_ORDER.get(n.level, 9) < LEVEL_ORDER.get(best[1], 9)):
                    best = (g.index, n.level)
        t.rows.append([inert(", ".join(d.names) or "-"), inert(d.kind), inert(d.address), _numa(d.numa_node),
                       _link(d.link), _link(d.upstream_link), inert(f"GPU{best[0]} ({best[1]})") if best else "-"])
    return t


def _notes(topo: Topology) -> list[str]:
    out = [f"{k}: {v}" for k, v in topo.missing.items()]
    out += [f"{k}: {v}" for k, v in topo.cpu.missing.items()]
    for g in topo.gpus:
        out += [f"GPU{g.index} {k}: {v}" for k, v in g.missing.items()]
        out += [f"GPU{g.index} {k}: {v}" for k, v in g.static.missing.items() if k not in ("serial",)]
    return out
