"""nodetune_topology_info and nodetune_gpu_info: what the node is, one series each."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import InfoMetricFamily, Metric

from nodetune.agent.collectors import collector, gauge, put
from nodetune.agent.state import View


@collector("topology")
def topology(v: View) -> Iterator[Metric]:
    t = v.topo
    if t is None:
        return
    info = InfoMetricFamily("nodetune_topology", "The node: kernel, sockets, NUMA nodes, GPUs and their driver.")
    st = t.backend
    info.add_metric([], {
        "hostname": t.node.hostname or "", "kernel": t.node.kernel or "",
        "sockets": str(t.cpu.packages), "cpus": str(len(t.cpu.online)),
        "numa_nodes": str(len(t.cpu.numa_nodes)), "gpus": str(len(t.gpus)),
        "gpu_backend": st.source if st.available else "none", "driver_version": st.driver_version or "",
    })
    yield info
    gi = InfoMetricFamily("nodetune_gpu", "One GPU: model, UUID, PCI address, NUMA node, PCIe maximum.",
                          labels=["gpu"])
    numa = gauge("nodetune_gpu_numa_node", "NUMA node the GPU is attached to (-1: firmware did not say).", ["gpu"])
    for g in t.gpus:
        s = g.static
        gi.add_metric([str(g.index)], {
            "name": s.name or "", "uuid": s.uuid or "", "bus_id": g.address or s.bus_id or "",
            "architecture": s.architecture or "", "numa_node": "-1" if g.numa_node is None else str(g.numa_node),
            "pcie_max_gen": "" if s.pcie_max_gen is None else str(s.pcie_max_gen),
            "pcie_max_width": "" if s.pcie_max_width is None else str(s.pcie_max_width),
        })
        put(numa, [str(g.index)], -1 if g.numa_node is None else g.numa_node)
    yield gi
    yield numa
