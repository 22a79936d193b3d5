"""PCI devices: classes, NUMA node, link speed/width (incl. degraded and unknown), upstream port
capability, names, and the `nvidia-smi topo -m` level letters between two devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.probes.host import Host, ProbeError
from nodetune.probes.pci import (
    PciDevice,
    common_level,
    link_bandwidth_gbps,
    normalize_bus_id,
    parse_link_speed,
    probe_pci,
)
from tests.support.faketree import FakeNode, dgx_h100, laptop, vm_h200

NV, H100 = 0x10DE, 0x2330


def _by_addr(root: Path) -> dict[str, PciDevice]:
    return {d.address: d for d in probe_pci(Host(str(root)))}


@pytest.mark.parametrize(
    ("text", "gts"),
    [("32.0 GT/s PCIe\n", 32.0), ("16.0 GT/s PCIe", 16.0), ("2.5 GT/s PCIe\n", 2.5),
     ("8 GT/s\n", 8.0),  # kernels before 4.20 print no decimals and no "PCIe"
     ("64.0 GT/s PCIe\n", 64.0)],
)
def test_parse_link_speed(text: str, gts: float) -> None:
    assert parse_link_speed(text, "x") == gts


@pytest.mark.parametrize("text", ["Unknown\n", "Unknown speed\n", "fast\n", "\x00\x01", ""])
def test_parse_link_speed_unknown_or_garbage(text: str) -> None:
    with pytest.raises(ProbeError, match=r"^/sys/x/current_link_speed: link speed"):
        parse_link_speed(text, "/sys/x/current_link_speed")


def test_normalize_bus_id() -> None:
    assert normalize_bus_id("00000000:18:00.0") == "0000:18:00.0"
    assert normalize_bus_id("00000000:AB:00.0\n") == "0000:ab:00.0"
    assert normalize_bus_id("0000:ab:00.0") == "0000:ab:00.0"


def test_link_bandwidth() -> None:
    assert link_bandwidth_gbps(5, 16) == pytest.approx(63.0, abs=0.1)
    assert link_bandwidth_gbps(4, 8) == pytest.approx(15.75, abs=0.01)
    assert link_bandwidth_gbps(None, 16) is None
    assert link_bandwidth_gbps(9, 16) is None


def test_dgx_devices_classes_and_links(tmp_path: Path) -> None:
    dgx_h100(tmp_path)
    devs = probe_pci(Host(str(tmp_path)))
    kinds = [d.kind for d in devs]
    # Bridges (class 0x0604) are walked through, not listed.
    assert (kinds.count("gpu"), kinds.count("infiniband"), kinds.count("nvme"), len(devs)) == (8, 2, 2, 12)
    g = next(d for d in devs if d.address == "0000:18:00.0")
    assert (g.vendor_id, g.device_id, g.class_code, g.driver) == (NV, H100, 0x030200, "nvidia")
    assert (g.numa_node, g.numa_node_raw) == (0, 0)
    assert (g.link.gen, g.link.width, g.link.max_gen, g.link.max_width) == (5, 16, 5, 16)
    assert g.path == ["pci0000:15", "0000:15:01.0", "0000:16:00.0", "0000:17:00.0", "0000:18:00.0"]
    assert g.upstream == "0000:17:00.0"
    assert g.upstream_link is not None and g.upstream_link.max_gen == 5
    assert g.missing == {}
    nvme = next(d for d in devs if d.kind == "nvme" and d.numa_node == 1)
    assert (nvme.names, nvme.driver, nvme.link.gen, nvme.link.width) == (["nvme1"], "nvme", 4, 4)
    ib = next(d for d in devs if d.kind == "infiniband" and d.numa_node == 0)
    assert ib.names == ["ibp25s0", "mlx5_0"]


def test_degraded_gpu_link_and_slot_capability(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    # A Gen5 x16 GPU that trained at Gen4 x8 in a Gen5 x16 slot (a reseat or riser problem).
    fn.pci_device(["pci0000:00", "0000:00:01.0", "0000:01:00.0"], 0x030200, NV, H100, 0, [0, 1],
                  speed="16.0 GT/s PCIe", width=8, max_speed="32.0 GT/s PCIe", max_width=16, driver="nvidia")
    # The same GPU in a slot that can only do Gen4 x16: the slot, not the GPU, is the limit.
    fn.pci_device(["pci0000:00", "0000:00:02.0", "0000:02:00.0"], 0x030200, NV, H100, 0, [0, 1],
                  speed="16.0 GT/s PCIe", width=16, max_speed="32.0 GT/s PCIe", max_width=16, driver="nvidia",
                  bridge_speed="16.0 GT/s PCIe")
    devs = _by_addr(tmp_path)
    a, b = devs["0000:01:00.0"], devs["0000:02:00.0"]
    assert (a.link.gen, a.link.width, a.link.max_gen, a.link.max_width) == (4, 8, 5, 16)
    assert a.upstream == "0000:00:01.0"
    assert a.upstream_link is not None
    assert (a.upstream_link.max_gen, a.upstream_link.max_width) == (5, 16)
    assert (b.link.gen, b.link.max_gen) == (4, 5)
    assert b.upstream_link is not None and b.upstream_link.max_gen == 4
    assert link_bandwidth_gbps(a.link.gen, a.link.width) == pytest.approx(15.75, abs=0.01)


def test_vm_devices(tmp_path: Path) -> None:
    vm_h200(tmp_path)
    devs = _by_addr(tmp_path)
    nic = devs["0000:00:03.0"]
    assert (nic.kind, nic.names, nic.driver) == ("nic", ["eth0"], "virtio-pci")  # netdev under virtio0/
    # virtio has no PCIe link: each attribute is reported absent, as on the real VMs.
    assert nic.link.gen is None and nic.link.width is None
    assert nic.link.missing["speed"] == "/sys/bus/pci/devices/0000:00:03.0/current_link_speed: not present"
    assert set(nic.link.missing) == {"speed", "width", "max_speed", "max_width"}
    gpu = devs["0000:00:05.0"]
    # Straight on the host bridge: there is no upstream port to read.
    assert gpu.path == ["pci0000:00", "0000:00:05.0"] and gpu.upstream is None and gpu.upstream_link is None
    assert (gpu.numa_node, gpu.numa_node_raw) == (None, -1)
    assert gpu.missing == {"numa_node": "/sys/bus/pci/devices/0000:00:05.0/numa_node reads -1: "
                                        "firmware did not report the device's NUMA node"}


def test_unknown_link_speed(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    # A port whose link is down reads "Unknown" (PCI_SPEED_UNKNOWN) and width 0.
    fn.pci_device(["pci0000:00", "0000:00:01.0", "0000:01:00.0"], 0x020000, 0x15B3, 0x1021, 0, [0],
                  speed="Unknown", width=0, max_speed="16.0 GT/s PCIe", max_width=16)
    dev = probe_pci(Host(str(tmp_path)))[0]
    assert dev.link.speed_gts is None and dev.link.gen is None and dev.link.width == 0
    assert (dev.link.max_gen, dev.link.max_width) == (4, 16)
    assert dev.link.missing == {"speed": "/sys/bus/pci/devices/0000:01:00.0/current_link_speed: link speed 'Unknown'"}


def test_classes(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    for slot, cls in ((1, 0x030000), (2, 0x030200), (3, 0x010802), (4, 0x020000), (5, 0x020700),
                      (6, 0x010601), (7, 0x060400), (8, 0x0C0330)):
        fn.pci_device(["pci0000:00", f"0000:00:{slot:02x}.0"], cls, 0x8086, 0x1, 0, [0])
    assert [(d.address[-4:-2], d.kind) for d in probe_pci(Host(str(tmp_path)))] == [
        ("01", "gpu"), ("02", "gpu"), ("03", "nvme"), ("04", "nic"), ("05", "infiniband")]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"banana\n", "/sys/bus/pci/devices/0000:00:05.0/numa_node: expected an integer, found 'banana'"),
        (b"\xff\xfe\n", "/sys/bus/pci/devices/0000:00:05.0/numa_node: not text"),
        (None, "/sys/bus/pci/devices/0000:00:05.0/numa_node: not present"),
        ("dir", "/sys/bus/pci/devices/0000:00:05.0/numa_node: is a directory"),
    ],
)
def test_numa_node_faults(tmp_path: Path, content: bytes | str | None, reason: str) -> None:
    fn = FakeNode(tmp_path)
    fn.pci_device(["pci0000:00", "0000:00:05.0"], 0x030200, NV, H100, 0, [0, 1], driver="nvidia")
    f = fn.p("/sys/devices/pci0000:00/0000:00:05.0/numa_node")
    f.unlink()
    if content == "dir":
        f.mkdir()
    elif isinstance(content, bytes):
        f.write_bytes(content)
    dev = probe_pci(Host(str(tmp_path)))[0]
    assert dev.numa_node is None and dev.numa_node_raw is None
    assert dev.missing == {"numa_node": reason}
    assert dev.link.gen == 5  # the rest of the device is still read


def test_link_and_class_garbage(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.pci_device(["pci0000:00", "0000:00:05.0"], 0x030200, NV, H100, 0, [0, 1], driver="nvidia")
    fn.pci_device(["pci0000:00", "0000:00:06.0"], 0x030200, NV, H100, 0, [0, 1])
    d5 = "/sys/devices/pci0000:00/0000:00:05.0"
    fn.p(f"{d5}/current_link_speed").write_bytes(b"\x80\x81 GT/s\n")
    fn.write(f"{d5}/current_link_width", "sixteen\n")
    fn.write(f"{d5}/local_cpulist", "0-\n")
    fn.write("/sys/devices/pci0000:00/0000:00:06.0/class", "0xZZ\n")
    missing: dict[str, str] = {}
    devs = probe_pci(Host(str(tmp_path)), missing)
    assert [d.address for d in devs] == ["0000:00:05.0"]
    assert missing == {"pci.0000:00:06.0.class": "/sys/bus/pci/devices/0000:00:06.0/class: expected an integer, "
                                                 "found '0xZZ'"}
    d = devs[0]
    assert d.link.speed_gts is None and d.link.width is None and d.link.max_gen == 5
    assert d.link.missing == {
        "speed": "/sys/bus/pci/devices/0000:00:05.0/current_link_speed: not text",
        "width": "/sys/bus/pci/devices/0000:00:05.0/current_link_width: expected an integer, found 'sixteen'",
    }
    assert d.local_cpus == [] and "bad cpu list" in d.missing["local_cpus"]
    assert d.driver == "nvidia"
    # A device without a bound driver has no driver link: recorded, not fatal.
    fn.write("/sys/devices/pci0000:00/0000:00:06.0/class", "0x030200\n")
    d6 = _by_addr(tmp_path)["0000:00:06.0"]
    assert d6.driver is None and d6.missing["driver"].endswith("/driver: not present")


def test_no_pci_bus(tmp_path: Path) -> None:
    missing: dict[str, str] = {}
    assert probe_pci(Host(str(tmp_path)), missing) == []
    assert missing == {"pci": "/sys/bus/pci/devices: not present"}


def _level_tree(root: Path) -> dict[str, PciDevice]:
    """One host bridge with nested PCIe switches, plus two more host bridges (one per socket).

    pci0000:00 - 00:01.0 - [switch 01/02] -+- 02:00.0 - [switch 03/04] -+- 04:00.0 - GPU A 05:00.0
                                           |                            +- 04:01.0 - GPU B 06:00.0
                                           +- 02:01.0 - NIC C 07:00.0
               - 00:02.0 - NVMe D 08:00.0
    pci0000:40 (node 0) - 40:01.0 - GPU E 41:00.0
    pci0000:80 (node 1) - 80:01.0 - GPU F 81:00.0
    """
    fn = FakeNode(root)
    hb, rp, usp = "pci0000:00", "0000:00:01.0", "0000:01:00.0"
    fn.pci_device([hb, rp, usp, "0000:02:00.0", "0000:03:00.0", "0000:04:00.0", "0000:05:00.0"], 0x030200, NV,
                  H100, 0, [0], driver="nvidia")
    fn.pci_device([hb, rp, usp, "0000:02:00.0", "0000:03:00.0", "0000:04:01.0", "0000:06:00.0"], 0x030200, NV,
                  H100, 0, [0], driver="nvidia")
    fn.pci_device([hb, rp, usp, "0000:02:01.0", "0000:07:00.0"], 0x020000, 0x15B3, 0x1021, 0, [0])
    fn.pci_device([hb, "0000:00:02.0", "0000:08:00.0"], 0x010802, 0x144D, 0xA824, 0, [0])
    fn.pci_device(["pci0000:40", "0000:40:01.0", "0000:41:00.0"], 0x030200, NV, H100, 0, [0])
    fn.pci_device(["pci0000:80", "0000:80:01.0", "0000:81:00.0"], 0x030200, NV, H100, 1, [1])
    return _by_addr(root)


def test_level_letters(tmp_path: Path) -> None:
    d = _level_tree(tmp_path)
    a, b, c, nvme, e, f = (d[x] for x in ("0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0",
                                          "0000:41:00.0", "0000:81:00.0"))
    assert common_level(a, a) == "X"
    assert common_level(a, b) == "PIX"  # one switch between them
    assert common_level(a, c) == "PXB"  # two switches, no host bridge
    assert common_level(c, a) == "PXB"
    assert common_level(b, nvme) == "PHB"  # through the host bridge
    assert common_level(a, e) == "NODE"  # across host bridges of one NUMA node
    assert common_level(a, f) == "SYS"  # across the socket interconnect
    assert common_level(f, e) == "SYS"


def test_unknown_numa_counts_as_one_node(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.pci_device(["pci0000:00", "0000:00:05.0"], 0x030200, NV, H100, -1, [0])
    fn.pci_device(["pci0000:20", "0000:20:01.0", "0000:21:00.0"], 0x030200, NV, H100, 1, [0])
    d = _by_addr(tmp_path)
    assert common_level(d["0000:00:05.0"], d["0000:21:00.0"]) == "NODE"


def test_laptop_nic_on_the_host_bridge(tmp_path: Path) -> None:
    laptop(tmp_path)
    (nic,) = probe_pci(Host(str(tmp_path)))
    assert (nic.kind, nic.names, nic.driver, nic.link.gen, nic.link.width) == ("nic", ["enp0s31f6"], "e1000e", 1, 1)
    assert nic.upstream is None
