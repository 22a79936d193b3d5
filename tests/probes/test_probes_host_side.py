"""Host-side probes on real kernel text: cpu (/proc/stat), memory, io (PSI, diskstats), storage
(mountinfo, partitions, dm, md), thermal (hwmon, thermal zones) and processes (stat, cgroup, numa_maps)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodetune.probes.cpu import parse_proc_stat, probe_cpu
from nodetune.probes.host import Host, ProbeError
from nodetune.probes.io import parse_diskstats, parse_psi, probe_io
from nodetune.probes.memory import parse_meminfo, parse_selected, parse_vmstat, probe_memory
from nodetune.probes.processes import (
    descendants,
    job_of,
    parse_cgroup,
    parse_numa_maps,
    parse_stat,
    process_info,
    sample_process,
    users,
)
from nodetune.probes.storage import (
    mount_for_path,
    parse_mountinfo,
    probe_block_devices,
    probe_mounts,
)
from nodetune.probes.thermal import cpu_package_temps, probe_thermal
from tests.support.faketree import FakeNode, FakeProc, dgx_h100, laptop, vm_h200

# -- cpu -------------------------------------------------------------------------------------

# A 2-vCPU VM (kernel 6.18): user nice system idle iowait irq softirq steal guest guest_nice.
PROC_STAT = """\
cpu  11313 0 1114 157179 126 0 69 10 0 0
cpu0 6659 0 480 77684 32 0 35 4 0 0
cpu1 4653 0 633 79494 94 0 33 5 0 0
intr 152829 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1 1 10 0 0 0 0 169 15 0 26 1 7975
ctxt 223591
btime 1795305979
processes 4895
procs_running 3
procs_blocked 0
softirq 95043 0 14952 3 4515 7973 0 3 39254 0 28343
"""


def test_parse_proc_stat() -> None:
    s = parse_proc_stat(PROC_STAT)
    assert s.total is not None
    assert (s.total.cpu, s.total.user, s.total.system, s.total.idle, s.total.iowait, s.total.steal) == (
        -1, 11313, 1114, 157179, 126, 10)
    assert s.total.busy == 11313 + 1114 + 69
    assert s.total.total == 11313 + 1114 + 157179 + 126 + 69 + 10
    assert [(c.cpu, c.user, c.softirq, c.steal) for c in s.per_cpu] == [(0, 6659, 35, 4), (1, 4653, 33, 5)]
    assert (s.procs_running, s.procs_blocked) == (3, 0)


def test_parse_proc_stat_old_kernel_without_steal() -> None:
    # 2.6.9: seven columns, no steal/guest.
    s = parse_proc_stat("cpu  100 2 30 4000 5 1 1\ncpu0 100 2 30 4000 5 1 1\nprocs_running 1\n")
    assert s.total is not None and (s.total.softirq, s.total.steal) == (1, 0)


@pytest.mark.parametrize(
    "text",
    [
        "cpu  1 2 x 4 5 6 7 8 0 0\n",
        "cpu  1 2 3 4 5 6 7 8 0 0\ncpuX 1 2 3 4 5 6 7 8 0 0\n",
        "cpu  1 2 3 4 5 6 7 8 0 0\nprocs_running lots\n",
        "cpu  1 2 3 4 5 6 7 8 0 0\nprocs_blocked\n",
    ],
)
def test_parse_proc_stat_garbage(text: str) -> None:
    with pytest.raises(ProbeError, match=r"^/proc/stat: bad line"):
        parse_proc_stat(text)


def test_parse_proc_stat_without_cpu_line() -> None:
    with pytest.raises(ProbeError, match="no cpu line"):
        parse_proc_stat("intr 1 2 3\n")


def test_probe_cpu_on_a_tree_and_its_faults(tmp_path: Path) -> None:
    dgx_h100(tmp_path)
    h = Host(str(tmp_path))
    s = probe_cpu(h)
    assert len(s.per_cpu) == 224 and s.loadavg == [1.5, 1.2, 0.9] and s.missing == {}
    fn = FakeNode(tmp_path)
    fn.p("/proc/stat").write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe")
    fn.write("/proc/loadavg", "high high high 1/2 3\n")
    s = probe_cpu(h)
    assert s.total is None and s.per_cpu == []
    assert s.missing == {"stat": "/proc/stat: not text",
                         "loadavg": "/proc/loadavg: bad content 'high high high'"}
    fn.remove("/proc/stat")
    fn.remove("/proc/loadavg")
    assert probe_cpu(h).missing == {"stat": "/proc/stat: not present", "loadavg": "/proc/loadavg: not present"}


# -- memory ----------------------------------------------------------------------------------

MEMINFO = """\
MemTotal:       131899396 kB
MemFree:        105229576 kB
MemAvailable:   126152144 kB
Buffers:          263072 kB
Cached:         20871088 kB
SwapCached:            0 kB
Active:          4720876 kB
Inactive:       19311584 kB
Active(anon):    2856524 kB
Inactive(anon):        0 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:               156 kB
Writeback:             0 kB
AnonPages:       2897280 kB
Shmem:             16788 kB
AnonHugePages:   1015808 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
Hugepagesize:       2048 kB
DirectMap1G:    122683392 kB
"""


def test_parse_meminfo_and_vmstat() -> None:
    mi = parse_meminfo(MEMINFO)
    assert (mi["MemTotal"], mi["Active(anon)"], mi["HugePages_Total"], mi["Hugepagesize"]) == (
        131899396, 2856524, 0, 2048)
    with pytest.raises(ProbeError, match="no MemTotal"):
        parse_meminfo("MemFree: 1 kB\n")
    vm = parse_vmstat("nr_free_pages 26307394\npgfault 98765\nnuma_hit 1\nworkingset_refault_anon 0\njunk\n")
    assert vm == {"nr_free_pages": 26307394, "pgfault": 98765, "numa_hit": 1, "workingset_refault_anon": 0}


def test_parse_selected() -> None:
    assert parse_selected("always [madvise] never\n", "x") == "madvise"
    assert parse_selected("[always] defer defer+madvise madvise never\n", "x") == "always"
    with pytest.raises(ProbeError, match=r"^/sys/kernel/mm/transparent_hugepage/enabled: no \[selected\] value"):
        parse_selected("always madvise never\n", "/sys/kernel/mm/transparent_hugepage/enabled")


def test_probe_memory(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.system_files()
    pkgs = fn.cpus(packages=2, cores=4, smt=1)
    fn.numa(pkgs, mem_gib=64, hugepages_2m=1024)
    fn.thp("always", "defer+madvise")
    s = probe_memory(Host(str(tmp_path)), [0, 1])
    assert s.meminfo_kb["MemTotal"] == 128 * 1048576 and "Active" not in s.meminfo_kb
    assert s.vmstat["pgmajfault"] == 10 and "nr_free_pages" not in s.vmstat
    assert [(n.node, n.total_kb, n.free_kb, n.file_pages_kb) for n in s.nodes] == [
        (0, 64 * 1048576, 32 * 1048576, 8 * 1048576), (1, 64 * 1048576, 32 * 1048576, 8 * 1048576)]
    assert (s.thp_enabled, s.thp_defrag) == ("always", "defer+madvise")
    assert [(p.size_kb, p.total) for p in s.hugepages] == [(2048, 2048), (1048576, 0)]
    assert s.missing == {}
    light = probe_memory(Host(str(tmp_path)), [0, 1], detail=False)
    assert light.nodes == [] and light.thp_enabled is None and light.meminfo_kb == s.meminfo_kb


def test_probe_memory_faults(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.write("/proc/meminfo", "garbage\n")
    fn.attr("/sys/kernel/mm/transparent_hugepage/enabled", "always madvise never")
    s = probe_memory(Host(str(tmp_path)), [0])
    assert s.missing == {
        "meminfo": "/proc/meminfo: no MemTotal line",
        "vmstat": "/proc/vmstat: not present",
        "node0": "/sys/devices/system/node/node0/meminfo: not present",
        "thp_enabled": "/sys/kernel/mm/transparent_hugepage/enabled: no [selected] value in 'always madvise never'",
        "thp_defrag": "/sys/kernel/mm/transparent_hugepage/defrag: not present",
        "hugepages": "/sys/kernel/mm/hugepages: not present",
    }


# -- io: PSI and diskstats -----------------------------------------------------------------------

PSI_CPU_5_13 = "some avg10=7.59 avg60=2.65 avg300=0.65 total=3789410\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
PSI_CPU_5_4 = "some avg10=0.12 avg60=0.05 avg300=0.01 total=8265314\n"  # before 5.13: no "full" for cpu
PSI_IO = "some avg10=0.40 avg60=0.11 avg300=0.02 total=759043\nfull avg10=0.40 avg60=0.11 avg300=0.02 total=714305\n"


def test_parse_psi() -> None:
    p = parse_psi(PSI_CPU_5_13, "/proc/pressure/cpu")
    assert p.some is not None and p.full is not None
    assert (p.some.avg10, p.some.avg60, p.some.avg300, p.some.total_us) == (7.59, 2.65, 0.65, 3789410)
    assert p.full.total_us == 0
    old = parse_psi(PSI_CPU_5_4, "/proc/pressure/cpu")
    assert old.full is None and old.some is not None and old.some.total_us == 8265314
    io = parse_psi(PSI_IO, "/proc/pressure/io")
    assert io.full is not None and io.full.total_us == 714305


@pytest.mark.parametrize("text", ["some avg10=x avg60=0 avg300=0 total=1\n",
                                  "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                                  "\x00\x00\n", ""])
def test_parse_psi_garbage(text: str) -> None:
    with pytest.raises(ProbeError, match=r"^/proc/pressure/io: "):
        parse_psi(text, "/proc/pressure/io")


DISKSTATS_14 = """\
   8       0 sda 4297 1003 280266 2460 1538 1880 71520 4288 0 3300 6740
   8       1 sda1 4100 1003 270000 2400 1538 1880 71520 4288 0 3200 6600
"""
DISKSTATS_18 = """\
 259       0 nvme0n1 183654 1234 9876543 45678 98765 4321 1234567 23456 0 56789 70000 12 0 2048 3
"""
DISKSTATS_20 = """\
   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 57 0 2168 11 0 0 0 0 0 40 11 0 0 0 0 0 0
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 3021 1185 240414 905 1897 2150 94376 2263 2 1884 3168 0 0 0 0 364 0
 253       0 dm-0 500 0 40000 300 100 0 800 50 0 300 350 0 0 0 0 0 0
"""


def test_parse_diskstats_14_18_20_columns() -> None:
    old = parse_diskstats(DISKSTATS_14)
    assert [(d.device, d.reads, d.sectors_read, d.ms_reading, d.writes, d.sectors_written, d.ms_writing,
             d.in_flight, d.ms_io, d.weighted_ms) for d in old][0] == (
        "sda", 4297, 280266, 2460, 1538, 71520, 4288, 0, 3300, 6740)
    (nv,) = parse_diskstats(DISKSTATS_18)
    assert (nv.device, nv.reads, nv.ms_io, nv.weighted_ms) == ("nvme0n1", 183654, 56789, 70000)
    new = parse_diskstats(DISKSTATS_20)
    # ram devices and idle loop devices are dropped; a loop device that did I/O stays.
    assert [d.device for d in new] == ["loop1", "vda", "dm-0"]
    vda = new[1]
    assert (vda.reads, vda.sectors_read, vda.writes, vda.in_flight, vda.ms_io) == (3021, 240414, 1897, 2, 1884)


def test_parse_diskstats_garbage() -> None:
    with pytest.raises(ProbeError, match=r"^/proc/diskstats: bad line"):
        parse_diskstats("   8       0 sda 1 2 3 four 5 6 7 8 9 10 11\n")
    assert parse_diskstats("short line\n\n") == []


def test_probe_io(tmp_path: Path) -> None:
    laptop(tmp_path)
    fn = FakeNode(tmp_path)
    s = probe_io(Host(str(tmp_path)))
    assert set(s.psi) == {"cpu", "io", "memory"} and s.psi["cpu"].full is None
    assert [d.device for d in s.disks] == ["sda", "sda2", "dm-0"] and s.missing == {}
    fn.remove("/proc/pressure/memory")
    fn.write("/proc/pressure/io", "some avg10=0.00\n")
    fn.write("/proc/diskstats", "   8 0 sda x x x x x x x x x x x\n")
    s = probe_io(Host(str(tmp_path)))
    assert set(s.psi) == {"cpu"} and s.disks == []
    assert s.missing == {
        "psi.io": "/proc/pressure/io: unexpected line 'some avg10=0.00'",
        "psi.memory": "/proc/pressure/memory: not present",
        "diskstats": "/proc/diskstats: bad line '8 0 sda x x x x x x x x x x x'",
    }


# -- storage: block queues and mount -> device -> disks ----------------------------------------

MOUNTINFO = """\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:5 - proc proc rw
29 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw,errors=remount-ro
31 29 259:5 / /mnt/my\\040data rw,relatime shared:7 master:2 - xfs /dev/nvme1n1p1 rw,attr2,inode64
33 29 0:45 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=65536k
35 29 9:0 /export /srv/export\\011tab rw,relatime - ext4 /dev/md0 rw
37 29 253:0 / /home rw,relatime - ext4 /dev/mapper/vg0-home\\040x rw
"""


def test_parse_mountinfo() -> None:
    rows = parse_mountinfo(MOUNTINFO)
    assert rows[1] == ("259:1", "/", "ext4", "/dev/nvme0n1p1")
    assert rows[2] == ("259:5", "/mnt/my data", "xfs", "/dev/nvme1n1p1")  # optional fields vary in number
    assert rows[4] == ("9:0", "/srv/export\ttab", "ext4", "/dev/md0")
    assert rows[5] == ("253:0", "/home", "ext4", "/dev/mapper/vg0-home x")  # the source is escaped too
    with pytest.raises(ProbeError, match=r"^mountinfo: bad line"):
        parse_mountinfo("29 1 259:1 / / rw ext4 /dev/nvme0n1p1 rw\n")


def _storage_node(root: Path) -> FakeNode:
    """NVMe partitions, a SATA disk under dm-crypt+LVM (dm on dm), and md RAID1 over two partitions."""
    fn = FakeNode(root)
    nv = "/sys/devices/pci0000:00/0000:00:02.0/0000:02:00.0/nvme/nvme0/nvme0n1"
    fn.block(nv, "nvme0n1", "259:0", 128, "[none] mq-deadline kyber bfq")
    fn.partition(nv, "nvme0n1p1", 1, "259:1")
    fn.partition(nv, "nvme0n1p2", 2, "259:2")
    sda = "/sys/devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda"
    fn.block(sda, "sda", "8:0", 128, "mq-deadline [bfq] none", rotational=1)
    fn.partition(sda, "sda1", 1, "8:1")
    fn.block("/sys/devices/virtual/block/dm-0", "dm-0", "253:0", 128, "none", slaves=["sda1"])
    fn.block("/sys/devices/virtual/block/dm-1", "dm-1", "253:1", 4096, "none", slaves=["dm-0"])
    for disk, mm in (("sdb", "8:16"), ("sdc", "8:32")):
        d = f"/sys/devices/pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/{disk}"
        fn.block(d, disk, mm, 128, "[mq-deadline] none")
        fn.partition(d, f"{disk}1", 1, mm.split(":")[0] + ":" + str(int(mm.split(":")[1]) + 1))
    fn.block("/sys/devices/virtual/block/md0", "md0", "9:0", 256, "none", slaves=["sdb1", "sdc1"])
    fn.mountinfo([("259:1", "/", "ext4", "/dev/nvme0n1p1"), ("253:1", "/home", "ext4", "/dev/mapper/vg0-home"),
                  ("9:0", "/srv/raid data", "xfs", "/dev/md0"), ("259:2", "/scratch", "xfs", "/dev/nvme0n1p2"),
                  ("8:48", "/gone", "ext4", "/dev/sdd")])
    return fn


def test_block_queues(tmp_path: Path) -> None:
    _storage_node(tmp_path)
    q = {b.device: b for b in probe_block_devices(Host(str(tmp_path)), {})}
    assert set(q) == {"nvme0n1", "sda", "dm-0", "dm-1", "sdb", "sdc", "md0"}
    nv = q["nvme0n1"]
    assert (nv.kind, nv.scheduler, nv.schedulers, nv.read_ahead_kb, nv.nr_requests, nv.rotational, nv.pci_address) == (
        "nvme", "none", ["none", "mq-deadline", "kyber", "bfq"], 128, 1023, False, "0000:02:00.0")
    assert (q["sda"].kind, q["sda"].scheduler, q["sda"].rotational) == ("scsi", "bfq", True)
    assert (q["dm-1"].kind, q["dm-1"].slaves, q["dm-1"].scheduler, q["dm-1"].pci_address) == (
        "dm", ["dm-0"], "none", None)
    assert (q["md0"].kind, q["md0"].slaves, q["md0"].read_ahead_kb) == ("md", ["sdb1", "sdc1"], 256)


def test_block_queue_garbage(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.block("/sys/devices/virtual/block/vdb", "vdb", "254:16", 128, "[none mq-deadline")
    fn.write("/sys/devices/virtual/block/vdb/queue/read_ahead_kb", "lots\n")
    (q,) = probe_block_devices(Host(str(tmp_path)), {})
    assert q.kind == "virtio" and q.scheduler is None and q.read_ahead_kb is None and q.nr_requests == 1023
    assert q.missing == {
        "read_ahead_kb": "/sys/block/vdb/queue/read_ahead_kb: expected an integer, found 'lots'",
        "scheduler": "/sys/block/vdb/queue/scheduler: no [selected] value in '[none mq-deadline'",
    }


def test_mounts_down_to_disks(tmp_path: Path) -> None:
    _storage_node(tmp_path)
    mounts = probe_mounts(Host(str(tmp_path)), {})
    got = {m.mount_point: (m.device, m.disks) for m in mounts}
    assert got == {
        "/": ("nvme0n1p1", ["nvme0n1"]),  # partition -> disk
        "/home": ("dm-1", ["sda"]),  # LV on dm-crypt on a partition
        "/srv/raid data": ("md0", ["sdb", "sdc"]),  # md over partitions of two disks
        "/scratch": ("nvme0n1p2", ["nvme0n1"]),
        "/gone": (None, []),  # a device that left /sys/dev/block
    }
    assert "/proc" not in got  # pseudo file systems (major 0) are left out
    assert mount_for_path(mounts, "/srv/raid data/x/y.tar") is not None
    assert mount_for_path(mounts, "/srv/raid data/x/y.tar").mount_point == "/srv/raid data"  # type: ignore[union-attr]
    assert mount_for_path(mounts, "/home/../scratch/a").mount_point == "/scratch"  # type: ignore[union-attr]
    assert mount_for_path(mounts, "/homework/a").mount_point == "/"  # type: ignore[union-attr]
    assert mount_for_path([], "/x") is None


@pytest.mark.parametrize(("preset", "expected"), [
    (dgx_h100, {"/": ["nvme0n1"], "/data": ["nvme1n1"]}),
    (vm_h200, {"/": ["vda"]}),
    (laptop, {"/": ["sda"]}),
])
def test_preset_mounts(tmp_path: Path, preset, expected) -> None:  # type: ignore[no-untyped-def]
    preset(tmp_path)
    missing: dict[str, str] = {}
    assert {m.mount_point: m.disks for m in probe_mounts(Host(str(tmp_path)), missing)} == expected
    assert missing == {}


def test_mountinfo_faults(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    missing: dict[str, str] = {}
    assert probe_mounts(Host(str(tmp_path)), missing) == []
    assert missing == {"mounts": "/proc/self/mountinfo: not present"}
    fn.write("/proc/self/mountinfo", "nonsense\n")
    missing = {}
    assert probe_mounts(Host(str(tmp_path)), missing) == []
    assert missing == {"mounts": "mountinfo: bad line 'nonsense'"}


# -- thermal ----------------------------------------------------------------------------------

def test_thermal_hwmon(tmp_path: Path) -> None:
    dgx_h100(tmp_path)
    fn = FakeNode(tmp_path)
    fn.hwmon(2, "k10temp", [("Tctl", 61250, None, None)])
    s = probe_thermal(Host(str(tmp_path)))
    assert [(t.chip, t.label, t.temp_c, t.max_c, t.crit_c) for t in s.sensors] == [
        ("coretemp", "Package id 0", 54.0, 95.0, 105.0), ("coretemp", "Core 0", 50.0, 95.0, 105.0),
        ("coretemp", "Package id 1", 52.0, 95.0, 105.0), ("k10temp", "Tctl", 61.25, None, None)]
    assert [t.label for t in cpu_package_temps(s)] == ["Package id 0", "Package id 1", "Tctl"]
    assert s.missing == {"thermal_zones": "/sys/class/thermal: not present"}


def test_thermal_zone_and_vm_without_sensors(tmp_path: Path) -> None:
    laptop(tmp_path / "lap")
    s = probe_thermal(Host(str(tmp_path / "lap")))
    assert [(t.source, t.chip, t.label, t.temp_c) for t in s.sensors] == [
        ("thermal_zone", "x86_pkg_temp", "thermal_zone0", 61.0)]
    assert [t.label for t in cpu_package_temps(s)] == ["thermal_zone0"]
    vm_h200(tmp_path / "vm")
    s = probe_thermal(Host(str(tmp_path / "vm")))
    assert s.sensors == []
    assert s.missing == {"hwmon": "/sys/class/hwmon: not present (VM or no sensor drivers)"}


def test_thermal_garbage(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    fn.hwmon(0, "nvme", [("Composite", 40000, 80000, 85000)])
    fn.write("/sys/devices/platform/nvme.0/hwmon/hwmon0/temp1_input", "N/A\n")
    fn.remove("/sys/devices/platform/nvme.0/hwmon/hwmon0/name")
    (t,) = probe_thermal(Host(str(tmp_path))).sensors
    assert (t.chip, t.label, t.temp_c, t.max_c) == ("hwmon0", "Composite", None, 80.0)
    s = probe_thermal(Host(str(tmp_path)))
    assert s.missing["hwmon0.temp1"] == "/sys/class/hwmon/hwmon0/temp1_input: expected an integer, found 'N/A'"
    assert s.missing["hwmon0.name"] == "/sys/class/hwmon/hwmon0/name: not present"


# -- processes -----------------------------------------------------------------------------------

# /proc/PID/stat of a process whose comm is "tmux: (a) b)" (spaces and ')' are legal in comm).
STAT = ("4898 (tmux: (a) b)) R 4890 4890 3866 0 -1 4194304 100 0 0 0 250 75 0 0 20 0 3 0 85016 3133440 411 "
        "18446744073709551615 94480650002432 94480650022313 140724810981424 0 0 0 0 0 0 0 0 0 17 1 0 0 42 0 0 "
        "94480650038320 94480650039936 94481074233344 140724810988256 140724810988276 140724810988276 "
        "140724810989547 0\n")


def test_parse_stat_with_awkward_comm() -> None:
    comm, rest = parse_stat(STAT, "/proc/4898/stat")
    assert comm == "tmux: (a) b)"
    assert rest[0] == "R"  # field 3
    assert (rest[14 - 3], rest[15 - 3], rest[20 - 3], rest[22 - 3]) == ("250", "75", "3", "85016")
    assert (rest[39 - 3], rest[42 - 3]) == ("1", "42")


@pytest.mark.parametrize(("text", "match"), [
    ("", "not a stat line"),
    ("4898 (x R 1 2 3\n", "not a stat line"),
    ("4898 (x) R 1 2 3\n", "6 fields, expected >= 22"),
    (STAT.replace(" 250 75 ", " 250 lots "), "expected integers after the state, found 'lots'"),
])
def test_parse_stat_garbage(text: str, match: str) -> None:
    with pytest.raises(ProbeError, match=match):
        parse_stat(text, "/proc/4898/stat")


@pytest.mark.parametrize(("cgroup", "kind", "job_id"), [
    ("/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0", "slurm", "4242.0"),  # Slurm cgroup/v2
    ("/slurm/uid_1000/job_4242/step_batch/task_0", "slurm", "4242.batch"),  # Slurm cgroup/v1
    ("/slurm/uid_1000/job_77/step_extern", "slurm", "77.extern"),
    ("/system.slice/slurmstepd.scope/job_900", "slurm", "900"),
    ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8f1c3a2b_4d5e_6f70_8192_a3b4c5d6e7f8.slice/"
     "cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
     "kubernetes", "8f1c3a2b-4d5e-6f70-8192-a3b4c5d6e7f8"),
    ("/kubepods/besteffort/pod8f1c3a2b-4d5e-6f70-8192-a3b4c5d6e7f8/"
     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "kubernetes",
     "8f1c3a2b-4d5e-6f70-8192-a3b4c5d6e7f8"),
    ("/system.slice/docker-3f4e5d6c7b8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0.scope", "docker",
     "3f4e5d6c7b8a"),
    ("/docker/3f4e5d6c7b8a9f0e1d2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0", "docker", "3f4e5d6c7b8a"),
    ("/user.slice/user-1000.slice/session-3.scope", "user-session", "session-3.scope"),
    ("/user.slice/user-1000.slice/session-c2.scope", "user-session", "session-c2.scope"),
    ("/system.slice/nvidia-persistenced.service", "systemd", "nvidia-persistenced.service"),
    ("/system.slice/system-getty.slice/getty@tty1.service", "systemd", "getty@tty1.service"),
    ("/system.slice/system-systemd\\x2dfsck.slice/systemd-fsck@dev-nvme0n1p1.service", "systemd",
     "systemd-fsck@dev-nvme0n1p1.service"),
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/run-r1b2.scope", "systemd", "run-r1b2.scope"),
    ("/", "none", "/"),
    ("/custom/group", "none", "/custom/group"),
])
def test_job_of(cgroup: str, kind: str, job_id: str) -> None:
    job = job_of(cgroup)
    assert (job.kind, job.id, job.cgroup) == (kind, job_id, cgroup)


@pytest.mark.parametrize(("text", "path"), [
    ("0::/user.slice/user-1000.slice/session-3.scope\n", "/user.slice/user-1000.slice/session-3.scope"),
    # hybrid node running a Slurm cgroup/v1 step: the unified line is slurmd's systemd unit
    ("12:cpuset:/slurm/uid_1000/job_9/step_0\n11:memory:/slurm/uid_1000/job_9/step_0\n"
     "1:name=systemd:/system.slice/slurmd.service\n0::/system.slice/slurmd.service\n",
     "/slurm/uid_1000/job_9/step_0"),
    # hybrid node (this sandbox): only the memory controller is placed
    ("9:name=systemd:/\n8:pids:/\n4:memory:/process_api/6dcdccab68ca04809b7304f1825974ed\n3:cpuset:/\n0::/\n",
     "/process_api/6dcdccab68ca04809b7304f1825974ed"),
    # hybrid node, nothing placed in v1: the unified path names the unit
    ("5:cpuset:/\n1:name=systemd:/system.slice/foo.service\n0::/system.slice/foo.service\n",
     "/system.slice/foo.service"),
    # legacy v1 with the job only in name=systemd
    ("4:cpu,cpuacct:/\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n",
     "/user.slice/user-1000.slice/session-2.scope"),
    ("4:cpu,cpuacct:/\n3:cpuset:/\n", "/"),
    ("6:cpu,cpuacct:/kubepods/pod1/abc\n", "/kubepods/pod1/abc"),
])
def test_parse_cgroup(text: str, path: str) -> None:
    assert parse_cgroup(text) == path


def test_parse_cgroup_garbage() -> None:
    with pytest.raises(ProbeError, match="no hierarchy line"):
        parse_cgroup("garbage\n")


NUMA_MAPS = """\
55d0c8a00000 default file=/usr/bin/python3.11 mapped=100 mapmax=3 N0=100 kernelpagesize_kB=4
7f2a40000000 default anon=262144 dirty=262144 N0=131072 N1=131072 kernelpagesize_kB=4
7f2b00000000 default file=/anon_hugepage\\040(deleted) huge anon=4 dirty=4 N1=4 kernelpagesize_kB=2048
7f2c00000000 default file=/dev/nvidia0
7ffd5c3e1000 default stack anon=33 dirty=33 N0=33 kernelpagesize_kB=4
7ffd5c3fd000 bind:1 anon=1 dirty=1 active=0 N1=1 kernelpagesize_kB=4
"""


def test_parse_numa_maps() -> None:
    assert parse_numa_maps(NUMA_MAPS) == {"0": 400 + 131072 * 4 + 33 * 4, "1": 131072 * 4 + 4 * 2048 + 4}
    assert parse_numa_maps("") == {}


def _gpu_job(root: Path) -> FakeNode:
    fn = FakeNode(root)
    fn.system_files()
    fn.process(FakeProc(
        pid=4242, comm="python (main) x", cmdline=["python", "train.py", "--bs", "256"], uid=1000, state="R",
        utime=5000, stime=700, blkio_ticks=31, cpus=list(range(8)), mems=[0],
        cgroup="/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0",
        threads={4242: ("python", "R", 4000, 600), 4250: ("pt_autograd_0", "S", 900, 90),
                 4251: ("data (io))", "D", 100, 10)},
        numa_pages={0: 1000, 1: 250}, children=[4300, 4301], read_bytes=123456789,
        open_files=["/data/shard-000.tar", "/dev/nvidia0", "/data/shard-000.tar", "/proc/self/status"]))
    for pid in (4300, 4301):
        fn.process(FakeProc(pid=pid, comm="pt_data_worker", cmdline=["python", "train.py"], ppid=4242,
                            cpus=[2, 3], cgroup="/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0"))
    # A thread pinned apart from its process.
    fn.write("/proc/4242/task/4250/status", fn.p("/proc/4242/task/4250/status").read_text().replace(
        "Cpus_allowed_list:\t0-7", "Cpus_allowed_list:\t6"))
    return fn


def test_sample_process(tmp_path: Path) -> None:
    _gpu_job(tmp_path)
    s = sample_process(Host(str(tmp_path)), 4242)
    assert (s.alive, s.state, s.utime, s.stime, s.blkio_ticks, s.num_threads) == (True, "R", 5000, 700, 31, 3)
    assert (s.rss_kb, s.read_bytes) == (25600 * 4, 123456789)
    assert [(t.tid, t.name, t.state, t.utime, t.processor) for t in s.threads] == [
        (4242, "python", "R", 4000, 0), (4250, "pt_autograd_0", "S", 900, 0), (4251, "data (io))", "D", 100, 0)]
    assert s.missing == {}
    assert sample_process(Host(str(tmp_path)), 4242, threads=False).threads == []


def test_sample_process_gone_or_garbage(tmp_path: Path) -> None:
    fn = _gpu_job(tmp_path)
    gone = sample_process(Host(str(tmp_path)), 999)
    assert (gone.alive, gone.missing) == (False, {"*": "/proc/999/stat: not present"})
    fn.write("/proc/4300/stat", STAT.replace(" 250 75 ", " 250 -- "))
    bad = sample_process(Host(str(tmp_path)), 4300)
    assert bad.alive is False and bad.missing["*"] == "/proc/4300/stat: expected integers after the state, found '--'"
    fn.write("/proc/4301/io", "read_bytes: many\n")
    fn.remove("/proc/4301/task/4301/stat")  # a thread that exits between listdir and read
    s = sample_process(Host(str(tmp_path)), 4301)
    assert s.alive and s.read_bytes is None and s.threads == []
    assert s.missing == {"io": "/proc/4301/io: read_bytes 'many' is not a number"}


def test_process_info(tmp_path: Path) -> None:
    _gpu_job(tmp_path)
    h = Host(str(tmp_path))
    info = process_info(h, 4242, "gpu", [0, 1], users(h))
    assert (info.comm, info.ppid, info.starttime) == ("python (main) x", 1, 123456)
    assert info.cmdline == ["python", "train.py", "--bs", "256"]
    assert (info.uid, info.user) == (1000, "alice")
    assert info.job is not None and (info.job.kind, info.job.id) == ("slurm", "4242.0")
    assert (info.cpus_allowed, info.mems_allowed, info.cgroup_cpus) == (list(range(8)), [0], list(range(8)))
    assert info.thread_cpus == {"4250": [6]}
    assert info.numa_pages_kb == {"0": 4000, "1": 1000}
    assert info.open_files == ["/data/shard-000.tar"]  # devices and /proc are not data files; no duplicates
    assert info.missing == {}
    assert descendants(h, 4242) == [4301, 4300]


def test_process_info_of_a_process_that_left(tmp_path: Path) -> None:
    _gpu_job(tmp_path)
    info = process_info(Host(str(tmp_path)), 31337, "worker", [0], {}, parent_gpu_pid=4242)
    assert info.comm is None and info.job is None and info.parent_gpu_pid == 4242
    assert set(info.missing) == {"stat", "cmdline", "status", "cgroup", "threads", "numa_maps", "fds"}
    assert info.missing["stat"] == "/proc/31337/stat: not present"


def test_process_info_garbage_status(tmp_path: Path) -> None:
    fn = _gpu_job(tmp_path)
    fn.write("/proc/4300/status", "Name:\tpt_data_worker\nUid:\troot\nCpus_allowed_list:\t0-x\n")
    info = process_info(Host(str(tmp_path)), 4300, "worker", [0], {})
    assert info.uid is None and info.cpus_allowed == []
    assert info.missing["uid"] == "/proc/4300/status: Uid 'root' is not a number"
    assert info.missing["cpus_allowed"] == "/proc/4300/status: bad cpu list '0-x'"


def test_users_from_the_nodes_passwd(tmp_path: Path) -> None:
    fn = FakeNode(tmp_path)
    assert users(Host(str(tmp_path))) == {}
    fn.write("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n+::::::\n"
                            "slurm:x:64030:64030::/nonexistent:/usr/sbin/nologin\n")
    assert users(Host(str(tmp_path))) == {0: "root", 64030: "slurm"}


@pytest.mark.skipif(not Path("/proc/vmstat").exists(), reason="needs a Linux /proc")
def test_the_kept_memory_lines_are_those_a_full_parse_keeps() -> None:
    from nodetune.probes.memory import _MEMINFO_KEEP, _VMSTAT_KEEP

    s = probe_memory(Host("/"), detail=False)
    full_mi = parse_meminfo(Path("/proc/meminfo").read_text())
    full_vm = parse_vmstat(Path("/proc/vmstat").read_text())
    # counters move between two reads: the same names, and values of the slow ones
    assert set(s.meminfo_kb) == {k for k in full_mi if k in _MEMINFO_KEEP}
    assert set(s.vmstat) == {k for k in full_vm if k in _VMSTAT_KEEP}
    assert s.meminfo_kb["MemTotal"] == full_mi["MemTotal"] and not s.missing
