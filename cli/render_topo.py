"""`nodetune topo` for a person: sockets, NUMA nodes, GPUs, the GPU link matrix, NICs and NVMe.

Names read from the node (hostname, OS, GPU and interface names, the reasons in notes) go through
`escape`: control characters written out, markup literal (issue 20)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from nodetune.probes.host import format_cpulist
from nodetune.probes.node import Topology
from nodetune.probes.pci import LEVEL_ORDER, PciDevice, PciLink

from .output import escape


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


def render_topology(topo: Topology, console: Console) -> None:
    node, cpu = topo.node, topo.cpu
    threads = len(cpu.online)
    head = Tree(f"[bold]{escape(node.hostname or 'node')}[/]  {escape(node.os or '')}  kernel {escape(node.kernel or '?')}")
    head.add(f"{cpu.packages} socket(s), {cpu.cores} cores, {threads} online CPUs ({format_cpulist(cpu.online)})")
    numa = head.add(f"{len(cpu.numa_nodes)} NUMA node(s)")
    for n in cpu.numa_nodes:
        pools = ", ".join(f"{p.total}x{p.size_kb // 1024}M" for p in n.hugepages if p.total) or "no huge pages"
        numa.add(f"node{n.node}: CPUs {format_cpulist(n.cpus)}  mem {_gib(n.mem_total_kb)} "
                 f"(free {_gib(n.mem_free_kb)})  {pools}  distances {n.distances}")
    by_addr = {d.address: d for d in topo.pci}
    gtree = head.add(f"{len(topo.gpus)} GPU(s)  [dim]{_backend_line(topo)}[/]")
    for g in topo.gpus:
        dev = by_addr.get(g.address or "")
        mem = g.static.memory_total_bytes
        gtree.add(
            f"GPU{g.index} {escape(g.static.name or '?')}  {escape(g.address or '?')}  NUMA {_numa(g.numa_node)}  "
            f"local CPUs {format_cpulist(g.local_cpus) or '?'}  PCIe {_link(dev.link if dev else None)}"
            + (f"  {mem / 2**30:.0f} GiB" if mem else "")
        )
    console.print(head)

    if len(topo.gpus) > 0:
        console.print(_matrix(topo))
    others = [d for d in topo.pci if d.kind in ("nic", "infiniband", "nvme")]
    if others:
        console.print(_devices(topo, others))
    notes = _notes(topo)
    if notes:
        console.print("[bold]Not available[/]")
        for line in notes:
            console.print(f"  - {escape(line)}", highlight=False)


def _backend_line(topo: Topology) -> str:
    b = topo.backend
    if b.available:
        return escape(f"{b.source}, driver {b.driver_version or '?'}")
    return escape(f"no GPU telemetry: {b.reason}")


def _matrix(topo: Topology) -> Table:
    t = Table(title="GPU links (nvidia-smi topo -m letters)", title_justify="left")
    t.add_column("")
    for g in topo.gpus:
        t.add_column(f"GPU{g.index}", justify="center")
    nics = [d for d in topo.pci if d.kind in ("nic", "infiniband")]
    for n in nics:
        t.add_column(escape(_short(n)), justify="center")
    t.add_column("CPU affinity")
    t.add_column("NUMA affinity")
    for a in topo.gpus:
        row = [f"GPU{a.index}"]
        for b in topo.gpus:
            if a.index == b.index:
                row.append("X")
            else:
                lk = topo.link(a.index, b.index)
                row.append(escape(lk.label) if lk else "?")
        near = {x.address: x.level for x in a.nearby}
        row += [escape(near.get(n.address, "?")) for n in nics]
        aff = str(a.numa_node) if a.numa_node is not None else (format_cpulist(a.numa_affinity) or "N/A")
        row += [format_cpulist(a.local_cpus) or "?", aff]
        t.add_row(*row)
    return t


def _short(d: PciDevice) -> str:
    return d.names[0] if d.names else d.address


def _devices(topo: Topology, devs: list[PciDevice]) -> Table:
    t = Table(title="NICs and NVMe", title_justify="left")
    for col in ("device", "kind", "address", "NUMA", "PCIe", "slot can do", "nearest GPU"):
        t.add_column(col)
    for d in devs:
        best = None
        for g in topo.gpus:
            for n in g.nearby:
                if n.address == d.address and (best is None or LEVEL_ORDER.get(n.level, 9) < LEVEL_ORDER.get(best[1], 9)):
                    best = (g.index, n.level)
        t.add_row(escape(", ".join(d.names) or "-"), escape(d.kind), escape(d.address), _numa(d.numa_node),
                  _link(d.link), _link(d.upstream_link), escape(f"GPU{best[0]} ({best[1]})") if best else "-")
    return t


def _notes(topo: Topology) -> list[str]:
    out = [f"{k}: {v}" for k, v in topo.missing.items()]
    out += [f"{k}: {v}" for k, v in topo.cpu.missing.items()]
    for g in topo.gpus:
        out += [f"GPU{g.index} {k}: {v}" for k, v in g.missing.items()]
        out += [f"GPU{g.index} {k}: {v}" for k, v in g.static.missing.items() if k not in ("serial",)]
    return out
