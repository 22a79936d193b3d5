"""Which CPUs and NUMA node are local to each GPU, from sysfs (and NVML for the index order)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nodetune.probes.host import Host
from nodetune.probes.pci import VENDOR_NVIDIA, PciDevice, probe_pci

from .errors import TargetError
from .gpu_control import GpuControl, GpuControlError


@dataclass
class GpuPlace:
    index: int
    address: str
    numa_node: int | None  # None: firmware reports -1 (common in VMs)
    local_cpus: list[int] = field(default_factory=list)
    source: str = "pci-order"  # how the index was matched: nvml (bus id) | pci-order (and why)


def gpu_places(host: Host, gpus: GpuControl) -> list[GpuPlace]:
    """Every GPU with its local CPUs; NVML gives the index order, else PCI bus order."""
    pci = [d for d in probe_pci(host) if d.kind == "gpu" and d.vendor_id in (VENDOR_NVIDIA, None)]
    by_addr: dict[str, PciDevice] = {d.address: d for d in pci}
    source = "pci-order"
    if gpus.available() is None:
        try:
            out = []
            for i in range(gpus.count()):
                d = by_addr.get(gpus.bus_id(i))
                if d is not None:
                    out.append(GpuPlace(i, d.address, d.numa_node, d.local_cpus, "nvml"))
            return out
        except GpuControlError as exc:
            # NVML answered but not with bus ids: fall back to bus order (NVML's default order too).
            source = f"pci-order (NVML: {exc.reason})"
    return [GpuPlace(i, d.address, d.numa_node, d.local_cpus, source) for i, d in enumerate(pci)]


def gpu_place(host: Host, gpus: GpuControl, index: int) -> GpuPlace:
    """One GPU's place; TargetError naming the GPUs there are when the index does not exist."""
    places = gpu_places(host, gpus)
    for p in places:
        if p.index == index:
            return p
    have = ", ".join(str(p.index) for p in places) or "none"
    raise TargetError(f"GPU {index}: no such GPU on this node (GPUs: {have})")
