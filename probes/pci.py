"""PCI devices that matter to a GPU node (GPUs, NVMe, NICs, InfiniBand) from /sys/bus/pci."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import partial

from .host import Host, ProbeError, attempt, parse_cpulist

PCI_DIR = "/sys/bus/pci/devices"

# PCI class codes (class << 16 | subclass << 8 | prog-if), from the PCI code and ID assignment spec.
CLASS_VGA = 0x0300
CLASS_3D = 0x0302
CLASS_NVME = 0x010802
CLASS_ETHERNET = 0x0200
CLASS_INFINIBAND = 0x0207
VENDOR_NVIDIA = 0x10DE

_GEN_BY_GTS = {2.5: 1, 5.0: 2, 8.0: 3, 16.0: 4, 32.0: 5, 64.0: 6}
# Usable bytes/s per lane after line coding (8b/10b for gen1-2, 128b/130b after; gen6 FLIT ~242/256).
_LANE_GBPS = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


@dataclass
class PciLink:
    """A PCIe link's speed (GT/s) and width; generation derived from the speed."""

    speed_gts: float | None = None
    width: int | None = None
    max_speed_gts: float | None = None
    max_width: int | None = None
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def gen(self) -> int | None:
        return _GEN_BY_GTS.get(self.speed_gts) if self.speed_gts else None

    @property
    def max_gen(self) -> int | None:
        return _GEN_BY_GTS.get(self.max_speed_gts) if self.max_speed_gts else None


def link_bandwidth_gbps(gen: int | None, width: int | None) -> float | None:
    """One direction's usable bandwidth in GB/s for a link generation and width."""
    if gen is None or width is None or gen not in _LANE_GBPS:
        return None
    return _LANE_GBPS[gen] * width


@dataclass
class PciDevice:
    address: str  # sysfs form, "0000:18:00.0"
    kind: str  # gpu | nvme | nic | infiniband
    vendor_id: int | None = None
    device_id: int | None = None
    class_code: int | None = None
    driver: str | None = None
    numa_node: int | None = None  # None when unknown (sysfs -1 or absent)
    numa_node_raw: int | None = None
    local_cpus: list[int] = field(default_factory=list)
    link: PciLink = field(default_factory=PciLink)
    upstream: str | None = None  # the bridge/port above it
    upstream_link: PciLink | None = None  # that port's capability (what the slot can do)
    path: list[str] = field(default_factory=list)  # root complex first, then each bridge, then itself
    names: list[str] = field(default_factory=list)  # netdevs, IB devices, nvme controllers
    missing: dict[str, str] = field(default_factory=dict)


def parse_link_speed(text: str, where: str) -> float:
    """Parse "32.0 GT/s PCIe" (or "8 GT/s") into GT/s; "Unknown" is an error."""
    m = re.match(r"\s*([\d.]+)\s*GT/s", text)
    if not m:
        raise ProbeError(f"{where}: link speed {text.strip()[:30]!r}")
    return float(m.group(1))


def normalize_bus_id(bus_id: str) -> str:
    """NVML "00000000:18:00.0" -> sysfs "0000:18:00.0" (lower case)."""
    bus_id = bus_id.strip().lower()
    dom, _, rest = bus_id.partition(":")
    if len(dom) > 4:
        dom = dom[-4:]
    return f"{dom}:{rest}"


def _kind(cls: int, vendor: int | None) -> str | None:
    if cls >> 8 in (CLASS_VGA, CLASS_3D):
        return "gpu"
    if cls == CLASS_NVME:
        return "nvme"
    if cls >> 8 == CLASS_ETHERNET:
        return "nic"
    if cls >> 8 == CLASS_INFINIBAND:
        return "infiniband"
    return None


def probe_link(host: Host, d: str) -> PciLink:
    link = PciLink()
    link.speed_gts = attempt(link.missing, "speed",
                             lambda: parse_link_speed(host.read(f"{d}/current_link_speed"), f"{d}/current_link_speed"))
    link.width = attempt(link.missing, "width", lambda: host.read_int(f"{d}/current_link_width"))
    link.max_speed_gts = attempt(link.missing, "max_speed",
                                 lambda: parse_link_speed(host.read(f"{d}/max_link_speed"), f"{d}/max_link_speed"))
    link.max_width = attempt(link.missing, "max_width", lambda: host.read_int(f"{d}/max_link_width"))
    return link


def _is_pci_address(name: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", name) is not None


def probe_pci_device(host: Host, address: str, kind: str, cls: int) -> PciDevice:
    d = f"{PCI_DIR}/{address}"
    dev = PciDevice(address=address, kind=kind, class_code=cls)
    dev.vendor_id = attempt(dev.missing, "vendor", lambda: host.read_int(f"{d}/vendor", 16))
    dev.device_id = attempt(dev.missing, "device", lambda: host.read_int(f"{d}/device", 16))
    drv = attempt(dev.missing, "driver", lambda: host.readlink(f"{d}/driver"))
    dev.driver = drv.rsplit("/", 1)[-1] if drv else None
    raw = attempt(dev.missing, "numa_node", lambda: host.read_int(f"{d}/numa_node"))
    dev.numa_node_raw = raw
    if raw is not None and raw < 0:
        dev.missing["numa_node"] = f"{d}/numa_node reads {raw}: firmware did not report the device's NUMA node"
    dev.numa_node = raw if raw is not None and raw >= 0 else None
    dev.local_cpus = attempt(dev.missing, "local_cpus",
                             lambda: parse_cpulist(host.read(f"{d}/local_cpulist"), f"{d}/local_cpulist")) or []
    dev.link = probe_link(host, d)

    real = host.realpath(d)
    parts = real.split("/")
    # /sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0 -> [pci0000:00, 0000:00:01.0, 0000:01:00.0]
    roots = [i for i, p in enumerate(parts) if p.startswith("pci") and ":" in p]
    if roots:
        dev.path = parts[roots[0]:]
    else:
        dev.missing["path"] = f"{d}: link does not resolve to /sys/devices/pci*"
        dev.path = [address]
    if len(dev.path) >= 3 and _is_pci_address(dev.path[-2]):
        dev.upstream = dev.path[-2]
        dev.upstream_link = probe_link(host, f"{PCI_DIR}/{dev.upstream}")

    # virtio puts the function's netdev one level down (virtio0/net/eth0).
    subdirs = [d] + [f"{d}/{c}" for c in (attempt(dev.missing, "children", lambda: host.listdir(d)) or [])
                     if c.startswith("virtio")]
    for base in subdirs:
        for sub in ("net", "infiniband", "nvme"):
            if host.exists(f"{base}/{sub}"):
                dev.names.extend(attempt(dev.missing, sub, partial(host.listdir, f"{base}/{sub}")) or [])
    return dev


def probe_pci(host: Host, missing: dict[str, str] | None = None) -> list[PciDevice]:
    """Every GPU, NVMe controller, Ethernet and InfiniBand function on the node."""
    missing = missing if missing is not None else {}
    addrs = attempt(missing, "pci", lambda: host.listdir(PCI_DIR)) or []
    devices = []
    for addr in addrs:
        cls = attempt(missing, f"pci.{addr}.class", partial(host.read_int, f"{PCI_DIR}/{addr}/class", 16))
        if cls is None:
            continue
        kind = _kind(cls, None)
        if kind is None:
            continue
        devices.append(probe_pci_device(host, addr, kind, cls))
    return devices


def common_level(a: PciDevice, b: PciDevice) -> str:
    """The `nvidia-smi topo -m` letters for the PCIe path between two devices.

    PIX: at most one bridge (one switch) between them; PXB: several bridges, no host bridge;
    PHB: through a host bridge; NODE: across host bridges of one NUMA node; SYS: across the
    inter-socket link. Unknown NUMA (-1, common in VMs) counts as one node.
    """
    if a.address == b.address:
        return "X"
    pa, pb = a.path, b.path
    if not pa or not pb or pa[0] != pb[0]:
        if a.numa_node is not None and b.numa_node is not None and a.numa_node != b.numa_node:
            return "SYS"
        return "NODE"
    common = 0
    for x, y in zip(pa[1:], pb[1:], strict=False):
        if x != y:
            break
        common += 1
    if common == 0:
        return "PHB"
    # Bridges between the deepest common bridge and each device.
    below = max(len(pa) - 2 - common, len(pb) - 2 - common)
    return "PIX" if below <= 1 else "PXB"


LEVEL_ORDER = {"X": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}
