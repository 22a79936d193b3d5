"""The node's topology: CPUs and NUMA, PCI devices, GPUs and the links between them."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from .gpu import BackendStatus, GpuBackend, GpuStatic, NvLink
from .host import Host, ProbeError, attempt
from .pci import LEVEL_ORDER, PciDevice, common_level, probe_pci
from .storage import BlockQueue, Mount, probe_block_devices, probe_mounts
from .topology import CpuTopology, probe_cpu_topology


@dataclass
class NodeInfo:
    hostname: str | None = None
    kernel: str | None = None
    os: str | None = None
    machine: str | None = None
    clk_tck: int = 100
    page_kb: int = 4  # the node's page size: 64 on some aarch64 GPU nodes (GH200), 4 on x86


@dataclass
class Nearby:
    """A NIC or NVMe device and how far it sits from a GPU (`nvidia-smi topo -m` letters)."""

    kind: str
    address: str
    names: list[str]
    level: str


@dataclass
class Gpu:
    index: int
    static: GpuStatic
    address: str | None = None  # PCI address in sysfs form
    numa_node: int | None = None
    local_cpus: list[int] = field(default_factory=list)
    # NUMA nodes whose CPUs the GPU is local to (what nvidia-smi calls NUMA affinity); known even
    # when the device's numa_node reads -1, as on single-node VMs.
    numa_affinity: list[int] = field(default_factory=list)
    nvlinks: list[NvLink] = field(default_factory=list)
    nearby: list[Nearby] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"GPU{self.index}"


@dataclass
class GpuLink:
    """One pair of GPUs: NVLink count and the PCIe path level."""

    a: int
    b: int
    nvlinks: int
    level: str | None  # PIX | PXB | PHB | NODE | SYS
    level_source: str  # nvml | sysfs | none

    @property
    def label(self) -> str:
        if self.nvlinks:
            return f"NV{self.nvlinks}"
        return self.level or "?"


@dataclass
class Topology:
    node: NodeInfo
    cpu: CpuTopology
    pci: list[PciDevice]
    backend: BackendStatus
    gpus: list[Gpu] = field(default_factory=list)
    gpu_links: list[GpuLink] = field(default_factory=list)
    block_devices: list[BlockQueue] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def gpu(self, index: int) -> Gpu | None:
        return next((g for g in self.gpus if g.index == index), None)

    def link(self, a: int, b: int) -> GpuLink | None:
        lo, hi = min(a, b), max(a, b)
        return next((lk for lk in self.gpu_links if lk.a == lo and lk.b == hi), None)


def _node_info(host: Host, missing: dict[str, str]) -> NodeInfo:
    info = NodeInfo(machine=platform.machine())
    info.hostname = attempt(missing, "hostname", lambda: host.read_line("/proc/sys/kernel/hostname"))
    info.kernel = attempt(missing, "kernel", lambda: host.read_line("/proc/sys/kernel/osrelease"))
    osr = attempt(missing, "os", lambda: host.read("/etc/os-release"))
    if osr:
        for line in osr.splitlines():
            if line.startswith("PRETTY_NAME="):
                info.os = line.split("=", 1)[1].strip().strip('"')
    try:
        info.clk_tck = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        missing["clk_tck"] = "sysconf(SC_CLK_TCK) unavailable; assuming 100"
    info.page_kb = _page_kb(host, missing)
    return info


def _page_kb(host: Host, missing: dict[str, str]) -> int:
    """The node's base page size: sysconf on the live node; under a root, init's smaps says it."""
    if host.live:
        try:
            return max(1, os.sysconf("SC_PAGE_SIZE") // 1024)
        except (ValueError, OSError):
            pass
    try:
        for line in host.read("/proc/1/smaps").splitlines()[:40]:
            if line.startswith("KernelPageSize:"):
                kb = line.split()[1]
                if kb.isdigit() and 0 < int(kb) <= 1 << 20:
                    return int(kb)
    except ProbeError:
        pass
    missing["page_kb"] = "page size unknown (no sysconf, no /proc/1/smaps KernelPageSize); assuming 4 kB"
    return 4


def _pair_nvlinks(gpus: list[Gpu], a: Gpu, b: Gpu) -> int:
    """NVLinks between two GPUs: direct links, or through NVSwitch the smaller side's count."""
    direct = sum(1 for nl in a.nvlinks if nl.active and nl.remote_kind in ("gpu", None)
                 and nl.remote_bus_id and b.address and nl.remote_bus_id == b.address)
    if direct:
        return direct
    sa = sum(1 for nl in a.nvlinks if nl.active and nl.remote_kind == "switch")
    sb = sum(1 for nl in b.nvlinks if nl.active and nl.remote_kind == "switch")
    return min(sa, sb)


def probe_topology(host: Host, backend: GpuBackend, status: BackendStatus) -> Topology:
    """Everything about the node that a window of samples does not change."""
    missing: dict[str, str] = {}
    topo = Topology(
        node=_node_info(host, missing),
        cpu=probe_cpu_topology(host),
        pci=probe_pci(host, missing),
        backend=status,
        missing=missing,
    )
    topo.block_devices = probe_block_devices(host, missing)
    topo.mounts = probe_mounts(host, missing)
    by_addr = {d.address: d for d in topo.pci}
    pci_gpus = [d for d in topo.pci if d.kind == "gpu"]

    if status.available:
        for i in range(status.device_count):
            st = backend.static(i)
            g = Gpu(index=i, static=st, address=st.bus_id)
            g.nvlinks = backend.nvlinks(i)
            topo.gpus.append(g)
    else:
        # No NVML: still show the GPUs the PCI bus has, in bus order (NVML's default order).
        for i, d in enumerate(d for d in pci_gpus if d.vendor_id in (0x10DE, None)):
            g = Gpu(index=i, static=GpuStatic(index=i, bus_id=d.address), address=d.address)
            g.missing["telemetry"] = status.reason or "GPU backend unavailable"
            topo.gpus.append(g)

    for g in topo.gpus:
        dev = by_addr.get(g.address or "")
        if dev is None:
            g.missing["pci"] = f"{g.address}: not under /sys/bus/pci/devices (passthrough without sysfs?)"
            continue
        g.numa_node = dev.numa_node
        g.local_cpus = dev.local_cpus
        g.numa_affinity = sorted({n for c in dev.local_cpus if (n := topo.cpu.node_of_cpu(c)) is not None})
        if "numa_node" in dev.missing:
            g.missing["numa_node"] = dev.missing["numa_node"]
        for other in topo.pci:
            if other.kind in ("nic", "infiniband", "nvme"):
                g.nearby.append(Nearby(other.kind, other.address, other.names, common_level(dev, other)))
        g.nearby.sort(key=lambda n: (LEVEL_ORDER.get(n.level, 9), n.address))

    for i, a in enumerate(topo.gpus):
        for b in topo.gpus[i + 1:]:
            level, source = None, "none"
            if status.available:
                level = backend.common_ancestor(a.index, b.index)
                source = "nvml" if level else "none"
            da, db = by_addr.get(a.address or ""), by_addr.get(b.address or "")
            if level is None and da and db:
                level, source = common_level(da, db), "sysfs"
            topo.gpu_links.append(GpuLink(a.index, b.index, _pair_nvlinks(topo.gpus, a, b), level, source))
    return topo
