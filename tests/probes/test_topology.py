"""CPU/NUMA topology of each preset, and the node topology with GPUs, links and nearby devices."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.probes.host import Host
from nodetune.probes.node import Topology, probe_topology
from nodetune.probes.nvml_backend import NvmlBackend
from nodetune.probes.source import NoGpuBackend
from nodetune.probes.topology import probe_cpu_topology
from tests.support.fakenvml import FakeGpu, FakeNvml, hgx_gpus, nvlink_pair_gpus, nvml_bus_id
from tests.support.faketree import FakeNode, Preset, dgx_h100, h200_pair, laptop, vm_h200

NO_NVML_REASON = "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this node"


def _no_nvml(root: Path) -> Topology:
    """The topology the CLI shows for a fake root: no NVML, GPUs from sysfs."""
    b = NoGpuBackend(NO_NVML_REASON)
    return probe_topology(Host(str(root)), b, b.open())


def _nvml_topology(root: Path, gpus: list[FakeGpu], **kw: object) -> tuple[Topology, FakeNvml]:
    nv = FakeNvml(gpus, **kw)  # type: ignore[arg-type]
    b = NvmlBackend(nv)
    st = b.open()
    return probe_topology(Host(str(root)), b, st), nv


# -- CPUs and NUMA ------------------------------------------------------------------------------

def test_dgx_cpu_topology(tmp_path: Path) -> None:
    dgx_h100(tmp_path)
    t = probe_cpu_topology(Host(str(tmp_path)))
    assert (t.packages, t.cores, len(t.online), len(t.cpus)) == (2, 112, 224, 224)
    assert t.missing == {}
    cpu0, cpu112, cpu56 = t.cpus[0], t.cpus[112], t.cpus[56]
    # Linux numbering: first threads of every core, then their siblings.
    assert (cpu0.package, cpu0.core, cpu0.siblings, cpu0.numa_node) == (0, 0, [0, 112], 0)
    assert (cpu112.package, cpu112.core, cpu112.siblings) == (0, 0, [0, 112])
    assert (cpu56.package, cpu56.core, cpu56.numa_node) == (1, 0, 1)
    assert [n.node for n in t.numa_nodes] == [0, 1]
    assert t.numa_nodes[0].cpus == list(range(56)) + list(range(112, 168))
    assert [n.distances for n in t.numa_nodes] == [[10, 21], [21, 10]]
    assert t.numa_nodes[1].mem_total_kb == 1024 * 1048576
    assert t.numa_nodes[1].mem_free_kb == 512 * 1048576
    assert t.node_of_cpu(200) == 1 and t.node_of_cpu(999) is None


def test_vm_and_laptop_cpu_topology(tmp_path: Path) -> None:
    vm_h200(tmp_path / "vm")
    laptop(tmp_path / "lap")
    vm = probe_cpu_topology(Host(str(tmp_path / "vm")))
    assert (vm.packages, vm.cores, vm.online) == (1, 16, list(range(16)))
    assert all(c.siblings == [c.cpu] for c in vm.cpus)  # no SMT in the VM
    lap = probe_cpu_topology(Host(str(tmp_path / "lap")))
    assert (lap.packages, lap.cores, len(lap.online)) == (1, 4, 8)
    assert lap.cpus[1].siblings == [1, 5]
    assert [n.distances for n in lap.numa_nodes] == [[10]]


def test_offline_cpu(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    pkgs = fn.cpus(packages=1, cores=4, smt=2, offline=(5,))
    fn.numa(pkgs, mem_gib=16)
    t = probe_cpu_topology(Host(str(tmp_path)))
    assert Host(str(tmp_path)).read_line("/sys/devices/system/cpu/online") == "0-4,6-7"
    assert t.online == [0, 1, 2, 3, 4, 6, 7]
    c5 = t.cpus[5]
    assert (c5.online, c5.package, c5.core, c5.missing) == (False, None, None, {})
    # The offline thread's sibling still counts as a core, now without its pair.
    assert t.cpus[1].siblings == [1]
    assert (t.packages, t.cores) == (1, 4)


def test_hugepages_per_size_per_node(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    pkgs = fn.cpus(packages=2, cores=4, smt=1)
    fn.numa(pkgs, mem_gib=64, hugepages_2m=512)
    one_g = "/sys/devices/system/node/node1/hugepages/hugepages-1048576kB"
    fn.attr(f"{one_g}/nr_hugepages", 8)
    fn.attr(f"{one_g}/free_hugepages", 6)
    t = probe_cpu_topology(Host(str(tmp_path)))
    pools = {n.node: [(p.size_kb, p.total, p.free, p.surplus) for p in n.hugepages] for n in t.numa_nodes}
    assert pools == {0: [(2048, 512, 512, 0), (1048576, 0, 0, 0)],
                     1: [(2048, 512, 512, 0), (1048576, 8, 6, 0)]}


def test_four_node_distance_matrix(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    pkgs = fn.cpus(packages=2, cores=8, smt=1)
    nodes = [pkgs[0][:4], pkgs[0][4:], pkgs[1][:4], pkgs[1][4:]]
    dist = [[10, 12, 32, 32], [12, 10, 32, 32], [32, 32, 10, 12], [32, 32, 12, 10]]
    fn.numa(nodes, mem_gib=32, distances=dist)
    t = probe_cpu_topology(Host(str(tmp_path)))
    assert [n.distances for n in t.numa_nodes] == dist
    assert t.node_of_cpu(5) == 1 and t.node_of_cpu(12) == 3


def test_kernel_without_numa_synthesizes_one_node(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.cpus(packages=1, cores=2, smt=2)
    t = probe_cpu_topology(Host(str(tmp_path)))
    assert t.missing["numa_nodes"].startswith("/sys/devices/system/node: not present")
    assert [(n.node, n.cpus) for n in t.numa_nodes] == [(0, [0, 1, 2, 3])]
    assert t.numa_nodes[0].missing == {"node": "synthesized: no NUMA info"}
    assert all(c.numa_node == 0 for c in t.cpus)


def test_faults_in_cpu_and_numa_files(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    pkgs = fn.cpus(packages=1, cores=4, smt=1)
    fn.numa(pkgs, mem_gib=8)
    fn.remove("/sys/devices/system/cpu/online")
    fn.remove("/sys/devices/system/cpu/cpu2/topology/core_id")
    fn.write("/sys/devices/system/cpu/cpu3/topology/thread_siblings_list", "three\n")
    fn.write("/sys/devices/system/node/node0/distance", "10 ten\n")
    fn.p("/sys/devices/system/node/node0/meminfo").unlink()
    fn.p("/sys/devices/system/node/node0/meminfo").mkdir()
    t = probe_cpu_topology(Host(str(tmp_path)))
    # Without the online file every CPU directory counts as online; the reason is kept.
    assert t.online == [0, 1, 2, 3]
    assert t.missing == {"online": "/sys/devices/system/cpu/online: not present"}
    assert t.cpus[2].core is None and t.cpus[2].package == 0
    assert t.cpus[2].missing == {"core": "/sys/devices/system/cpu/cpu2/topology/core_id: not present"}
    assert t.cpus[3].siblings == [3]
    assert t.cpus[3].missing["siblings"] == ("/sys/devices/system/cpu/cpu3/topology/thread_siblings_list: "
                                             "bad cpu list 'three'")
    n0 = t.numa_nodes[0]
    assert n0.distances == [] and "expected integers" in n0.missing["distances"]
    assert n0.mem_total_kb is None
    assert n0.missing["meminfo"] == "/sys/devices/system/node/node0/meminfo: is a directory"
    assert n0.cpus == [0, 1, 2, 3]


def test_empty_root_reports_instead_of_failing(tmp_path: Path) -> None:
    t = probe_cpu_topology(Host(str(tmp_path)))
    assert t.cpus == [] and t.numa_nodes == [] and t.packages == 0
    assert t.missing["cpus"] == "/sys/devices/system/cpu: not present"


# -- GPUs, links and nearby devices ------------------------------------------------------------------

@pytest.fixture(scope="module")
def dgx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Preset]:
    """The 8-GPU tree, built once for the read-only tests below."""
    root = tmp_path_factory.mktemp("dgx")
    return root, dgx_h100(root)


def test_dgx_gpus_on_nvswitch(dgx: tuple[Path, Preset]) -> None:
    tmp_path, p = dgx
    topo, _ = _nvml_topology(tmp_path, hgx_gpus(p.gpu_addresses))
    assert topo.backend.available and topo.backend.device_count == 8
    assert [g.address for g in topo.gpus] == p.gpu_addresses
    assert [g.numa_node for g in topo.gpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert topo.gpus[5].local_cpus == p.gpu_local_cpus[5]
    assert all(g.missing == {} for g in topo.gpus)
    assert len(topo.gpu_links) == 28
    # 18 NVLinks from each GPU to the NVSwitches: every pair is NV18.
    assert {lk.label for lk in topo.gpu_links} == {"NV18"}
    # The PCIe level under the NVLinks (from sysfs: FakeNvml has no common-ancestor data here).
    lk01, lk04 = topo.link(0, 1), topo.link(4, 0)
    assert lk01 is not None and lk04 is not None
    assert (lk01.level, lk01.level_source) == ("NODE", "sysfs")
    assert (lk04.level, lk04.level_source) == ("SYS", "sysfs")


def test_dgx_nearby_nics_and_nvme(dgx: tuple[Path, Preset]) -> None:
    tmp_path, p = dgx
    topo, _ = _nvml_topology(tmp_path, hgx_gpus(p.gpu_addresses))
    g0, g1, g4 = topo.gpus[0], topo.gpus[1], topo.gpus[4]
    assert [(n.kind, n.names, n.level) for n in g0.nearby] == [
        ("infiniband", ["ibp25s0", "mlx5_0"], "PIX"),  # same PCIe switch
        ("nvme", ["nvme0"], "NODE"),  # another host bridge of socket 0
        ("nvme", ["nvme1"], "SYS"),
        ("infiniband", ["ibp155s0", "mlx5_1"], "SYS"),
    ]
    assert {n.names[0]: n.level for n in g1.nearby} == {"ibp25s0": "NODE", "nvme0": "NODE", "nvme1": "SYS",
                                                         "ibp155s0": "SYS"}
    assert g4.nearby[0].names == ["ibp155s0", "mlx5_1"] and g4.nearby[0].level == "PIX"


def test_levels_from_nvml_win_over_sysfs(dgx: tuple[Path, Preset]) -> None:
    tmp_path, p = dgx
    topo, nv = _nvml_topology(tmp_path, hgx_gpus(p.gpu_addresses), levels={(0, 1): 40, (0, 4): 50, (2, 3): 20})
    assert nv.calls.count("nvmlDeviceGetTopologyCommonAncestor") == 28
    got = {(lk.a, lk.b): (lk.level, lk.level_source) for lk in topo.gpu_links}
    assert got[(0, 1)] == ("NODE", "nvml")
    assert got[(0, 4)] == ("SYS", "nvml")
    assert got[(2, 3)] == ("PXB", "nvml")
    assert got[(1, 2)] == ("NODE", "sysfs")


def test_two_gpus_with_direct_nvlinks(tmp_path: Path) -> None:
    p = h200_pair(tmp_path)
    topo, _ = _nvml_topology(tmp_path, nvlink_pair_gpus(p.gpu_addresses))
    lk = topo.link(0, 1)
    assert lk is not None
    assert (lk.nvlinks, lk.label, lk.level) == (18, "NV18", "PHB")
    assert [nl.remote_kind for nl in topo.gpus[0].nvlinks] == ["gpu"] * 18
    assert {nl.remote_bus_id for nl in topo.gpus[1].nvlinks} == {p.gpu_addresses[0]}
    assert [g.numa_node for g in topo.gpus] == [None, None]


def test_inactive_nvlinks_are_not_counted(tmp_path: Path) -> None:
    p = h200_pair(tmp_path)
    gpus = nvlink_pair_gpus(p.gpu_addresses)
    gpus[0].nvlinks_down = {3, 7}
    topo, _ = _nvml_topology(tmp_path, gpus)
    lk = topo.link(1, 0)
    assert lk is not None and lk.label == "NV16"
    assert [nl.active for nl in topo.gpus[0].nvlinks].count(False) == 2


def test_gpus_without_nvlink_show_the_pcie_level(tmp_path: Path) -> None:
    p = h200_pair(tmp_path)
    topo, _ = _nvml_topology(tmp_path, nvlink_pair_gpus(p.gpu_addresses, links=0))
    lk = topo.link(0, 1)
    assert lk is not None and (lk.nvlinks, lk.label) == (0, "PHB")
    assert topo.gpus[0].nvlinks == []


def test_vm_gpu_with_unknown_numa_node(tmp_path: Path) -> None:
    p = vm_h200(tmp_path)
    gpu = FakeGpu(bus_id=nvml_bus_id(p.gpu_addresses[0]), name="NVIDIA H200")
    topo, _ = _nvml_topology(tmp_path, [gpu])
    g = topo.gpus[0]
    assert g.numa_node is None
    assert g.missing == {"numa_node": "/sys/bus/pci/devices/0000:00:05.0/numa_node reads -1: "
                                      "firmware did not report the device's NUMA node"}
    assert g.local_cpus == list(range(16))
    assert [(n.kind, n.names, n.level) for n in g.nearby] == [("nic", ["eth0"], "PHB")]
    assert topo.gpu_links == []
    assert g.static.name == "NVIDIA H200"


def test_laptop_without_gpu_or_nvml(tmp_path: Path) -> None:
    laptop(tmp_path)
    topo, nv = _nvml_topology(tmp_path, [], init_error=12)
    assert not topo.backend.available
    assert topo.backend.reason == "NVML library (libnvidia-ml.so.1) not found: no NVIDIA driver on this node"
    assert topo.gpus == [] and topo.gpu_links == []
    assert [d.kind for d in topo.pci] == ["nic"]
    assert list(nv.calls) == []
    assert [(m.mount_point, m.device, m.disks) for m in topo.mounts] == [("/", "dm-0", ["sda"])]


def test_gpus_from_sysfs_when_nvml_is_unavailable(dgx: tuple[Path, Preset]) -> None:
    tmp_path, p = dgx
    topo = _no_nvml(tmp_path)
    assert [g.address for g in topo.gpus] == p.gpu_addresses
    assert all(g.missing["telemetry"] == NO_NVML_REASON for g in topo.gpus)
    assert [g.numa_node for g in topo.gpus] == p.gpu_numa
    lk = topo.link(3, 4)
    assert lk is not None and (lk.nvlinks, lk.label, lk.level_source) == (0, "SYS", "sysfs")


def test_nvml_gpu_missing_from_sysfs(tmp_path: Path) -> None:
    laptop(tmp_path)
    topo, _ = _nvml_topology(tmp_path, [FakeGpu(bus_id="00000000:41:00.0")])
    g = topo.gpus[0]
    assert g.address == "0000:41:00.0"
    assert g.missing["pci"].startswith("0000:41:00.0: not under /sys/bus/pci/devices")
    assert g.numa_node is None and g.nearby == []


def test_node_info(tmp_path: Path) -> None:
    vm_h200(tmp_path)
    topo = _no_nvml(tmp_path)
    assert (topo.node.hostname, topo.node.kernel, topo.node.os) == ("h200-vm", "6.18.44-fc-v236-gpu",
                                                                    "Ubuntu 22.04.4 LTS")
    assert topo.node.clk_tck > 0


@pytest.mark.parametrize("preset", [dgx_h100, vm_h200, laptop, h200_pair])
def test_every_preset_probes_without_missing_node_files(tmp_path: Path, preset) -> None:  # type: ignore[no-untyped-def]
    preset(tmp_path)
    topo = _no_nvml(tmp_path)
    assert topo.missing == {}
    assert topo.cpu.missing == {}
    assert all(d.missing == {} or set(d.missing) == {"numa_node"} or set(d.missing) <= {"speed", "max_speed"}
               for d in topo.pci)
